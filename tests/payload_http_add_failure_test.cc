// HttpPayload when curl refuses transfers (curl_multi_add_handle fails): the
// refused ones come back as retryable errors at once, and the rest still
// reach curl, a turn's share at a time, without the loop spinning.
//
// curl_multi_add_handle is interposed by this test binary: calls numbered
// from g_fail_from to g_fail_to fail, the others go to libcurl's.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "worker/payload.h"
#include "worker/payload_http.h"

namespace {
int g_calls = 0;
int g_fail_from = 0;  // first failing call (1-based); 0: none fail
int g_fail_to = 0;    // last failing call
}  // namespace

extern "C" CURLMcode curl_multi_add_handle(CURLM* multi, CURL* easy) {
  using AddHandle = CURLMcode (*)(CURLM*, CURL*);
  static const auto real = reinterpret_cast<AddHandle>(dlsym(RTLD_NEXT, "curl_multi_add_handle"));
  int call = ++g_calls;
  if (g_fail_from > 0 && call >= g_fail_from && call <= g_fail_to) return CURLM_OUT_OF_MEMORY;
  return real(multi, easy);
}

namespace fanmap {
namespace {

// A listening socket that never answers: curl connects only inside the
// payload's calls, so what is in its accept queue between them is exact.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 1024) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() {
    for (int fd : accepted_) close(fd);
    close(fd_);
  }
  int port() const { return port_; }
  // Takes the connections made so far; waits (up to 10 s) until there are `n`.
  size_t AcceptUpTo(size_t n) {
    int64_t give_up = NowMillis() + 10000;
    for (;;) {
      int fd;
      while ((fd = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0) accepted_.push_back(fd);
      if (accepted_.size() >= n || NowMillis() >= give_up) return accepted_.size();
      pollfd p = {fd_, POLLIN, 0};
      poll(&p, 1, 100);
    }
  }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> accepted_;
};

TEST(HttpPayloadAddFailureTest, RefusedTransfersFailAtOnceAndTheRestStillStart) {
  setenv("no_proxy", "*", 1);
  SilentListener server;
  JobSpec job;
  job.kind = "http";
  job.argv = {"http://127.0.0.1:" + std::to_string(server.port()) + "/hold"};
  job.options = {{"method", "POST"}, {"input_format", "lines"}, {"timeout_ms", "60000"}};
  ResultSink sink;
  std::unique_ptr<Payload> payload;
  Status made = MakePayload(job, &sink, &payload);
  ASSERT_TRUE(made.ok()) << made.message();

  // The second turn's share is refused, all of it.
  const size_t share = kHttpAddsPerTurn;
  g_calls = 0;
  g_fail_from = static_cast<int>(share) + 1;
  g_fail_to = static_cast<int>(2 * share);
  const size_t tasks = 3 * share + 10;
  for (size_t i = 0; i < tasks; ++i) payload->Start(Task{i, 0, "x"});
  EXPECT_EQ(payload->running(), tasks);

  // Turns of the worker loop. Each gives curl a share of the waiting
  // transfers, refused ones not counted: a loop that counted them would
  // hand curl nothing more, poll without waiting, and never progress.
  auto step = [&](long* timeout) {
    std::vector<zmq_pollitem_t> items;
    *timeout = 1000;
    payload->AddPollItems(&items, timeout);
    zmq_poll(items.data(), static_cast<int>(items.size()), *timeout);
    payload->Advance(items.data(), items.size());
  };
  long timeout = 0;
  for (int turn = 0; turn < 8 && server.AcceptUpTo(0) < tasks - share; ++turn) step(&timeout);
  EXPECT_EQ(server.AcceptUpTo(tasks - share), tasks - share)
      << "the transfers after the refused ones never reached curl";
  ASSERT_EQ(sink.size(), share) << "each refused transfer gives one result";
  for (const Result& r : sink) {
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.retryable) << r.value;
    EXPECT_NE(r.value.find("curl"), std::string::npos) << r.value;
    EXPECT_GE(r.index, share);
    EXPECT_LT(r.index, 2 * share);
  }
  EXPECT_EQ(payload->running(), tasks - share);
  // Nothing left to hand curl: the loop may wait again.
  std::vector<zmq_pollitem_t> items;
  timeout = 1000;
  payload->AddPollItems(&items, &timeout);
  EXPECT_GT(timeout, 0) << "the loop would spin";
  payload->Shutdown();
  EXPECT_EQ(payload->running(), 0u);
}

}  // namespace
}  // namespace fanmap
