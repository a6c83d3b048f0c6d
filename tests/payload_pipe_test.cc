#include "worker/payload_pipe.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
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
// Longer than the other payloads' tests: filters that answer at end of input
// are started afresh for each of their first, growing batches, and Python's
// start-up can take a second or more on a heavily loaded machine.
constexpr auto kTimeout = 3 * testing_util::kPayloadTimeout;

// Echoes each line with "!" appended, one answer per line, flushed.
constexpr char kBang[] = "while IFS= read -r x; do printf '%s!\\n' \"$x\"; done";
// Python's stdout is block-buffered on a pipe unless PYTHONUNBUFFERED (set
// where these tests run) or -u says otherwise.
constexpr char kUnflushedPython[] =
    "env -u PYTHONUNBUFFERED python3 -c 'import sys\n"
    "for l in sys.stdin: print(l.strip().upper())'";

// A quiet period no test waits for: the co-process is never closed for
// silence.
constexpr std::chrono::seconds kNeverQuiet(1000);

// "a0bc", "a1bc", ...: items that sed s/a/b/, tr and toupper all change.
std::string Word(size_t i) { return "a" + std::to_string(i) + "bc"; }

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string FirstAToB(std::string s) {
  size_t a = s.find('a');
  if (a != std::string::npos) s[a] = 'b';
  return s;
}

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

  // Sends `n` words through `command` (default options) and expects each
  // answer to be `expected` of its item, in order.
  void ExpectFilter(const std::string& command, size_t n,
                    const std::function<std::string(std::string)>& expected) {
    Use(command);
    for (size_t i = 0; i < n; ++i) Queue(Word(i));
    ASSERT_TRUE(RunUntilResults(n));
    ASSERT_EQ(sink_.size(), n);
    for (size_t i = 0; i < n; ++i) {
      const Result* r = Find(i);
      ASSERT_NE(r, nullptr) << i;
      ASSERT_TRUE(r->ok) << i << ": " << r->value;
      ASSERT_EQ(r->value, expected(Word(i))) << i;
    }
    EXPECT_EQ(payload_->outstanding(), 0u);
  }

  // Items wait here until the loop would start them (running() < slots_).
  uint64_t Queue(const std::string& item) {
    queued_.push_back(Task{next_index_, 0, item});
    return next_index_++;
  }
  // Items 0..n-1 each failed, not to be retried, with an error starting with `why`.
  void ExpectFailedFor(uint64_t n, const std::string& why) {
    for (uint64_t i = 0; i < n; ++i) {
      const Result* r = Find(i);
      ASSERT_NE(r, nullptr) << i;
      EXPECT_FALSE(r->ok) << i << ": " << r->value;
      EXPECT_FALSE(r->retryable);
      EXPECT_EQ(r->value.rfind(why, 0), 0u) << r->value;
    }
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

  // Runs "a0" and, once its co-process has ended, "a1" in a fresh one.
  void RunOneCoProcessAfterTheOther() {
    Queue("a0");
    ASSERT_TRUE(RunUntilResults(1));
    ASSERT_TRUE(RunUntil([this] { return payload_->co_processes() == 0; }));
    Queue("a1");
    ASSERT_TRUE(RunUntilResults(2));
  }

  // The seconds that item `index` waited, from its answer "`item` SECONDS"
  // (WaitsForTheEndOfItsInput); -1, and a test failure, if it is not that.
  double Waited(uint64_t index, const std::string& item) {
    const Result* r = Find(index);
    if (r == nullptr || !r->ok || r->value.rfind(item + " ", 0) != 0) {
      ADD_FAILURE() << "item " << index << ": " << (r == nullptr ? "no result" : r->value);
      return -1;
    }
    return std::stod(r->value.substr(item.size() + 1));
  }

  ResultSink sink_;
  std::unique_ptr<PipePayload> payload_;
  std::deque<Task> queued_;
  uint64_t next_index_ = 0;
  size_t slots_ = 1;
  size_t max_outstanding_ = 0;
  size_t max_co_processes_ = 0;
};

TEST(PipeReadPacedTest, AFastCoProcessIsReadAtMostOncePerPace) {
  EXPECT_TRUE(PipeReadPaced(5, 0));
  EXPECT_TRUE(PipeReadPaced(5, kPipeReadPaceMicros - 1));
  EXPECT_FALSE(PipeReadPaced(5, kPipeReadPaceMicros));
}

