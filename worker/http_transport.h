// HttpTransport: how the HTTP payload's requests travel — TLS trust, HTTP
// version, connection reuse and the User-Agent — apart from what they carry
// (http_request.h) and from the loop that moves them (payload_http.cc).
//
// Job options (strings, as JobSpec carries them; keys in common/job_keys.h):
//   cacert_pem    PEM text of CA certificates trusted IN ADDITION to the
//                 system store (fanmap --cacert FILE reads the file, so that
//                 remote workers need no copy of it).
//   http_version  "1.1": never HTTP/2. Absent: HTTP/2 where the server offers
//                 it in the TLS handshake (ALPN), else HTTP/1.1.
//
// Connections: one pool per worker (the curl multi handle). Over TLS the
// pool starts capped at kMaxHttp2Connections per host, with transfers waiting
// for a connection they can multiplex on (CURLOPT_PIPEWAIT), so hundreds of
// requests share a handful of HTTP/2 connections and the worker does a
// handful of TLS handshakes. As soon as a response arrives over HTTP/1.x
// (the server declined HTTP/2), the cap is lifted: HTTP/1.1 needs one
// connection per request in flight. Cleartext http:// is always HTTP/1.1.
// TLS sessions are shared between the pool's connections (a share handle),
// and the CA store is parsed once per pool, not per connection, so that a
// burst of handshakes never stalls the worker's loop (with the system bundle,
// ~15 ms of CPU per handshake otherwise: 500 HTTP/1.1 connections kept a
// worker silent past its heartbeat). curl caches the store only when it comes
// from a CA file alone (CURLOPT_CA_CACHE_TIMEOUT; no CURLOPT_CAPATH, which
// Debian's libcurl sets by default, and no CURLOPT_CAINFO_BLOB), so:
//  - by default the store is curl's CA bundle file (the system's), no CAPATH;
//  - with --cacert, the given PEM followed by that bundle is written to a
//    private file (mode 0600, in $TMPDIR or /tmp, removed by Reset), which is
//    the CA file: --cacert adds to the system store.
// Not thread-safe: one HttpTransport per payload, used from the worker loop.
#ifndef FANMAP_WORKER_HTTP_TRANSPORT_H_
#define FANMAP_WORKER_HTTP_TRANSPORT_H_

#include <curl/curl.h>

#include <string>

#include "common/protocol.h"
#include "common/status.h"

namespace fanmap {

// Connections per host while HTTP/2 may be spoken (each carries up to the
// server's stream limit, typically 100-128 requests).
constexpr long kMaxHttp2Connections = 16;
// Largest --cacert file accepted (a bundle of a few hundred certificates).
constexpr size_t kMaxCaCertBytes = 4 << 20;

struct TransportOptions {
  std::string ca_pem;  // empty: the system store only
  bool http1_only = false;
  std::string host;  // "host:port" of the URL, named in TLS errors
};

// Reads the transport options of an "http" job whose URL is `url` (already
// checked). Errors: a cacert_pem without a PEM certificate, an unknown
// http_version.
Status ParseTransportOptions(const JobSpec& job, const std::string& url, TransportOptions* out);

// Checks the text of a --cacert file (the coordinator's check before it
// starts workers); the error says what is wrong, not the file's content.
Status CheckCaPem(const std::string& pem);

// Failures that say the server's certificate (or the CA given) is not
// trusted: no request to this server can succeed until the user acts.
bool IsCertificateError(CURLcode code);

// "TLS: the certificate of HOST is not trusted: <curl's detail>" plus a hint
// about --cacert, for a certificate error; `detail` is curl's error buffer.
std::string CertificateErrorText(const TransportOptions& options, CURLcode code,
                                 const std::string& detail);

class HttpTransport {
 public:
  HttpTransport() = default;
  ~HttpTransport() { Reset(); }
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Sets up the pool's options on `multi` (which must outlive this object's
  // use of it) and the share handle.
  Status Init(CURLM* multi, const TransportOptions& options, bool https);
  // Sets the transport options of one easy handle (once, when created).
  CURLcode ConfigureEasy(CURL* easy) const;
  // A transfer on `easy` finished: lifts the connection cap if the server
  // answered over HTTP/1.x.
  void OnDone(CURL* easy);
  // Frees the share handle and removes the CA file. Call after every easy
  // handle using them is cleaned up; safe to call twice.
  void Reset();
  // The file --cacert's PEM was written to ("" if none).
  const std::string& ca_file() const { return ca_file_; }

  bool capped() const { return capped_; }

 private:
  Status WriteCaFile();

  CURLM* multi_ = nullptr;
  CURLSH* share_ = nullptr;
  TransportOptions options_;
  bool https_ = false;
  bool capped_ = false;
  std::string ca_file_;
};

}  // namespace fanmap

#endif  // FANMAP_WORKER_HTTP_TRANSPORT_H_
