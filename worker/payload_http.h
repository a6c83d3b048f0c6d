// HttpPayload: one HTTP request per item ("fanmap --http URL [--chat MODEL]").
//
// What is sent and how a response becomes a Result is defined in
// http_request.h. This half moves the bytes: libcurl's multi interface,
// driven by the worker's poll loop through curl_multi_socket_action, so that
// hundreds of requests are in flight in one single-threaded process.
//
// One multi handle per payload holds the connection pool (HTTP/1.1 keep-alive
// connections, HTTP/2 multiplexed over TLS); easy handles are reused. The
// payload reports one attempt per task: retries and backoff belong to the
// coordinator, which reads `retryable` and `retry_after_ms`. Redirects are
// not followed (a redirect is an error result), so headers such as
// Authorization never travel to another host.
// Proxies come from the environment (http_proxy, https_proxy, no_proxy), as
// for the curl tool.
//
// Not thread-safe: all calls come from the worker loop's thread.
#ifndef FANMAP_WORKER_PAYLOAD_HTTP_H_
#define FANMAP_WORKER_PAYLOAD_HTTP_H_

#include <memory>

#include "worker/payload.h"

namespace fanmap {

// Transfers handed to curl per turn of the worker loop. curl opens a
// connection for each new transfer that finds no idle one, and opens all it
// is given before it sends any request: so the first turns of a run with
// hundreds of slots send requests while later connections are opened.
constexpr size_t kHttpAddsPerTurn = 64;

// Builds the payload for an "http" job. Bad options (a URL that is not
// http:// or https://, a bad header...) give an error and no payload; the
// error never contains the API key.
Status MakeHttpPayload(const JobSpec& job, ResultSink* sink, std::unique_ptr<Payload>* out);

}  // namespace fanmap

#endif  // FANMAP_WORKER_PAYLOAD_HTTP_H_