TEST(PipeReadFullTest, APacedReadIsFullOnlyNearAQuarterOfAPipe) {
  constexpr size_t kPipe = 64 << 10;  // Linux's default
  // Its stdout polled: a stdio buffer at once means a command that writes a
  // buffer at a time, whatever the pipe.
  EXPECT_FALSE(PipeReadFull(kPipeFullReadBytes - 1, false, kPipe));
  EXPECT_TRUE(PipeReadFull(kPipeFullReadBytes, false, kPipe));
  EXPECT_TRUE(PipeReadFull(kPipeFullReadBytes, false, 0));
  // Paced: what a pace gathered from a command that flushes each short line.
  EXPECT_FALSE(PipeReadFull(kPipeFullReadBytes, true, kPipe));
  EXPECT_FALSE(PipeReadFull(kPipePacedFullReadBytes - 1, true, kPipe));
  EXPECT_TRUE(PipeReadFull(kPipePacedFullReadBytes, true, kPipe));
  EXPECT_TRUE(PipeReadFull(kPipePacedFullReadBytes, true, 1 << 20)) << "at most 16 KiB";
  // A small pipe fills within a pace: a quarter of it is full enough.
  EXPECT_FALSE(PipeReadFull(1023, true, 4096));
  EXPECT_TRUE(PipeReadFull(1024, true, 4096));
  EXPECT_TRUE(PipeReadFull(2048, true, 8192));
}

TEST(NextAnswerMicrosTest, FollowsTheAverageOfAnswersRead) {
  EXPECT_DOUBLE_EQ(NextAnswerMicros(0, 8, false), 8);  // the first measure
  EXPECT_DOUBLE_EQ(NextAnswerMicros(10, 5, false), 9);
  EXPECT_DOUBLE_EQ(NextAnswerMicros(1000, 2000, true), 1200) << "not paced: no drain rule";
}

TEST(NextAnswerMicrosTest, AFastCoProcessThatDrainedItsWindowGetsAWiderOne) {
  EXPECT_DOUBLE_EQ(NextAnswerMicros(5, 5, true), 2.5) << "at least halved";
  // Regression: a co-process that answers in 1.2 us, read every 2 ms (a paced
  // read and the worker's loop), with a window of 2 ms by the estimate.
  // Drained, the answers shared the whole 2 ms: 5 us each, just what the
  // estimate said, so the average stayed at 5 us and the co-process sat idle
  // three quarters of the time. Each drain now widens the window until it
  // holds more than a read's worth of work.
  const double cost_us = 1.2, cycle_us = 2000, budget_us = 2000;
  double answer_us = 5;
  bool drained = true;
  for (int read = 0; read < 20; ++read) {
    double window = std::min(4096.0, budget_us / answer_us);
    drained = window * cost_us < cycle_us;
    answer_us = NextAnswerMicros(answer_us, drained ? cycle_us / window : cost_us, drained);
  }
  EXPECT_FALSE(drained) << "window " << budget_us / answer_us;
  EXPECT_GE(std::min(4096.0, budget_us / answer_us) * cost_us, cycle_us);
}

TEST(PipeReadPacedTest, ASlowOrUnmeasuredCoProcessIsReadAsItAnswers) {
  EXPECT_FALSE(PipeReadPaced(kPipePacedBelowMicros, 0));
  EXPECT_FALSE(PipeReadPaced(1000, 0));
  EXPECT_FALSE(PipeReadPaced(0, 0));   // not measured yet
  EXPECT_FALSE(PipeReadPaced(5, -1));  // never read
}

