#include "worker/payload_builtin.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/clock.h"

namespace fanmap {
namespace {

class BuiltinPayloadTest : public ::testing::Test {
 protected:
  void Make(const std::string& spec) {
    Status status = MakeBuiltinPayload(spec, &sink_, &payload_);
    ASSERT_TRUE(status.ok()) << status.message();
  }
  void Start(uint64_t index, const std::string& item) { payload_->Start(Task{index, 0, item}); }
  // Drives the payload the way the worker loop does until `n` results are in
  // the sink; fails the test after 60 s.
  void RunUntil(size_t n) {
    int64_t give_up = NowMillis() + 60000;
    while (sink_.size() < n && NowMillis() < give_up) {
      std::vector<zmq_pollitem_t> items;
      long timeout = 100;
      payload_->AddPollItems(&items, &timeout);
      zmq_poll(items.data(), static_cast<int>(items.size()), timeout);
      payload_->Advance(items.data(), items.size());
    }
    ASSERT_EQ(sink_.size(), n);
  }

  ResultSink sink_;
  std::unique_ptr<Payload> payload_;
};

TEST_F(BuiltinPayloadTest, EchoFinishesAtOnce) {
  Make("echo");
  Start(5, "hello");
  ASSERT_EQ(sink_.size(), 1u);
  EXPECT_TRUE(sink_[0].ok);
  EXPECT_EQ(sink_[0].index, 5u);
  EXPECT_EQ(sink_[0].value, "hello");
  EXPECT_EQ(payload_->running(), 0u);
}

TEST_F(BuiltinPayloadTest, SleepOverlapsTasksAndFinishesInDeadlineOrder) {
  // Long enough that the first Advance() comes before the timers are due, even
  // on a loaded machine.
  Make("sleep:2000");
  for (int i = 0; i < 20; ++i) Start(i, std::to_string(i));
  EXPECT_EQ(payload_->running(), 20u);
  payload_->Advance(nullptr, 0);
  EXPECT_TRUE(sink_.empty()) << "sleep must not finish before its timer";
  // All twenty timers run at once: one Advance() after a single sleep's
  // duration finishes every one of them.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  payload_->Advance(nullptr, 0);
  ASSERT_EQ(sink_.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sink_[i].value, std::to_string(i));
  EXPECT_EQ(payload_->running(), 0u);
}

TEST_F(BuiltinPayloadTest, Sha256MatchesKnownDigests) {
  // sha256("abc") and sha256(sha256("abc")) (of the raw digest).
  EXPECT_EQ(Sha256Rounds("abc", 1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Rounds("abc", 2),
            "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358");
  Make("sha256:2");
  Start(0, "abc");
  RunUntil(1);
  EXPECT_EQ(sink_[0].value, Sha256Rounds("abc", 2));
}

TEST_F(BuiltinPayloadTest, Sha256YieldsToTheLoopDuringLongTasks) {
  Make("sha256:300000");  // about 100 ms of CPU: far more than one 2 ms slice
  Start(0, "x");
  std::vector<zmq_pollitem_t> items;
  long timeout = 100;
  payload_->AddPollItems(&items, &timeout);
  EXPECT_EQ(timeout, 0) << "pending CPU work asks the loop not to sleep";
  payload_->Advance(items.data(), items.size());
  EXPECT_TRUE(sink_.empty()) << "one Advance() must not run the whole task";
  RunUntil(1);
  EXPECT_EQ(sink_[0].value, Sha256Rounds("x", 300000));
}

TEST_F(BuiltinPayloadTest, FailOnFailsOnlyTheNamedItem) {
  Make("fail-on:bad");
  Start(0, "good");
  Start(1, "bad");
  ASSERT_EQ(sink_.size(), 2u);
  EXPECT_TRUE(sink_[0].ok);
  EXPECT_FALSE(sink_[1].ok);
  EXPECT_NE(sink_[1].value.find("bad"), std::string::npos);
}

TEST_F(BuiltinPayloadTest, RejectsUnknownSpecs) {
  for (const char* spec : {"", "nope", "sleep", "sleep:abc", "sha256:-1", "echo:1"}) {
    std::unique_ptr<Payload> payload;
    Status status = MakeBuiltinPayload(spec, &sink_, &payload);
    EXPECT_FALSE(status.ok()) << spec;
    EXPECT_NE(status.message().find("unknown builtin"), std::string::npos) << spec;
  }
}

}  // namespace
}  // namespace fanmap
