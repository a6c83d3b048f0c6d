#include "worker/http_transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string_view>

#include "common/job_keys.h"

namespace fanmap {
namespace {

constexpr std::string_view kPemBegin = "-----BEGIN CERTIFICATE-----";

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

}  // namespace fanmap
