// GuardedHttpServer: a small HTTP/1.1 server for GET routes (Boost.Beast on
// one boost::asio::io_context), built so that no client can make it hold
// unbounded memory or time.
//
// Each connection serves one request (Connection: close). Its head must
// fit in kMaxHeadBytes (Beast's parser header_limit, which bounds the
// request line and then the header fields, each; read into a fixed buffer
// of about that size, so a head is never held whole past it) and arrive
// within kHeadDeadlineMs
// in all (one timer for the whole head, not per read): past the size it is
// answered 431, past the deadline 408, a declared body 413 (nothing is
// uploaded), anything unparsable 400, and then closed. The answer must be
// written within kWriteDeadlineMs, or the connection is closed. At most
// kMaxConnections are open at once: while that many are, no more are
// accepted (they wait in the kernel's backlog), so memory stays bounded
// (about kMaxHeadBytes plus one answer per connection) whatever clients do.
//
// Not the coordinator's code path: the Run thread does all the work, and a
// route renders its answer on that thread.
//
// Thread-safety: Bind and Get before Run; Run on one thread; Stop from any
// thread.
#ifndef FANMAP_COORDINATOR_GUARDED_HTTP_SERVER_H_
#define FANMAP_COORDINATOR_GUARDED_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace fanmap {

// What a route answers with (status 200 unless it says otherwise).
struct HttpAnswer {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones
};

class GuardedHttpServer {
 public:
  // Far more than any browser or curl sends (a few hundred bytes).
  static constexpr size_t kMaxHeadBytes = 8192;
  static constexpr int64_t kHeadDeadlineMs = 2000;
  static constexpr int64_t kWriteDeadlineMs = 5000;
  static constexpr size_t kMaxConnections = 32;

  using Route = std::function<HttpAnswer()>;

  GuardedHttpServer();
  ~GuardedHttpServer();
  GuardedHttpServer(const GuardedHttpServer&) = delete;
  GuardedHttpServer& operator=(const GuardedHttpServer&) = delete;

  // Answers GET `path` (exactly; no query string matching) with `route`.
  // Other paths are 404, other methods 405.
  void Get(const std::string& path, Route route);

  // Listens on `host` (a name or an address) and `port` (0: any free one),
  // exclusively (SO_REUSEADDR, never SO_REUSEPORT: a port in use is an
  // error). On success `*bound_port` is the port bound. The error says why
  // (e.g. "Address already in use").
  Status Bind(const std::string& host, int port, int* bound_port);

  // Serves until Stop(); returns then (soon: nothing here blocks).
  void Run();
  void Stop();

  struct Impl;  // the implementation's (public so that its connections can name it)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_GUARDED_HTTP_SERVER_H_
