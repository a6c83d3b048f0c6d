// CurlSocketSet: the sockets libcurl asks the HTTP payload to watch, kept in
// one epoll set, so that the worker's poll loop polls ONE descriptor for them
// however many connections are open.
//
// Why: the loop wakes up for every batch of responses; with the sockets
// handed to poll(2) one by one, each wake-up cost the kernel a pass over
// every connection (500 per worker at --slots 500 over HTTP/1.1), which was
// most of the worker's CPU time in a 10,000-request run.
//
// Level-triggered, like poll(2): a socket stays ready until curl has read it.
// Not thread-safe: used from the worker loop's thread.
#ifndef FANMAP_WORKER_CURL_SOCKET_SET_H_
#define FANMAP_WORKER_CURL_SOCKET_SET_H_

#include <curl/curl.h>

#include <functional>

#include "common/status.h"

namespace fanmap {

class CurlSocketSet {
 public:
  CurlSocketSet() = default;
  ~CurlSocketSet();
  CurlSocketSet(const CurlSocketSet&) = delete;
  CurlSocketSet& operator=(const CurlSocketSet&) = delete;

  Status Init();
  // What curl's socket callback says: CURL_POLL_IN, _OUT, _INOUT, _NONE or
  // _REMOVE for `fd`. Errors (a descriptor curl already closed) are ignored:
  // the kernel drops closed descriptors from the set by itself.
  void Watch(curl_socket_t fd, int what);
  // The descriptor to poll for reading: readable when a watched socket is
  // ready (-1 before Init).
  int fd() const { return epoll_fd_; }
  size_t size() const { return watched_; }
  // Calls `ready(fd, CURL_CSELECT_* mask)` for each ready socket, without
  // waiting. `ready` may call Watch().
  void ForEachReady(const std::function<void(curl_socket_t, int)>& ready);
  void Close();

 private:
  int epoll_fd_ = -1;
  size_t watched_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_WORKER_CURL_SOCKET_SET_H_