TEST_F(PipePayloadTest, AnswersGoToItemsInOrder) {
  PipePayload::Options options;
  // One co-process throughout, however long a loaded machine keeps it off
  // the CPU (a silence would close it and start another).
  options.quiet_period = kNeverQuiet;
  Use(kBang, options);
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
  // (It drops what it holds at end of input, so it must never be closed.)
  PipePayload::Options options;
  options.min_window = options.max_window = 64;
  options.quiet_period = kNeverQuiet;
  Use("n=0; buf=''; while IFS= read -r x; do n=$((n+1)); buf=\"$buf$x \"; "
      "if [ $n -ge 50 ]; then for y in $buf; do echo \"$y\"; done; buf=''; n=0; fi; done",
      options);
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
  options.queue_budget = std::chrono::seconds(100);  // any answer time gives a deep window
  options.quiet_period = kNeverQuiet;                // ... in one co-process, however loaded
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
  options.quiet_period = kNeverQuiet;                     // no co-process is closed and replaced
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

// Filters that block-buffer their stdout answer only when their input ends.

TEST_F(PipePayloadTest, SedAnswersWhenItsInputIsClosed) {
  ExpectFilter("sed s/a/b/", 3, FirstAToB);
}

TEST_F(PipePayloadTest, AwkAnswersWhenItsInputIsClosed) {
  ExpectFilter("awk '{print toupper($0)}'", 3, Upper);
}

TEST_F(PipePayloadTest, TrAnswersWhenItsInputIsClosed) { ExpectFilter("tr a-z A-Z", 3, Upper); }

TEST_F(PipePayloadTest, UnflushedPythonAnswersWhenItsInputIsClosed) {
  ExpectFilter(kUnflushedPython, 3, Upper);
}

TEST_F(PipePayloadTest, BlockBufferedFilterAnswersManyItemsInOrder) {
  // Batches grow, and a batch big enough to fill sed's buffer is answered
  // while items still arrive: every answer still goes to its own item.
  ExpectFilter("sed s/a/b/", 20000, FirstAToB);
  EXPECT_GT(max_outstanding_, 1000u);
}

TEST_F(PipePayloadTest, UnflushedPythonAnswersManyItemsInOrder) {
  ExpectFilter(kUnflushedPython, 20000, Upper);
}

TEST_F(PipePayloadTest, ACommandThatDropsALineGivesNoItemAnotherItemsAnswer) {
  // grep -v 1 drops the line "1": closed to make it flush, it answers "0" and
  // "2" for the three items it holds and exits 0. Matched in order, item 1
  // would get "2"; which line is missing cannot be known, so none is matched.
  UseFixedWindow("grep -v 1", 8);
  QueueNumbers(3);
  ASSERT_TRUE(RunUntilResults(3));
  const std::string why =
      "co-process wrote fewer lines than it was given items (2 for the last 3 before it exited; "
      "answers cannot be matched to items: it must write one line for each line it reads)";
  ExpectFailedFor(3, why);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_EQ(Find(i)->value, why);
  EXPECT_EQ(IntExtra(*Find(0), "exit_code"), 0);
  // A fresh copy would drop lines too: every later item fails at once.
  EXPECT_EQ(payload_->co_processes(), 0u);
  payload_->Start(Task{3, 0, "3"});
  ASSERT_EQ(sink_.size(), 4u);
  EXPECT_EQ(sink_[3].value, why);
  EXPECT_EQ(payload_->co_processes(), 0u);
}

TEST_F(PipePayloadTest, ACommandThatDropsALineAndLingersOnAClosedStdoutFailsWhatItHeld) {
  // Its stdout ends but it does not exit: taken for one that closed its
  // stdout, it is killed; what it answered is still one line short.
  UseFixedWindow("grep -v 1; exec >&-; sleep 30", 8);
  QueueNumbers(3);
  ASSERT_TRUE(RunUntilResults(3));
  ExpectFailedFor(3,
                  "co-process wrote fewer lines than it was given items (2 for the last 3 before "
                  "it closed its stdout; answers cannot be matched to items: it must write one "
                  "line for each line it reads)");
}

TEST_F(PipePayloadTest, ALastAnswerWithoutALineBreakCountsOnceTheCommandEndsWell) {
  // awk writes a line break before every answer but the first: its last
  // answer ends without one, at its exit.
  UseFixedWindow("awk 'NR > 1 { printf \"\\n\" } { printf \"%s!\", $0 }'", 8);
  QueueNumbers(3);
  ASSERT_TRUE(RunUntilResults(3));
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_NE(Find(i), nullptr) << i;
    EXPECT_TRUE(Find(i)->ok) << i << ": " << Find(i)->value;
    EXPECT_EQ(Find(i)->value, std::to_string(i) + "!");
  }
}

TEST_F(PipePayloadTest, ALastLineCutShortByAFailureIsNoAnswer) {
  // It answers the first item, writes part of the second answer and fails.
  UseFixedWindow("read a; echo \"$a!\"; read b; printf 'partial'; exit 3", 8);
  QueueNumbers(2);
  ASSERT_TRUE(RunUntilResults(2));
  ASSERT_NE(Find(0), nullptr);
  EXPECT_TRUE(Find(0)->ok);
  EXPECT_EQ(Find(0)->value, "0!");
  ASSERT_NE(Find(1), nullptr);
  EXPECT_FALSE(Find(1)->ok);
  EXPECT_NE(Find(1)->value.find("exited with code 3"), std::string::npos) << Find(1)->value;
}

TEST_F(PipePayloadTest, ALastAnswerWithoutALineBreakCountsWhenTheCommandClosesItsStdout) {
  UseFixedWindow("read a; printf '%s!' \"$a\"; exec >&-; sleep 30", 8);
  QueueNumbers(1);
  ASSERT_TRUE(RunUntilResults(1));
  ASSERT_NE(Find(0), nullptr);
  EXPECT_TRUE(Find(0)->ok) << Find(0)->value;
  EXPECT_EQ(Find(0)->value, "0!");
}

TEST_F(PipePayloadTest, TextLeftByACommandKilledForLingeringIsNoAnswer) {
  // Item 2 is slow: the co-process is closed while it works on it, answers
  // it, then writes "bye" without a line break and lingers with its stdout
  // open. Killed for that, it wrote no extra line: the next item goes to a
  // fresh co-process and succeeds.
  UseFixedWindow(
      "while IFS= read -r x; do if [ \"$x\" = 2 ]; then sleep 1; fi; echo \"$x!\"; done; "
      "printf bye; exec sleep 30",
      8);
  QueueNumbers(3);
  ASSERT_TRUE(RunUntilResults(3));
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_NE(Find(i), nullptr) << i;
    EXPECT_TRUE(Find(i)->ok) << i << ": " << Find(i)->value;
  }
  ASSERT_TRUE(RunUntil([this] { return payload_->co_processes() == 0; }));
  Queue("3");
  ASSERT_TRUE(RunUntilResults(4));
  ASSERT_NE(Find(3), nullptr);
  EXPECT_TRUE(Find(3)->ok) << Find(3)->value;
  EXPECT_EQ(Find(3)->value, "3!");
}

