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
//
// Parking: curl says CURL_POLL_REMOVE for a connection's socket at the end of
// every transfer and asks for it again when the next transfer reuses the
// connection; following each word literally cost three epoll_ctl calls per
// request. A removed socket is parked instead: it stays in the set, unwatched
// as far as curl knows, and watching it again costs one epoll_ctl (MOD, which
// finds out, with ENOENT, a descriptor closed meanwhile). An event on a parked socket (the server
// closed an idle connection) takes it out of the set then, without troubling curl. This needs to
// know when curl closes a socket, as a new one may get the same number: the payload routes curl's
// CURLOPT_CLOSESOCKETFUNCTION to Closed(). Not thread-safe: used from the worker loop's thread.
#ifndef FANMAP_WORKER_CURL_SOCKET_SET_H_
#define FANMAP_WORKER_CURL_SOCKET_SET_H_

#include <curl/curl.h>

#include <cstdint>
#include <functional>
#include <vector>

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
  // curl is about to close `fd`: it leaves the set with it.
  void Closed(curl_socket_t fd);
  // The descriptor to poll for reading: readable when a socket in the set,
  // watched or parked, is ready (-1 before Init).
  int fd() const { return epoll_fd_; }
  // Sockets in the set, watched or parked.
  size_t size() const { return watched_; }
  // Calls `ready(fd, CURL_CSELECT_* mask)` for each ready watched socket,
  // without waiting; ready parked sockets leave the set. `ready` may call
  // Watch().
  void ForEachReady(const std::function<void(curl_socket_t, int)>& ready);
  void Close();

 private:
  // What the set holds for a descriptor, by its number.
  enum class Entry : uint8_t {
    kNone,     // not in the set
    kWatched,  // in the set, for `events_[fd]`, as curl asked
    kParked,   // in the set, for `events_[fd]`, which curl no longer wants
  };
  bool Control(int op, curl_socket_t fd, uint32_t events);
  int epoll_fd_ = -1;
  size_t watched_ = 0;
  std::vector<Entry> entries_;
  std::vector<uint32_t> events_;
};

}  // namespace fanmap

#endif  // FANMAP_WORKER_CURL_SOCKET_SET_H_
