#include "worker/payload_pipe.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "tests/payload_test_util.h"

namespace fanmap {
namespace {

using testing_util::IntExtra;
using testing_util::NoChildrenLeft;
using testing_util::StringExtra;
constexpr auto kTimeout = testing_util::kPayloadTimeout;

// Echoes each line with "!" appended, one answer per line, flushed.
constexpr char kBang[] = "while IFS= read -r x; do printf '%s!\\n' \"$x\"; done";

class PipePayloadTest : public ::testing::Test {
 protected:
  // Writing to a co-process that has gone raises SIGPIPE; the worker ignores
  // it, and so must the process driving the payload here.
  static void SetUpTestSuite() { signal(SIGPIPE, SIG_IGN); }

  void TearDown() override {
    if (payload_) payload_->Shutdown();
    payload_.reset();
    EXPECT_TRUE(NoChildrenLeft());
  }

  void Use(std::string command, PipePayload::Options options = PipePayload::Options()) {
    payload_ = std::make_unique<PipePayload>(std::move(command), &sink_, options);
  }
  void UseFixedWindow(std::string command, size_t window) {
    PipePayload::Options options;
    options.min_window = options.max_window = window;
    Use(std::move(command), options);
  }

  // Items wait here until the loop would start them (running() < slots_).
  uint64_t Queue(const std::string& item) {
    queued_.push_back(Task{next_index_, 0, item});
    return next_index_++;
  }
  void QueueNumbers(int n) {
    for (int i = 0; i < n; ++i) Queue(std::to_string(i));
  }

  // One turn of the worker's loop: start what fits, poll, advance.
  ::testing::AssertionResult Turn(long max_wait_ms) {
    while (!queued_.empty() && payload_->running() < slots_) {
      payload_->Start(std::move(queued_.front()));
      queued_.pop_front();
      max_outstanding_ = std::max(max_outstanding_, payload_->outstanding());
      max_co_processes_ = std::max(max_co_processes_, payload_->co_processes());
    }
    std::vector<zmq_pollitem_t> items;
    long timeout_ms = max_wait_ms;
    payload_->AddPollItems(&items, &timeout_ms);
    if (items.empty()) {
      if (payload_->outstanding() == 0) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure()
             << "payload waits on nothing with " << payload_->outstanding() << " outstanding";
    }
    if (zmq_poll(items.data(), static_cast<int>(items.size()), timeout_ms) < 0) {
      return ::testing::AssertionFailure() << "zmq_poll: " << zmq_strerror(zmq_errno());
    }
    payload_->Advance(items.data(), items.size());
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult RunUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!done()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return ::testing::AssertionFailure()
               << "timed out with " << sink_.size() << " results, " << payload_->outstanding()
               << " outstanding and " << queued_.size() << " queued";
      }
      ::testing::AssertionResult turned = Turn(std::min<long>(left.count(), 100));
      if (!turned) return turned;
    }
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult RunUntilResults(size_t n) {
    return RunUntil([this, n] { return sink_.size() >= n; });
  }

  const Result* Find(uint64_t index) const {
    for (const Result& r : sink_) {
      if (r.index == index) return &r;
    }
    return nullptr;
  }