TEST_F(PipePayloadTest, ACommandThatDropsItsLastLineFailsWhatItHeld) {
  // sed '$d' drops the last line it reads: the two answers it writes might
  // as well be the second and third items'.
  UseFixedWindow("sed '$d'", 8);
  QueueNumbers(3);
  ASSERT_TRUE(RunUntilResults(3));
  ExpectFailedFor(
      3, "co-process wrote fewer lines than it was given items (2 for the last 3 before it exited");
}

TEST_F(PipePayloadTest, SummaryAtEndOfInputBreaksTheProtocol) {
  UseFixedWindow("awk '{print} END {print \"total\"}'", 8);
  QueueNumbers(2);
  ASSERT_TRUE(RunUntil([this] { return sink_.size() == 2 && payload_->co_processes() == 0; }));
  EXPECT_EQ(Find(0)->value, "0");
  EXPECT_EQ(Find(1)->value, "1");
  payload_->Start(Task{2, 0, "2"});
  ASSERT_EQ(sink_.size(), 3u);
  EXPECT_FALSE(sink_[2].ok);
  EXPECT_FALSE(sink_[2].retryable);
  EXPECT_EQ(sink_[2].value,
            "co-process wrote more lines than it was given items (the extra lines came after its "
            "input was closed)");
}

TEST_F(PipePayloadTest, ItemsStartedWhileACoProcessFlushesGoToAFreshOne) {
  Use("sed s/a/b/");
  payload_->Start(Task{0, 0, "a0"});
  ASSERT_TRUE(RunUntil([this] { return payload_->flushing() == 1 || !sink_.empty(); }));
  ASSERT_EQ(payload_->flushing(), 1u) << "answered before its input was closed";
  payload_->Start(Task{1, 0, "a1"});
  EXPECT_EQ(payload_->co_processes(), 2u);
  ASSERT_TRUE(RunUntilResults(2));
  EXPECT_EQ(Find(0)->value, "b0");
  EXPECT_EQ(Find(1)->value, "b1");
}

TEST_F(PipePayloadTest, SlowCoProcessThatFlushesGetsEveryAnswer) {
  // Silent for 0.2 s per item: perhaps closed and replaced, never wrong.
  Use("while IFS= read -r x; do sleep 0.2; echo \"$x!\"; done");
  QueueNumbers(4);
  ASSERT_TRUE(RunUntilResults(4));
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(Find(i)->ok) << Find(i)->value;
    EXPECT_EQ(Find(i)->value, std::to_string(i) + "!");
  }
}

TEST_F(PipePayloadTest, CoProcessThatLingersAfterItsLastAnswerIsKilled) {
  // sed flushes and exits at end of input; the shell then sleeps with
  // sed's stdout still open.
  Use("sed s/a/b/; sleep 30");
  Queue("a");
  ASSERT_TRUE(RunUntil([this] { return !sink_.empty() && payload_->co_processes() == 0; }));
  ASSERT_EQ(sink_.size(), 1u);
  EXPECT_TRUE(sink_[0].ok);
  EXPECT_EQ(sink_[0].value, "b");
}

TEST_F(PipePayloadTest, NoCoProcessIsClosedWhileItHasUnreadInput) {
  // A slow start, ten quiet periods long, before it reads anything; then it
  // looks whether its stdin is already closed, and says so instead of
  // answering. Silence with input unread is no reason to close.
  Use("python3 -c '\n"
      "import fcntl, os, time\n"
      "time.sleep(0.3)\n"
      "line = os.read(0, 4096).decode().strip()\n"
      "fcntl.fcntl(0, fcntl.F_SETFL, os.O_NONBLOCK)\n"
      "try:\n"
      "    closed = os.read(0, 1) == b\"\"\n"
      "except BlockingIOError:\n"
      "    closed = False\n"
      "print(\"closed before it was read\" if closed else line, flush=True)'");
  Queue("a");
  ASSERT_TRUE(RunUntilResults(1));
  EXPECT_TRUE(sink_[0].ok) << sink_[0].value;
  EXPECT_EQ(sink_[0].value, "a");
}

