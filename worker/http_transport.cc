#include "worker/http_transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string_view>

#include "common/job_keys.h"
#include "common/version.h"

namespace fanmap {
namespace {

constexpr std::string_view kPemBegin = "-----BEGIN CERTIFICATE-----";
// How long the pool keeps the parsed system CA store: a worker runs for
// hours, the store changes on package upgrades.
constexpr long kCaCacheSeconds = 3600;

const std::string* Find(const JobSpec& job, const std::string& key) {
  auto it = job.options.find(key);
  return it == job.options.end() ? nullptr : &it->second;
}

std::string HostOf(const std::string& url) {
  std::string out = url;
  CURLU* parsed = curl_url();
  if (parsed == nullptr) return out;
  char* host = nullptr;
  char* port = nullptr;
  if (curl_url_set(parsed, CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
      curl_url_get(parsed, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
    out = host;
    if (curl_url_get(parsed, CURLUPART_PORT, &port, 0) == CURLUE_OK) out += ":" + std::string(port);
  }
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(parsed);
  return out;
}

// The text of libcurl's default CA bundle file ("" if it has none or it
// cannot be read).
std::string SystemBundle() {
  std::string path;
  if (CURL* probe = curl_easy_init()) {
    char* cainfo = nullptr;
    if (curl_easy_getinfo(probe, CURLINFO_CAINFO, &cainfo) == CURLE_OK && cainfo != nullptr) {
      path = cainfo;
    }
    curl_easy_cleanup(probe);
  }
  std::string text;
  if (path.empty()) return text;
  std::ifstream in(path, std::ios::binary);
  text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return text;
}

}  // namespace

Status CheckCaPem(const std::string& pem) {
  if (pem.size() > kMaxCaCertBytes) {
    return Status::Error("the CA file is larger than " + std::to_string(kMaxCaCertBytes >> 20) +
                         " MiB");
  }
  if (pem.find(kPemBegin) == std::string::npos) {
    return Status::Error("the CA file holds no PEM certificate (no '" + std::string(kPemBegin) +
                         "' line)");
  }
  return Status::Ok();
}

Status ParseTransportOptions(const JobSpec& job, const std::string& url, TransportOptions* out) {
  TransportOptions options;
  options.host = HostOf(url);
  if (const std::string* pem = Find(job, job_key::kCaCertPem)) {
    Status status = CheckCaPem(*pem);
    if (!status.ok()) return status;
    options.ca_pem = *pem;
  }
  if (const std::string* version = Find(job, job_key::kHttpVersion)) {
    if (*version != "1.1") {
      return Status::Error("http_version '" + *version + "' is not 1.1");
    }
    options.http1_only = true;
  }
  *out = std::move(options);
  return Status::Ok();
}

bool IsCertificateError(CURLcode code) {
  switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CERTPROBLEM:
      return true;
    default:
      return false;
  }
}

std::string CertificateErrorText(const TransportOptions& options, CURLcode code,
                                 const std::string& detail) {
  std::string text = "TLS: the certificate of " + options.host + " is not trusted: ";
  text += detail.empty() ? curl_easy_strerror(code) : detail;
  if (code == CURLE_SSL_CACERT_BADFILE) {
    text += " (the CA certificates given could not be read)";
  } else if (code == CURLE_PEER_FAILED_VERIFICATION && options.ca_pem.empty()) {
    text += " (a private CA? give its certificate with --cacert FILE)";
  }
  return text;
}

Status HttpTransport::Init(CURLM* multi, const TransportOptions& options, bool https) {
  multi_ = multi;
  options_ = options;
  https_ = https;
  // HTTP/2 streams on shared connections (curl's default since 7.62; said
  // here because the connection cap below relies on it).
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  capped_ = https_ && !options_.http1_only;
  if (capped_) curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, kMaxHttp2Connections);
  share_ = curl_share_init();
  if (share_ == nullptr) return Status::Error("cannot create a curl share handle");
  // One thread uses the share: no lock callbacks are needed.
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  if (!options_.ca_pem.empty()) return WriteCaFile();
  return Status::Ok();
}

CURLcode HttpTransport::ConfigureEasy(CURL* e) const {
  CURLcode rc = CURLE_OK;
  auto set = [&rc](CURLcode code) {
    if (rc == CURLE_OK) rc = code;
  };
  static const std::string user_agent = std::string("fanmap/") + kFanmapVersion;
  set(curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent.c_str()));
  if (share_ != nullptr) set(curl_easy_setopt(e, CURLOPT_SHARE, share_));
  if (options_.http1_only) {
    set(curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1)));
  } else {
    set(curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS)));
  }
  if (!https_) return rc;
  // A burst waits for the first handshake and multiplexes over that
  // connection when it speaks HTTP/2, instead of opening one connection per
  // request. (Over HTTP/1.1 waiting would serialise requests: not set.)
  if (!options_.http1_only) set(curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L));
  set(curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, kCaCacheSeconds));
  // A CA directory would make curl parse the store for every connection.
  set(curl_easy_setopt(e, CURLOPT_CAPATH, nullptr));
  if (!ca_file_.empty()) set(curl_easy_setopt(e, CURLOPT_CAINFO, ca_file_.c_str()));
  return rc;
}

void HttpTransport::OnDone(CURL* easy) {
  if (!capped_) return;
  long version = 0;
  if (curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK) return;
  if (version == CURL_HTTP_VERSION_1_0 || version == CURL_HTTP_VERSION_1_1) {
    capped_ = false;
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
  }
}

Status HttpTransport::WriteCaFile() {
  const char* dir = getenv("TMPDIR");
  std::string path =
      std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/fanmap-cacert-XXXXXX";
  int fd = mkstemp(path.data());  // mode 0600
  if (fd < 0) {
    return Status::Error("cannot write the --cacert certificates to " + path + ": " +
                         strerror(errno));
  }
  ca_file_ = path;
  std::string pem = options_.ca_pem + "\n" + SystemBundle();
  size_t done = 0;
  while (done < pem.size()) {
    ssize_t n = write(fd, pem.data() + done, pem.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      return Status::Error("cannot write the --cacert certificates to " + path + ": " +
                           strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  return Status::Ok();
}

void HttpTransport::Reset() {
  if (share_ != nullptr) curl_share_cleanup(share_);
  share_ = nullptr;
  if (!ca_file_.empty()) unlink(ca_file_.c_str());
  ca_file_.clear();
}

}  // namespace fanmap
