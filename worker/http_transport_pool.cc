// HttpTransport's pool (http_transport.h): the worker's side, which makes
// requests. Apart from the option checks in http_transport.cc so that the
// coordinator, which only checks jobs, needs none of libcurl's transfer
// functions (it loads libcurl lazily: common/lazy_curl.cc).
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>

#include "common/version.h"
#include "worker/http_transport.h"

namespace fanmap {
namespace {

// How long the pool keeps the parsed system CA store: a worker runs for
// hours, the store changes on package upgrades.
constexpr long kCaCacheSeconds = 3600;

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