// A python3 command that runs `prelude` (which sets `data`, the start of its
// item), reads the rest of its item, then waits for the end of its input
// before it answers (as a buffering filter does): "ITEM SECONDS", with how
// long it waited; `before_answer` runs between the end of its input and the
// answer.
std::string WaitsForTheEndOfItsInput(const std::string& prelude,
                                     const std::string& before_answer = "") {
  return "python3 -c '\n"
         "import os, time\n" +
         prelude +
         "while not data.endswith(b\"\\n\"):\n"
         "    data += os.read(0, 4096)\n"
         "read_at = time.monotonic()\n"
         "while os.read(0, 4096):\n"
         "    pass\n"
         "waited = round(time.monotonic() - read_at, 3)\n" +
         before_answer + "print(data.decode().strip(), waited, flush=True)'";
}

TEST_F(PipePayloadTest, ASilentCoProcessWaitsAsLongAsTheCommandTakesToStart) {
  // A command that takes 0.4 s to start, then reads its item and waits for
  // the end of its input before it answers (as a buffering filter does),
  // with how long it waited. Closing a silent co-process costs a fresh one's
  // start-up, so once that is known to be 0.4 s, a co-process is left silent
  // that long before its input is closed: with two workers, one that the
  // run's ordering window holds up while the other restarts must not close
  // its own co-process meanwhile, or the two restart in turn.
  Use(
      WaitsForTheEndOfItsInput("time.sleep(0.4)\n"
                               "data = b\"\"\n"));
  ASSERT_NO_FATAL_FAILURE(RunOneCoProcessAfterTheOther());
  EXPECT_GE(Waited(1, "a1"), 0.3)
      << "closed after the bare quiet period, not the command's start-up time";
}

TEST_F(PipePayloadTest, ACommandThatReadsSlowlyHasStartedAtItsFirstRead) {
  // A command that reads the first byte of its item at once (dd, a few ms
  // after it is spawned), takes the start-up of python3 and 0.9 s more over
  // the rest, then waits for the end of its input before it answers, with
  // how long it waited. Its start-up is the time to its first read, not to
  // its last: had it been taken as 0.9 s or more, the co-process would have
  // been left silent that long before its input was closed.
  static_assert(kMaxStartupQuietMicros > 900000);
  Use("dd bs=1 count=1 of=/dev/null status=none; exec " +
      WaitsForTheEndOfItsInput("time.sleep(0.9)\n"
                               "data = b\"\"\n"));
  Queue("a0");
  ASSERT_TRUE(RunUntilResults(1));
  // dd took the "a".
  double waited = Waited(0, "0");
  EXPECT_GE(waited, 0);
  // (Taken as its slow reading, the wait would be 0.9 s or more.)
  EXPECT_LT(waited, 0.85) << "its start-up was taken to be its slow reading";
}

TEST_F(PipePayloadTest, ACommandThatStartsInOverASecondIsSilentFromItsFirstRead) {
  // A command that reads nothing for 1.2 s, then reads its item and waits
  // for the end of its input before it answers, with how long it waited. Its
  // start-up is longer than kMaxStartupQuietMicros, so a silent co-process
  // of it waits that long before its input is closed, counted from its read:
  // not less (closed as soon as it has read), and not up to twice that (its
  // read noticed only at the end of a quiet period). The second co-process
  // starts with that quiet period already learnt.
  static_assert(kMaxStartupQuietMicros < 1200000);
  Use(
      WaitsForTheEndOfItsInput("time.sleep(1.2)\n"
                               "data = b\"\"\n"));
  ASSERT_NO_FATAL_FAILURE(RunOneCoProcessAfterTheOther());
  for (uint64_t index : {0, 1}) {
    double waited = Waited(index, "a" + std::to_string(index));
    EXPECT_GE(waited, 0.9) << "item " << index << ": closed before it was silent for its start-up";
    // Noticed only at the end of a quiet period, the wait would be about 2 s.
    EXPECT_LT(waited, 1.7) << "item " << index << ": its read was noticed late";
  }
}

