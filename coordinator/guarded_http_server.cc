#include "coordinator/guarded_http_server.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <utility>

#include "common/clock.h"

namespace fanmap {
namespace {

// Waits until `fd` is ready for `events` or `deadline_ms` passes: true if
// ready (or in error: the next recv/send says which).
bool WaitFor(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - NowMillis();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, INT_MAX)));
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) return true;  // the next recv or send reports the error
  }
}

// What httplib reads a request from and writes its answer to: the head
// already read (then end of input: nothing more is read from the client),
// and the socket for the answer, all of which must be written by one
// deadline.
class HeadStream : public httplib::Stream {
 public:
  HeadStream(int fd, std::string head, int64_t write_deadline_ms)
      : fd_(fd), head_(std::move(head)), write_deadline_ms_(write_deadline_ms) {}

  bool is_readable() const override { return read_ < head_.size(); }
  bool is_writable() const override { return WaitFor(fd_, POLLOUT, write_deadline_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    size_t n = std::min(size, head_.size() - read_);
    head_.copy(ptr, n, read_);
    read_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    for (;;) {
      if (!WaitFor(fd_, POLLOUT, write_deadline_ms_)) return -1;
      ssize_t n = send(fd_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0 || (errno != EINTR && errno != EAGAIN)) return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    Name(getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    Name(getsockname, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  template <typename GetName>
  void Name(GetName get_name, std::string& ip, int& port) const {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    char host[NI_MAXHOST];
    char service[NI_MAXSERV];
    if (get_name(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof host, service,
                    sizeof service, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
      return;
    }
    ip = host;
    port = atoi(service);
  }

  const int fd_;
  const std::string head_;
  size_t read_ = 0;
  const int64_t write_deadline_ms_;
};

// Answers a refused request with `status_line` alone; never waits: so short
// an answer fits in any socket buffer, and a client that does not read it
// gets nothing more.
void Refuse(int fd, const std::string& status_line) {
  std::string answer =
      "HTTP/1.1 " + status_line + "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
  (void)send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace

HeadRead ReadRequestHead(int fd, size_t max_bytes, int64_t deadline_ms, std::string* head) {
  head->clear();
  char buffer[4096];
  while (head->size() < max_bytes) {
    if (!WaitFor(fd, POLLIN, deadline_ms)) return HeadRead::kTooSlow;
    ssize_t n = recv(fd, buffer, std::min(sizeof buffer, max_bytes - head->size()), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return HeadRead::kClosed;
    // The empty line may straddle the previous read.
    size_t from = head->size() >= 3 ? head->size() - 3 : 0;
    head->append(buffer, static_cast<size_t>(n));
    if (head->find("\r\n\r\n", from) != std::string::npos) return HeadRead::kComplete;
  }
  return HeadRead::kTooLarge;
}

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  std::string head;
  bool answered = false;
  switch (ReadRequestHead(sock, kMaxHeadBytes, NowMillis() + kHeadDeadlineMs, &head)) {
    case HeadRead::kComplete: {
      HeadStream stream(sock, std::move(head), NowMillis() + kWriteDeadlineMs);
      bool closed = true;
      answered = process_request(stream, /*close_connection=*/true, closed, nullptr);
      break;
    }
    case HeadRead::kTooLarge:
      Refuse(sock, "431 Request Header Fields Too Large");
      break;
    case HeadRead::kTooSlow:
      Refuse(sock, "408 Request Timeout");
      break;
    case HeadRead::kClosed:
      break;
  }
  shutdown(sock, SHUT_RDWR);
  close(sock);
  return answered;
}

}  // namespace fanmap
