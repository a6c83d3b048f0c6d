#include "worker/curl_socket_set.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <string>

namespace fanmap {
namespace {

// Events taken per epoll_wait call; more are taken by calling it again.
constexpr int kEventsPerCall = 256;

}  // namespace

CurlSocketSet::~CurlSocketSet() { Close(); }

Status CurlSocketSet::Init() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return Status::Error(std::string("epoll_create1: ") + strerror(errno));
  return Status::Ok();
}

void CurlSocketSet::Watch(curl_socket_t fd, int what) {
  if (epoll_fd_ < 0) return;
  uint32_t events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= EPOLLIN;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= EPOLLOUT;
  if (events == 0) {
    // CURL_POLL_NONE or _REMOVE. A socket curl is not waiting on would still
    // report hang-ups: out of the set.
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr) == 0) --watched_;
    return;
  }
  epoll_event event = {};
  event.events = events;
  event.data.fd = fd;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) == 0) return;
  if (errno == ENOENT && epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) == 0) ++watched_;
}

void CurlSocketSet::ForEachReady(const std::function<void(curl_socket_t, int)>& ready) {
  if (epoll_fd_ < 0) return;
  epoll_event events[kEventsPerCall];
  for (;;) {
    int n = epoll_wait(epoll_fd_, events, kEventsPerCall, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) {
      int mask = 0;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) mask |= CURL_CSELECT_IN;
      if (events[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
      if (events[i].events & EPOLLERR) mask |= CURL_CSELECT_ERR;
      ready(events[i].data.fd, mask);
    }
    if (n < kEventsPerCall) return;
  }
}

void CurlSocketSet::Close() {
  if (epoll_fd_ >= 0) close(epoll_fd_);
  epoll_fd_ = -1;
  watched_ = 0;
}

}  // namespace fanmap