TEST_F(PipePayloadTest, TheWaitForAStartUpIsNotLearntAsTheItemsQuietPeriod) {
  // A command that takes 0.5 s to start, reads its item, waits for the end
  // of its input, then takes 30 ms more before it answers: a late flush,
  // which lengthens the flush policy's quiet period to twice the quiet
  // period used and the time the answer took. The co-process was left
  // silent for its start-up (0.5 s or more) before its input was closed;
  // the policy's own quiet period was 30 ms, and that is what it learns from
  // (about 2 x (30 + 30) ms), not the wait for the start-up (2 x 0.53 s).
  Use(
      WaitsForTheEndOfItsInput("time.sleep(0.5)\n"
                               "data = b\"\"\n",
                               "time.sleep(0.03)\n"));
  const int64_t least = std::chrono::microseconds(PipeFlushPolicy::kQuietPeriod).count();
  ASSERT_EQ(payload_->flush_quiet_micros(), least);
  Queue("a0");
  ASSERT_TRUE(RunUntilResults(1));
  ASSERT_GE(Waited(0, "a0"), 0.5) << "not left silent for its start-up";
  EXPECT_GT(payload_->flush_quiet_micros(), least) << "the flush was not late";
  // Learnt from the start-up wait it would be 2 x 0.53 s or more.
  EXPECT_LT(payload_->flush_quiet_micros(), 1000000)
      << "the start-up wait was learnt as the items'";
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
  const std::string kCut = "[... earlier output cut; the last bytes follow]\n";
  ASSERT_EQ(err.substr(0, kCut.size()), kCut) << "a cut stderr says it was cut";
  EXPECT_EQ(err.size(), kCut.size() + 2000u - 1);  // the final newline is dropped
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

class PipeFlushPolicyTest : public ::testing::Test {
 protected:
  static constexpr int64_t kMin = 30000;  // µs
  PipeFlushPolicy policy_{std::chrono::microseconds(kMin), 4096};
  int64_t Quiet() const { return policy_.QuietMicros(false); }
  void FlushPromptly(size_t batch) { EXPECT_TRUE(policy_.OnFlushed(Quiet(), 500, batch)); }
};

TEST_F(PipeFlushPolicyTest, StartsAtTheMinimumWithNoBatch) {
  EXPECT_EQ(Quiet(), kMin);
  EXPECT_EQ(policy_.batch(), 0u);
}

TEST_F(PipeFlushPolicyTest, PromptFlushesGrowTheBatchFourfoldUpToTheMost) {
  FlushPromptly(1);
  EXPECT_EQ(policy_.batch(), 4u);
  FlushPromptly(4);
  EXPECT_EQ(policy_.batch(), 16u);
  FlushPromptly(2);  // fewer items were at hand: the batch does not shrink
  EXPECT_EQ(policy_.batch(), 16u);
  FlushPromptly(3000);
  EXPECT_EQ(policy_.batch(), 4096u);
  EXPECT_EQ(Quiet(), kMin);
}

TEST_F(PipeFlushPolicyTest, LateFlushWaitsTwiceTheSilenceItNeeded) {
  // Two seconds per item, answered 1.97 s after a close that followed 30 ms.
  EXPECT_FALSE(policy_.OnFlushed(30000, 1970000, 1));
  EXPECT_EQ(Quiet(), 4000000);
  EXPECT_EQ(policy_.batch(), 0u) << "a slow co-process is not one that answers at end";
}

TEST_F(PipeFlushPolicyTest, PromptFlushesHalveTheQuietPeriodDownToTheMinimum) {
  policy_.OnFlushed(kMin, 90000, 1);
  EXPECT_EQ(Quiet(), 240000);
  FlushPromptly(1);
  EXPECT_EQ(Quiet(), 120000);
  EXPECT_EQ(policy_.batch(), 1u) << "a long wait says nothing about the cost of items";
  FlushPromptly(1);
  FlushPromptly(1);
  EXPECT_EQ(Quiet(), kMin);
  FlushPromptly(1);
  EXPECT_EQ(Quiet(), kMin);
  EXPECT_EQ(policy_.batch(), 4u);
}

TEST_F(PipeFlushPolicyTest, LateFlushHalvesTheBatch) {
  FlushPromptly(16);
  EXPECT_EQ(policy_.batch(), 64u);
  policy_.OnFlushed(kMin, 200000, 64);  // work left after the close
  EXPECT_EQ(policy_.batch(), 32u);
}

TEST_F(PipeFlushPolicyTest, SlowExitsOnABusyMachineNeitherStallNorShrinkTheBatch) {
  // Regression: with both CPUs busy a block-buffered python3 filter took
  // 40 ms to flush and exit after each close, over half the minimum quiet
  // period. Each flush was late: each doubled the quiet period (twice the
  // silence plus the 40 ms), up to a minute, and halved the batch, down to
  // one item. Every item then waited a minute.
  FlushPromptly(16);
  ASSERT_EQ(policy_.batch(), 64u);
  EXPECT_FALSE(policy_.OnFlushed(Quiet(), 40000, 64));
  EXPECT_EQ(policy_.batch(), 64u) << "a slow exit is not work";
  for (int i = 0; i < 30; ++i) policy_.OnFlushed(Quiet(), 40000, policy_.batch());
  EXPECT_LE(Quiet(), 4 * (kMin + 40000)) << "it should stay within a few times the exit time";
  EXPECT_EQ(policy_.batch(), 64u);
  // A slow item still lengthens it: answered 1.97 s after a close.
  EXPECT_FALSE(policy_.OnFlushed(Quiet(), 1970000, 64));
  EXPECT_GE(Quiet(), 3940000);
  EXPECT_EQ(policy_.batch(), 32u);
}

TEST_F(PipeFlushPolicyTest, TheLineByLineFloorIsNoSilenceToJudgeAFlushBy) {
  // A co-process that answered line by line waits at least 250 ms before a
  // close; an answer 50 ms after that close is a 300 ms item, not a flush
  // the close brought about: late, as at the minimum quiet period, even if
  // the policy's quiet period has grown since the close.
  policy_.OnLineByLine();
  EXPECT_FALSE(policy_.OnFlushed(policy_.QuietMicros(true), 50000, 1, /*own_quiet_us=*/kMin));
  EXPECT_EQ(Quiet(), 600000);
  EXPECT_FALSE(policy_.OnFlushed(policy_.QuietMicros(true), 250000, 1, /*own_quiet_us=*/kMin));
}

TEST_F(PipeFlushPolicyTest, ABatchClosedAfterALongWaitDoesNotGrowTheBatch) {
  // With several co-processes, one is closed after a 200 ms quiet period;
  // before its flush comes, the others' prompt flushes bring the quiet
  // period back to the minimum. Its batch, flushed after 200 ms, says
  // nothing of the cost of items: the batch stays.
  EXPECT_FALSE(policy_.OnFlushed(kMin, 70000, 1));  // 200 ms from now on
  ASSERT_EQ(Quiet(), 200000);
  for (int i = 0; i < 3; ++i) FlushPromptly(1);
  ASSERT_EQ(Quiet(), kMin);
  ASSERT_EQ(policy_.batch(), 1u);
  EXPECT_TRUE(policy_.OnFlushed(200000, 50000, 16, /*own_quiet_us=*/200000));
  EXPECT_EQ(policy_.batch(), 1u);
}

TEST_F(PipeFlushPolicyTest, QuietPeriodHasACeiling) {
  policy_.OnFlushed(kMin, 3600000000, 1);
  EXPECT_EQ(Quiet(), std::chrono::microseconds(PipeFlushPolicy::kMaxQuietPeriod).count());
}

TEST_F(PipeFlushPolicyTest, CoProcessThatAnsweredLineByLineWaitsLonger) {
  EXPECT_EQ(policy_.QuietMicros(true),
            std::chrono::microseconds(PipeFlushPolicy::kLineByLineQuietPeriod).count());
  policy_.OnFlushed(kMin, 1970000, 1);
  EXPECT_EQ(policy_.QuietMicros(true), 4000000);
}

TEST_F(PipeFlushPolicyTest, AnsweringLineByLineEndsTheBatch) {
  FlushPromptly(1);
  EXPECT_EQ(policy_.batch(), 4u);
  policy_.OnLineByLine();
  EXPECT_EQ(policy_.batch(), 0u);
  FlushPromptly(4);
  EXPECT_EQ(policy_.batch(), 16u);
}

PipePayload::Options JsonAnswers() {
  PipePayload::Options options;
  options.answers = PipeAnswerFormat::kJson;
  return options;
}

// Sets an environment variable for the life of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

TEST_F(PipePayloadTest, JsonAnswersSayWhetherEachItemSucceeded) {
  // cat answers each item with the item itself: the items are the answers.
  PipePayload::Options options = JsonAnswers();
  options.quiet_period = kNeverQuiet;  // one co-process, however loaded the machine
  Use("cat", options);
  const std::vector<std::string> answers = {
      R"({"ok":true,"result":"plain"})",
      R"({"ok":false,"error":"ValueError: bad","traceback":"Traceback:\n  f()\n"})",
      R"({"ok":true,"result":{"n":[1,2]}})",
      "not json at all",
      R"([{"ok":true,"result":1}])",
      R"({"ok":true,"result":"two\nlines"})",
      R"({"ok":false,"error":"try later","retryable":true})",
      R"({"ok":true,"value":1})",
      R"({"ok":true,"result":"last"})",
  };
  for (const std::string& answer : answers) Queue(answer);
  ASSERT_TRUE(RunUntilResults(answers.size()));
  ASSERT_EQ(sink_.size(), answers.size());
  for (size_t i = 0; i < sink_.size(); ++i) EXPECT_EQ(sink_[i].index, i);
  EXPECT_TRUE(sink_[0].ok);
  EXPECT_EQ(sink_[0].value, "plain");
  EXPECT_FALSE(sink_[1].ok);
  EXPECT_FALSE(sink_[1].retryable);
  EXPECT_EQ(sink_[1].value, "ValueError: bad");
  EXPECT_EQ(StringExtra(sink_[1], "traceback"), "Traceback:\n  f()\n");
  EXPECT_TRUE(sink_[2].ok);
  EXPECT_TRUE(sink_[2].value_is_json);
  EXPECT_EQ(sink_[2].value, R"({"n":[1,2]})");
  EXPECT_FALSE(sink_[3].ok);
  EXPECT_NE(sink_[3].value.find("not JSON"), std::string::npos) << sink_[3].value;
  EXPECT_FALSE(sink_[4].ok);
  EXPECT_NE(sink_[4].value.find("an array, not an object"), std::string::npos);
  EXPECT_TRUE(sink_[5].ok);
  EXPECT_EQ(sink_[5].value, "two\nlines");
  EXPECT_FALSE(sink_[6].ok);
  EXPECT_TRUE(sink_[6].retryable);
  EXPECT_EQ(sink_[6].value, "try later");
  EXPECT_FALSE(sink_[7].ok);
  EXPECT_NE(sink_[7].value.find("unknown key \"value\""), std::string::npos);
  EXPECT_FALSE(sink_[7].retryable);
  // Bad answers cost only their own items: the co-process lives on.
  EXPECT_TRUE(sink_[8].ok);
  EXPECT_EQ(sink_[8].value, "last");
  EXPECT_EQ(payload_->co_processes(), 1u);
  for (const Result& r : sink_) EXPECT_GT(r.elapsed_us, 0u);
}

TEST_F(PipePayloadTest, LineAnswersStayResultTextWhateverTheyLookLike) {
  Use("cat");
  Queue(R"({"ok":false,"error":"e"})");
  Queue("not json");
  ASSERT_TRUE(RunUntilResults(2));
  EXPECT_TRUE(sink_[0].ok);
  EXPECT_FALSE(sink_[0].value_is_json);
  EXPECT_EQ(sink_[0].value, R"({"ok":false,"error":"e"})");
  EXPECT_TRUE(sink_[1].ok);
  EXPECT_EQ(sink_[1].value, "not json");
}

TEST_F(PipePayloadTest, CoProcessesFindTheAnswerFormatInTheirEnvironment) {
  // Whatever the worker inherited, the co-process is told the format in use.
  ScopedEnv inherited(kPipeAnswersEnv, "inherited");
  Use("while IFS= read -r x; do printf '{\"ok\":true,\"result\":\"%s\"}\\n' "
      "\"$FANMAP_PIPE_ANSWERS\"; done",
      JsonAnswers());
  Queue("a");
  ASSERT_TRUE(RunUntilResults(1));
  EXPECT_TRUE(sink_[0].ok) << sink_[0].value;
  EXPECT_EQ(sink_[0].value, "json");
  Use("while IFS= read -r x; do echo \"$FANMAP_PIPE_ANSWERS\"; done");
  sink_.clear();
  Queue("b");
  ASSERT_TRUE(RunUntilResults(1));
  EXPECT_EQ(sink_[0].value, "lines");
}

TEST_F(PipePayloadTest, HugeJsonAnswersAreRead) {
  Use("cat", JsonAnswers());
  std::string text(8 << 20, 'x');
  Queue("{\"ok\":true,\"result\":\"" + text + "\"}");
  Queue("{\"ok\":false,\"error\":\"" + text + "\"}");
  ASSERT_TRUE(RunUntilResults(2));
  EXPECT_TRUE(sink_[0].ok);
  EXPECT_EQ(sink_[0].value, text);
  EXPECT_FALSE(sink_[1].ok);
  EXPECT_EQ(sink_[1].value, text);
}

TEST_F(PipePayloadTest, OversizedJsonAnswerIsAnError) {
  PipePayload::Options options = JsonAnswers();
  options.min_window = options.max_window = 4;
  Use("read x; printf '{\"ok\":true,\"result\":\"'; head -c 70000000 /dev/zero | tr '\\0' a; "
      "sleep 30",
      options);
  Queue("a");
  Queue("b");
  ASSERT_TRUE(RunUntilResults(2));
  EXPECT_FALSE(Find(0)->ok);
  EXPECT_EQ(Find(0)->value, "co-process answer larger than 64 MiB");
  EXPECT_FALSE(Find(1)->ok);
  EXPECT_TRUE(Find(1)->retryable);
  EXPECT_EQ(payload_->co_processes(), 0u);
}

TEST(MakePayloadPipeTest, ChecksTheAnswerFormat) {
  JobSpec job;
  job.kind = "pipe";
  job.argv = {"cat"};
  job.options["pipe_answers"] = "json";
  EXPECT_TRUE(ValidateJob(job).ok());
  job.options["pipe_answers"] = "lines";
  EXPECT_TRUE(ValidateJob(job).ok());
  job.options["pipe_answers"] = "xml";
  Status s = ValidateJob(job);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'xml'"), std::string::npos) << s.message();
}

TEST_F(PipePayloadTest, AJobWithJsonAnswersReadsJson) {
  JobSpec job;
  job.kind = "pipe";
  job.argv = {"cat"};
  job.options["pipe_answers"] = "json";
  std::unique_ptr<Payload> made = MakePipePayload(job, &sink_);
  payload_.reset(static_cast<PipePayload*>(made.release()));
  Queue(R"({"ok":false,"error":"no"})");
  ASSERT_TRUE(RunUntilResults(1));
  EXPECT_FALSE(sink_[0].ok);
  EXPECT_EQ(sink_[0].value, "no");
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