  ResultSink sink_;
  std::unique_ptr<PipePayload> payload_;
  std::deque<Task> queued_;
  uint64_t next_index_ = 0;
  size_t slots_ = 1;
  size_t max_outstanding_ = 0;
  size_t max_co_processes_ = 0;
};

TEST_F(PipePayloadTest, AnswersGoToItemsInOrder) {
  Use(kBang);
  QueueNumbers(500);
  ASSERT_TRUE(RunUntilResults(500));
  ASSERT_EQ(sink_.size(), 500u);
  for (size_t i = 0; i < sink_.size(); ++i) {
    EXPECT_EQ(sink_[i].index, i);
    EXPECT_TRUE(sink_[i].ok) << sink_[i].value;
    EXPECT_EQ(sink_[i].value, std::to_string(i) + "!");
  }
  EXPECT_EQ(payload_->outstanding(), 0u);
  EXPECT_EQ(payload_->co_processes(), 1u);
}

TEST_F(PipePayloadTest, KeepsAttemptAndEmptyItems) {
  Use(kBang);
  payload_->Start(Task{41, 3, ""});
  ASSERT_TRUE(RunUntilResults(1));
  EXPECT_EQ(sink_[0].index, 41u);
  EXPECT_EQ(sink_[0].attempt, 3u);
  EXPECT_EQ(sink_[0].value, "!");
}

TEST_F(PipePayloadTest, DropsOneTrailingCarriageReturn) {
  Use("while IFS= read -r x; do printf '%s\\r\\r\\n' \"$x\"; done");
  Queue("a");
  ASSERT_TRUE(RunUntilResults(1));
  EXPECT_EQ(sink_[0].value, "a\r");
}

TEST_F(PipePayloadTest, WritesAWindowAheadOfTheAnswers) {
  // The command answers nothing before it has read 50 lines: a payload that
  // waited for each answer before writing the next item would never finish.
  UseFixedWindow(
      "n=0; buf=''; while IFS= read -r x; do n=$((n+1)); buf=\"$buf$x \"; "
      "if [ $n -ge 50 ]; then for y in $buf; do echo \"$y\"; done; buf=''; n=0; fi; done",
      64);
  QueueNumbers(100);
  ASSERT_TRUE(RunUntilResults(100));
  for (size_t i = 0; i < sink_.size(); ++i) EXPECT_EQ(sink_[i].value, std::to_string(i));
  EXPECT_EQ(max_outstanding_, 64u);
  EXPECT_EQ(max_co_processes_, 1u);
}

TEST_F(PipePayloadTest, RunningCountsFullWindows) {
  UseFixedWindow("sleep 30", 4);
  for (uint64_t i = 0; i < 9; ++i) payload_->Start(Task{i, 0, "x"});
  EXPECT_EQ(payload_->outstanding(), 9u);
  EXPECT_EQ(payload_->running(), 2u);
  EXPECT_EQ(payload_->co_processes(), 3u);  // a new one only when all are full
}

TEST_F(PipePayloadTest, FastAnswersShareOneCoProcessWithADeepWindow) {
  PipePayload::Options options;
  options.queue_budget = std::chrono::seconds(1);  // any answer time gives a deep window
  Use("cat", options);
  slots_ = 1;
  QueueNumbers(3000);
  ASSERT_TRUE(RunUntilResults(3000));
  for (size_t i = 0; i < sink_.size(); ++i) EXPECT_EQ(sink_[i].value, std::to_string(i));
  EXPECT_EQ(payload_->window(), options.max_window);
  EXPECT_GT(max_outstanding_, 100u);
  EXPECT_EQ(max_co_processes_, 1u);
}

TEST_F(PipePayloadTest, SlowAnswersSpreadOverOneCoProcessPerSlot) {
  PipePayload::Options options;
  options.queue_budget = std::chrono::microseconds(100);  // far below one answer's time
  Use("while IFS= read -r x; do sleep 0.05; echo \"$x\"; done", options);
  slots_ = 3;
  QueueNumbers(12);
  ASSERT_TRUE(RunUntilResults(12));
  for (size_t i = 0; i < 12; ++i) {
    const Result* r = Find(i);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->value, std::to_string(i));
  }
  EXPECT_EQ(payload_->window(), 1u);
  EXPECT_EQ(max_co_processes_, 3u);
  EXPECT_EQ(max_outstanding_, 3u);
}

TEST_F(PipePayloadTest, ItemWithLineBreakIsErrorAndNotSent) {
  Use(kBang);
  payload_->Start(Task{0, 0, "a\nb"});
  payload_->Start(Task{1, 0, "a\rb"});
  ASSERT_EQ(sink_.size(), 2u);
  for (const Result& r : sink_) {
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.retryable);
    EXPECT_EQ(r.value, "item contains a line break, which --pipe cannot send");
  }
  EXPECT_EQ(payload_->co_processes(), 0u);
  EXPECT_EQ(payload_->outstanding(), 0u);
}

TEST_F(PipePayloadTest, CoProcessDeathFailsOnlyItsItemsAndAFreshOneTakesOver) {
  // "die" is never sent again, so only the first co-process dies.
  UseFixedWindow("while IFS= read -r x; do [ \"$x\" = die ] && kill -9 $$; echo \"$x\"; done", 8);
  for (int i = 0; i < 40; ++i) Queue(i == 5 ? "die" : std::to_string(i));
  ASSERT_TRUE(RunUntilResults(40));

  size_t failed = 0;
  for (uint64_t i = 0; i < 40; ++i) {
    const Result* r = Find(i);
    ASSERT_NE(r, nullptr) << i;
    if (i < 5) {
      EXPECT_TRUE(r->ok) << i;
    }
    if (r->ok) {
      EXPECT_EQ(r->value, std::to_string(i));
      continue;
    }
    ++failed;
    EXPECT_GE(i, 5u);
    EXPECT_LT(i, 5u + 8u) << "only items the dead co-process held may fail";
    EXPECT_TRUE(r->retryable);
    EXPECT_EQ(r->value, "co-process killed by signal 9 while holding this item");
    EXPECT_EQ(IntExtra(*r, "signal"), 9);
  }
  EXPECT_FALSE(Find(5)->ok);
  EXPECT_GE(failed, 1u);
  EXPECT_TRUE(Find(39)->ok) << "later items go to a fresh co-process";
}

