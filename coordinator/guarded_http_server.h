// GuardedHttpServer: an httplib::Server that reads each request's head (the
// request line and headers) itself, with a hard cap on its size and one
// deadline for all of it, before httplib parses and answers it.
//
// Why: Debian's cpp-httplib 0.11.4 (a compiled library: its
// CPPHTTPLIB_HEADER_MAX_LENGTH cannot be changed by us, and it checks it
// only after a whole line is read) grows a header line without bound until
// its newline, and its read timeout applies to each read, not to the
// request. So one client could make the coordinator hold hundreds of MiB (a
// header line without newline), and a few clients sending a byte a second
// could hold every server thread for the whole run.
//
// Here a connection gets kMaxHeadBytes of head in kHeadDeadlineMs; past the
// size it is answered 431, past the deadline 408, and closed. A head that
// ends in time is handed to httplib (routing, handlers, responses), which
// reads it from memory and never from the socket: a body is only what came
// with the head (a longer one declared is refused with
// set_payload_max_length(0), or ignored by a GET). The answer is written
// within kWriteDeadlineMs in all. Each connection is thus served in bounded
// time, with a fixed buffer; how many are served at once is bounded by the
// task queue.
//
// One request per connection: the connection is closed after it.
#ifndef FANMAP_COORDINATOR_GUARDED_HTTP_SERVER_H_
#define FANMAP_COORDINATOR_GUARDED_HTTP_SERVER_H_

#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace fanmap {

// What came of reading a request's head.
enum class HeadRead {
  kComplete,  // ends with an empty line, within the cap and the deadline
  kTooLarge,  // kMaxHeadBytes without an empty line
  kTooSlow,   // the deadline passed first
  kClosed,    // the client closed (or the socket failed) first
};

// Reads from `fd` into `*head` until it holds "\r\n\r\n", `max_bytes` are
// read, or `deadline_ms` (NowMillis) passes. `*head` may hold bytes past
// the empty line (a body, a next request) read with it.
HeadRead ReadRequestHead(int fd, size_t max_bytes, int64_t deadline_ms, std::string* head);

class GuardedHttpServer : public httplib::Server {
 public:
  // Far more than any browser or curl sends (a few hundred bytes), and what
  // httplib itself allows for one header line.
  static constexpr size_t kMaxHeadBytes = 8192;
  static constexpr int64_t kHeadDeadlineMs = 2000;
  static constexpr int64_t kWriteDeadlineMs = 5000;

 private:
  // Called by httplib's listening thread, on a task-queue thread, for each
  // accepted connection; closes it.
  bool process_and_close_socket(socket_t sock) override;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_GUARDED_HTTP_SERVER_H_
