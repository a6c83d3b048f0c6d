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
  if (epoll_fd_ < 0 || fd < 0) return;
  size_t i = static_cast<size_t>(fd);
  if (i >= entries_.size()) {
    entries_.resize(i + 1, Entry::kNone);
    events_.resize(i + 1, 0);
  }
  uint32_t events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= EPOLLIN;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= EPOLLOUT;
  if (events == 0) {
    // CURL_POLL_NONE or _REMOVE: parked, in case the connection is reused.
    if (entries_[i] == Entry::kWatched) entries_[i] = Entry::kParked;
    return;
  }
  if (entries_[i] == Entry::kNone) {
    if (!Control(EPOLL_CTL_ADD, fd, events)) return;
    ++watched_;
  } else if ((entries_[i] == Entry::kParked || events_[i] != events) &&
             !Control(EPOLL_CTL_MOD, fd, events)) {
    // A parked socket is always MODified: curl may have closed it without
    // the close callback (the threaded resolver's socketpair does), and a
    // new socket with its number must really join the set (ENOENT: ADD).
    return;
  }
  entries_[i] = Entry::kWatched;
  events_[i] = events;
}

bool CurlSocketSet::Control(int op, curl_socket_t fd, uint32_t events) {
  epoll_event event = {};
  event.events = events;
  event.data.fd = fd;
  if (epoll_ctl(epoll_fd_, op, fd, &event) == 0) return true;
  // The set and our entries disagree (a socket closed behind our back): do
  // what the set's actual state needs.
  if (op == EPOLL_CTL_MOD && errno == ENOENT) {
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) return false;
    if (entries_[static_cast<size_t>(fd)] == Entry::kNone) ++watched_;
    return true;
  }
  if (op == EPOLL_CTL_ADD && errno == EEXIST) {
    return epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) == 0;
  }
  return false;
}

void CurlSocketSet::Closed(curl_socket_t fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= entries_.size()) return;
  size_t i = static_cast<size_t>(fd);
  if (entries_[i] == Entry::kNone) return;
  // close(2) takes it out of the set; saying so first keeps the set right
  // should the descriptor live on elsewhere (a dup).
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  entries_[i] = Entry::kNone;
  --watched_;
}

void CurlSocketSet::ForEachReady(const std::function<void(curl_socket_t, int)>& ready) {
  if (epoll_fd_ < 0) return;
  epoll_event events[kEventsPerCall];
  for (;;) {
    int n = epoll_wait(epoll_fd_, events, kEventsPerCall, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) {
      curl_socket_t fd = events[i].data.fd;
      size_t at = static_cast<size_t>(fd);
      if (at < entries_.size() && entries_[at] == Entry::kParked) {
        // An idle connection closed by the server, or data nobody asked
        // for: curl finds out when it next uses the connection.
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        entries_[at] = Entry::kNone;
        --watched_;
        continue;
      }
      int mask = 0;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) mask |= CURL_CSELECT_IN;
      if (events[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
      if (events[i].events & EPOLLERR) mask |= CURL_CSELECT_ERR;
      ready(fd, mask);
    }
    if (n < kEventsPerCall) return;
  }
}

void CurlSocketSet::Close() {
  if (epoll_fd_ >= 0) close(epoll_fd_);
  epoll_fd_ = -1;
  watched_ = 0;
  entries_.clear();
  events_.clear();
}

}  // namespace fanmap