TEST_F(PipePayloadTest, ExitCodeAndStderrTailComeWithTheFailedItems) {
  UseFixedWindow(
      "while IFS= read -r x; do "
      "if [ \"$x\" = boom ]; then echo 'bad thing happened' >&2; exit 3; fi; echo \"$x\"; done",
      8);
  Queue("a");
  Queue("boom");
  Queue("b");
  ASSERT_TRUE(RunUntilResults(3));
  EXPECT_TRUE(Find(0)->ok);
  for (uint64_t i : {1, 2}) {
    const Result* r = Find(i);
    EXPECT_FALSE(r->ok);
    EXPECT_TRUE(r->retryable);
    EXPECT_EQ(r->value, "co-process exited with code 3 while holding this item");
    EXPECT_EQ(IntExtra(*r, "exit_code"), 3);
    EXPECT_EQ(StringExtra(*r, "stderr"), "bad thing happened");
  }
  EXPECT_EQ(payload_->co_processes(), 0u);
}

TEST_F(PipePayloadTest, ChattyStderrNeverBlocksAndOnlyItsTailIsKept) {
  // 300 kB of stderr per item would fill the pipe many times over.
  UseFixedWindow(
      "while IFS= read -r x; do head -c 300000 /dev/zero | tr '\\0' e >&2; "
      "if [ \"$x\" = stop ]; then echo END >&2; exit 1; fi; echo \"$x\"; done",
      4);
  QueueNumbers(5);
  Queue("stop");
  ASSERT_TRUE(RunUntilResults(6));
  for (uint64_t i = 0; i < 5; ++i) EXPECT_TRUE(Find(i)->ok);
  const Result* r = Find(5);
  EXPECT_FALSE(r->ok);
  std::string err = StringExtra(*r, "stderr");
  EXPECT_EQ(err.size(), 2000u - 1);  // the final newline is dropped
  EXPECT_EQ(err.substr(err.size() - 4), "eEND");
}

TEST_F(PipePayloadTest, CleanExitWithItemsUnansweredIsRetryable) {
  UseFixedWindow("head -n 2", 8);
  QueueNumbers(5);
  ASSERT_TRUE(RunUntilResults(5));
  EXPECT_EQ(Find(0)->value, "0");
  EXPECT_EQ(Find(1)->value, "1");
  for (uint64_t i = 2; i < 5; ++i) {
    const Result* r = Find(i);
    EXPECT_FALSE(r->ok);
    EXPECT_TRUE(r->retryable);
    EXPECT_EQ(r->value, "co-process exited with code 0 with 3 item(s) unanswered");
    EXPECT_EQ(IntExtra(*r, "exit_code"), 0);
  }
}

TEST_F(PipePayloadTest, CancelKillsTheCoProcessAndFailsItsOtherItems) {
  UseFixedWindow("while IFS= read -r x; do [ \"$x\" = hang ] && sleep 1000; echo \"$x\"; done", 8);
  Queue("a");
  uint64_t hang = Queue("hang");
  Queue("b");
  Queue("c");
  ASSERT_TRUE(RunUntilResults(1));
  EXPECT_EQ(sink_[0].value, "a");
  EXPECT_EQ(payload_->outstanding(), 3u);

  payload_->Cancel(hang);
  EXPECT_EQ(payload_->co_processes(), 0u);
  EXPECT_EQ(payload_->outstanding(), 0u);
  ASSERT_EQ(sink_.size(), 3u);
  EXPECT_EQ(Find(hang), nullptr) << "the loop reports the cancelled item";
  for (uint64_t i : {2, 3}) {
    const Result* r = Find(i);
    ASSERT_NE(r, nullptr);
    EXPECT_TRUE(r->retryable);
    EXPECT_EQ(r->value, "co-process stopped because item 1 timed out while it held this item");
  }
  payload_->Cancel(hang);  // already gone: ignored
  payload_->Cancel(99);

  Queue("d");
  ASSERT_TRUE(RunUntilResults(4));
  EXPECT_EQ(sink_[3].value, "d");
}

TEST_F(PipePayloadTest, ExtraLineFailsHeldItemsAndEveryLaterOne) {
  // The unsolicited line arrives while the first item, larger than a pipe,
  // cannot even be written whole: nothing could be answered yet.
  UseFixedWindow("echo unsolicited; sleep 30", 8);
  Queue(std::string(1 << 20, 'x'));
  Queue("y");
  ASSERT_TRUE(RunUntilResults(2));
  for (const Result& r : sink_) {
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.retryable);
    EXPECT_EQ(r.value, "co-process wrote more lines than it was given items");
  }
  EXPECT_EQ(payload_->co_processes(), 0u);
  payload_->Start(Task{7, 0, "z"});
  ASSERT_EQ(sink_.size(), 3u);
  EXPECT_EQ(sink_[2].value, "co-process wrote more lines than it was given items");
  EXPECT_EQ(payload_->co_processes(), 0u);
}

