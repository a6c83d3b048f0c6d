#include "worker/curl_socket_set.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>

namespace fanmap {
namespace {

// A connected pair of sockets: `watched` goes into the set, `peer` makes it
// readable.
struct Pair {
  int watched = -1;
  int peer = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    watched = fds[0];
    peer = fds[1];
  }
  ~Pair() {
    if (watched >= 0) close(watched);
    if (peer >= 0) close(peer);
  }
  void Send() { EXPECT_EQ(write(peer, "x", 1), 1); }
};

std::map<curl_socket_t, int> Ready(CurlSocketSet& set) {
  std::map<curl_socket_t, int> ready;
  set.ForEachReady([&ready](curl_socket_t fd, int mask) { ready[fd] = mask; });
  return ready;
}

TEST(CurlSocketSetTest, AWatchedSocketIsReportedWhenReady) {
  CurlSocketSet set;
  ASSERT_TRUE(set.Init().ok());
  Pair pair;
  set.Watch(pair.watched, CURL_POLL_IN);
  EXPECT_TRUE(Ready(set).empty());
  pair.Send();
  auto ready = Ready(set);
  ASSERT_EQ(ready.count(pair.watched), 1u);
  EXPECT_TRUE(ready[pair.watched] & CURL_CSELECT_IN);
}

TEST(CurlSocketSetTest, AParkedSocketIsNotReportedAndLeavesWhenItStirs) {
  CurlSocketSet set;
  ASSERT_TRUE(set.Init().ok());
  Pair pair;
  set.Watch(pair.watched, CURL_POLL_IN);
  set.Watch(pair.watched, CURL_POLL_REMOVE);
  EXPECT_EQ(set.size(), 1u);  // parked: still in the set
  pair.Send();
  EXPECT_TRUE(Ready(set).empty()) << "curl did not ask for it";
  EXPECT_EQ(set.size(), 0u) << "a parked socket that stirs leaves the set";
  // Asked for again, it is watched afresh.
  set.Watch(pair.watched, CURL_POLL_IN);
  EXPECT_EQ(Ready(set).count(pair.watched), 1u);
}

TEST(CurlSocketSetTest, AParkedSocketWatchedAgainIsReported) {
  // The next transfer on a kept-alive connection.
  CurlSocketSet set;
  ASSERT_TRUE(set.Init().ok());
  Pair pair;
  set.Watch(pair.watched, CURL_POLL_IN);
  set.Watch(pair.watched, CURL_POLL_REMOVE);
  set.Watch(pair.watched, CURL_POLL_IN);
  pair.Send();
  EXPECT_EQ(Ready(set).count(pair.watched), 1u);
  set.Watch(pair.watched, CURL_POLL_OUT);
  auto ready = Ready(set);
  ASSERT_EQ(ready.count(pair.watched), 1u);
  EXPECT_TRUE(ready[pair.watched] & CURL_CSELECT_OUT);
}

// How curl may leave a socket before it closes it.
enum class Goodbye : uint8_t {
  kParkedAndAnnounced,  // REMOVE, then the close callback (Closed())
  kParkedUnannounced,   // REMOVE, then a plain close (the threaded resolver)
  kUnannounced,         // a plain close while watched
};

// Watches a socket for `first`, lets curl close it as `goodbye` says, and
// checks that a new socket that gets the same descriptor number and asks for
// `then` is really watched (else the worker would wait for it forever).
void ExpectReusedNumberIsWatched(int first, Goodbye goodbye, int then) {
  CurlSocketSet set;
  ASSERT_TRUE(set.Init().ok());
  auto old_pair = std::make_unique<Pair>();
  int number = old_pair->watched;
  set.Watch(number, first);
  if (goodbye != Goodbye::kUnannounced) set.Watch(number, CURL_POLL_REMOVE);
  if (goodbye == Goodbye::kParkedAndAnnounced) {
    set.Closed(number);
    EXPECT_EQ(set.size(), 0u);
  }
  old_pair.reset();  // the kernel drops it from the epoll set
  Pair pair;
  ASSERT_EQ(pair.watched, number) << "the kernel gives the lowest free number";
  set.Watch(pair.watched, then);
  pair.Send();
  EXPECT_EQ(Ready(set).count(pair.watched), 1u);
}

TEST(CurlSocketSetTest, ANewSocketWithAClosedOnesNumberIsWatched) {
  ExpectReusedNumberIsWatched(CURL_POLL_IN, Goodbye::kParkedAndAnnounced, CURL_POLL_IN);
}

TEST(CurlSocketSetTest, ASocketClosedUnannouncedIsWatchedAgainWhenAskedFor) {
  // Other events: a MOD, which falls back to ADD.
  ExpectReusedNumberIsWatched(CURL_POLL_OUT, Goodbye::kUnannounced, CURL_POLL_IN);
}

TEST(CurlSocketSetTest, AParkedSocketClosedUnannouncedIsReplacedBySameEvents) {
  // curl's threaded resolver says REMOVE for its socketpair and closes it
  // without the close callback; the next socket asks for the same events.
  ExpectReusedNumberIsWatched(CURL_POLL_IN, Goodbye::kParkedUnannounced, CURL_POLL_IN);
}

}  // namespace
}  // namespace fanmap