TEST_F(PipePayloadTest, TwoAnswersPerItemBreakTheProtocol) {
  Use("while IFS= read -r x; do echo \"$x\"; echo \"$x\"; done");
  Queue("a");
  ASSERT_TRUE(RunUntil([this] { return !sink_.empty() && payload_->co_processes() == 0; }));
  EXPECT_TRUE(sink_[0].ok);
  payload_->Start(Task{1, 0, "b"});
  ASSERT_EQ(sink_.size(), 2u);
  EXPECT_FALSE(sink_[1].ok);
  EXPECT_EQ(sink_[1].value, "co-process wrote more lines than it was given items");
}

TEST_F(PipePayloadTest, OversizedAnswerIsAnError) {
  UseFixedWindow("read x; head -c 70000000 /dev/zero; sleep 30", 4);
  Queue("a");
  Queue("b");
  ASSERT_TRUE(RunUntilResults(2));
  EXPECT_FALSE(Find(0)->ok);
  EXPECT_FALSE(Find(0)->retryable);
  EXPECT_EQ(Find(0)->value, "co-process answer larger than 64 MiB");
  EXPECT_FALSE(Find(1)->ok);
  EXPECT_TRUE(Find(1)->retryable);
  EXPECT_EQ(payload_->co_processes(), 0u);
}

TEST_F(PipePayloadTest, CoProcessThatClosesStdinFailsWhatItHeld) {
  UseFixedWindow("exec 0<&-; sleep 0.2; exit 4", 8);
  QueueNumbers(3);
  ASSERT_TRUE(RunUntilResults(3));
  for (const Result& r : sink_) {
    EXPECT_TRUE(r.retryable);
    EXPECT_EQ(IntExtra(r, "exit_code"), 4);
  }
}

TEST_F(PipePayloadTest, CoProcessThatClosesStdoutAndLingersIsKilled) {
  UseFixedWindow("exec >&-; sleep 30", 8);
  QueueNumbers(2);
  ASSERT_TRUE(RunUntilResults(2));
  for (const Result& r : sink_) {
    EXPECT_TRUE(r.retryable);
    EXPECT_EQ(r.value, "co-process closed its stdout while holding this item");
  }
  EXPECT_EQ(payload_->co_processes(), 0u);
}

TEST_F(PipePayloadTest, ShutdownKillsAndReapsEveryCoProcess) {
  PipePayload::Options options;
  options.min_window = options.max_window = 1;
  // Ignores end-of-input and SIGTERM, and leaves a grandchild behind.
  Use("trap '' TERM; sleep 30 & while :; do sleep 1; done", options);
  for (uint64_t i = 0; i < 3; ++i) payload_->Start(Task{i, 0, "x"});
  EXPECT_EQ(payload_->co_processes(), 3u);
  payload_->Shutdown();
  EXPECT_EQ(payload_->co_processes(), 0u);
  EXPECT_EQ(payload_->outstanding(), 0u);
  EXPECT_TRUE(sink_.empty());
  EXPECT_TRUE(NoChildrenLeft());
  payload_->Shutdown();  // safe twice
}

TEST_F(PipePayloadTest, ShutdownClosesStdinFirst) {
  char dir[] = "/tmp/fanmap_pipe_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string mark = std::string(dir) + "/ended";
  // Leaves the mark only if it reaches the end of its input.
  Use(std::string(kBang) + "; : > " + mark);
  QueueNumbers(3);
  ASSERT_TRUE(RunUntilResults(3));
  payload_->Shutdown();
  EXPECT_TRUE(NoChildrenLeft());
  EXPECT_EQ(access(mark.c_str(), F_OK), 0) << "the co-process was killed before end-of-input";
  unlink(mark.c_str());
  rmdir(dir);
}

TEST_F(PipePayloadTest, DestroyingPayloadReapsCoProcesses) {
  Use("sleep 30");
  payload_->Start(Task{0, 0, "x"});
  payload_.reset();
  EXPECT_TRUE(NoChildrenLeft());
}

TEST(MakePayloadPipeTest, BuildsWithoutStartingAnything) {
  JobSpec job;
  job.kind = "pipe";
  job.argv = {"cat"};
  job.options["input_format"] = "jsonl";
  EXPECT_TRUE(ValidateJob(job).ok());
  EXPECT_TRUE(NoChildrenLeft());
  job.argv = {};
  EXPECT_FALSE(ValidateJob(job).ok());
  job.argv = {""};
  EXPECT_FALSE(ValidateJob(job).ok());
}

}  // namespace
}  // namespace fanmap
