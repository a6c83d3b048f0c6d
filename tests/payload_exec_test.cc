#include "worker/payload_exec.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/arg_table.h"
#include "common/job_keys.h"
#include "tests/payload_test_util.h"
#include "worker/child_process.h"

namespace fanmap {
namespace {

using testing_util::IntExtra;
using testing_util::NoChildrenLeft;
using testing_util::StringExtra;
constexpr auto kTimeout = testing_util::kPayloadTimeout;

class ExecPayloadTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (payload_) payload_->Shutdown();
    payload_.reset();
    EXPECT_TRUE(NoChildrenLeft());
  }

  void Use(std::vector<std::string> argv) {
    job_.kind = "exec";
    job_.argv = std::move(argv);
    payload_ = MakeExecPayload(job_, &sink_);
  }

  void Start(uint64_t index, const std::string& item, uint32_t attempt = 0) {
    payload_->Start(Task{index, attempt, item});
  }

  // Runs the poll loop the worker would run until the sink holds `n` results.
  ::testing::AssertionResult WaitForResults(size_t n) {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (sink_.size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return ::testing::AssertionFailure()
               << "timed out with " << sink_.size() << " of " << n << " results";
      }
      std::vector<zmq_pollitem_t> items;
      long timeout_ms = left.count();
      payload_->AddPollItems(&items, &timeout_ms);
      if (items.empty()) {
        return ::testing::AssertionFailure()
               << "payload waits on nothing with " << payload_->running() << " running";
      }
      if (zmq_poll(items.data(), static_cast<int>(items.size()),
                   std::min<long>(timeout_ms, left.count())) < 0) {
        return ::testing::AssertionFailure() << "zmq_poll: " << zmq_strerror(zmq_errno());
      }
      payload_->Advance(items.data(), items.size());
    }
    return ::testing::AssertionSuccess();
  }

  // Runs `argv` for one item and returns its result.
  Result RunOne(std::vector<std::string> argv, const std::string& item) {
    if (payload_) payload_->Shutdown();
    sink_.clear();
    Use(std::move(argv));
    Start(7, item, 2);
    EXPECT_TRUE(WaitForResults(1));
    EXPECT_EQ(sink_.size(), 1u);
    EXPECT_EQ(payload_->running(), 0u);
    if (sink_.empty()) return Result();
    EXPECT_EQ(sink_[0].index, 7u);
    EXPECT_EQ(sink_[0].attempt, 2u);
    return sink_[0];
  }

  JobSpec job_;  // options set before Use()
  ResultSink sink_;
  std::unique_ptr<Payload> payload_;
};

TEST_F(ExecPayloadTest, ReplacesEveryPlaceholderWithoutAShell) {
  Result r = RunOne({"printf", "%s|", "{}", "x{}y{}z"}, "a b;$c");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "a b;$c|xa b;$cya b;$cz|");
}

TEST_F(ExecPayloadTest, ParallelsStringsSeqAndSlotReachTheCommand) {
  Result r =
      RunOne({"sh", "-c", "echo \"$0 $1 $FANMAP_SEQ $FANMAP_SLOT\"", "{/.}", "{#}"}, "d/f.txt");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "f 8 8 1");
}

TEST_F(ExecPayloadTest, ConcurrentTasksGetDistinctSlots) {
  Use({"sh", "-c", "echo $FANMAP_SLOT"});
  Start(0, "a");
  Start(1, "b");
  ASSERT_TRUE(WaitForResults(2));
  std::set<std::string> slots = {sink_[0].value, sink_[1].value};
  EXPECT_EQ(slots, (std::set<std::string>{"1", "2"}));
}

TEST_F(ExecPayloadTest, SlotsCountOnFromTheLocalWorkersBefore) {
  setenv(kSlotBaseEnv, "6", 1);
  Result r = RunOne({"sh", "-c", "echo {%} $FANMAP_SLOT ${FANMAP_SLOT_BASE-unset}"}, "x");
  unsetenv(kSlotBaseEnv);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "7 7 unset");
}

TEST_F(ExecPayloadTest, VerbatimOutputKeepsBytesTagsLinesAndPassesStderr) {
  job_.options[job_key::kVerbatimOutput] = "1";
  job_.options[job_key::kTag] = "1";
  job_.options[job_key::kArgTable] = "1";
  Use({"sh", "-c", "printf 'x\\ny'; echo e >&2; exit $0"});
  Start(0, EncodeArgTable({{"3"}}));
  ASSERT_TRUE(WaitForResults(1));
  EXPECT_FALSE(sink_[0].ok);
  EXPECT_EQ(StringExtra(sink_[0], "stdout"), "3\tx\n3\ty");
  EXPECT_EQ(StringExtra(sink_[0], "stderr"), "3\te\n");
}

TEST_F(ExecPayloadTest, VerbatimStderrPastTheLimitSaysWhatWasDropped) {
  // 65 MiB of stderr: passed on verbatim up to 64 MiB, then only a tail is
  // kept, and the cut must not be silent.
  job_.options[job_key::kVerbatimOutput] = "1";
  Use({"sh", "-c", "head -c 68157440 /dev/zero | tr '\\0' e >&2; echo out"});
  Start(0, "x");
  ASSERT_TRUE(WaitForResults(1));
  EXPECT_TRUE(sink_[0].ok) << sink_[0].value;
  EXPECT_EQ(sink_[0].value, "out\n");
  std::string err = StringExtra(sink_[0], "stderr");
  const std::string prefix = "fanmap: this command's stderr passed 64 MiB: its first ";
  EXPECT_EQ(err.rfind(prefix, 0), 0u) << err.substr(0, 200);
  size_t at = err.find(" bytes were dropped\n");
  ASSERT_NE(at, std::string::npos) << err.substr(0, 200);
  size_t header = at + std::string(" bytes were dropped\n").size();
  uint64_t dropped = std::stoull(err.substr(prefix.size(), at - prefix.size()));
  // What was dropped and what was kept add up to what the command wrote.
  EXPECT_EQ(dropped + (err.size() - header), 68157440u);
  EXPECT_EQ(err.find_first_not_of('e', header), std::string::npos);
}

TEST_F(ExecPayloadTest, DryRunGivesTheCommandLine) {
  job_.options[job_key::kDryRun] = "1";
  Result r = RunOne({"echo", "{}"}, "it's");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "echo 'it'\"'\"'s'");
}

TEST_F(ExecPayloadTest, ItemThatIsNotAnArgTableFailsAlone) {
  job_.options[job_key::kArgTable] = "1";
  Result r = RunOne({"echo"}, "not msgpack");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.fatal);
  EXPECT_NE(r.value.find("argument table"), std::string::npos);
}

TEST_F(ExecPayloadTest, ItemWithANulByteFailsAloneNamingIt) {
  // execve would cut the argument at the NUL: "a\0b" ran as "a".
  for (std::vector<std::string> argv :
       {std::vector<std::string>{"echo"}, std::vector<std::string>{"echo {} | cat"}}) {
    Result r = RunOne(argv, std::string("a\0b", 3));
    EXPECT_FALSE(r.ok) << r.value;
    EXPECT_FALSE(r.fatal);
    EXPECT_NE(r.value.find("NUL"), std::string::npos) << r.value;
  }
  Result r = RunOne({"echo"}, "a b");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "a b");
}

TEST_F(ExecPayloadTest, OneWordNamingAnExecutableWithASpaceRunsWithoutAShell) {
  // It ran as `sh -c` and failed: "/bin/sh: 1: /tmp/.../my: not found".
  char dir_template[] = "/tmp/fanmap-exec-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string dir = std::string(dir_template) + "/my tools";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  std::string path = dir + "/run";
  {
    std::ofstream script(path);
    script << "#!/bin/sh\necho \"ran $1\"\n";
  }
  ASSERT_EQ(chmod(path.c_str(), 0700), 0);
  Result r = RunOne({path}, "it's; x");
  EXPECT_TRUE(r.ok) << r.value;
  EXPECT_EQ(r.value, "ran it's; x");
  unlink(path.c_str());
  rmdir(dir.c_str());
  rmdir(dir_template);
}

TEST_F(ExecPayloadTest, ResultIsStdoutWithoutFinalNewline) {
  Result r = RunOne({"echo"}, "hello world");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "hello world");
  EXPECT_TRUE(r.extra.empty());
}

TEST_F(ExecPayloadTest, DropsOnlyOneFinalNewline) {
  Result r = RunOne({"printf", "%s\\n\\n"}, "a");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "a\n");
}

TEST_F(ExecPayloadTest, KeepsOutputWithoutTrailingNewline) {
  Result r = RunOne({"printf", "%s"}, "no newline");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "no newline");
}

TEST_F(ExecPayloadTest, NonZeroExitIsErrorWithExitCodeAndStderr) {
  Result r = RunOne({"sh", "-c", "echo out; echo {} >&2; exit 3"}, "oops");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.value, "exit code 3");
  EXPECT_EQ(IntExtra(r, "exit_code"), 3);
  EXPECT_EQ(StringExtra(r, "stderr"), "oops");
}

TEST_F(ExecPayloadTest, StderrIsCutToItsTail) {
  Result r =
      RunOne({"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a >&2; echo END >&2; exit 1"}, "");
  EXPECT_FALSE(r.ok);
  std::string err = StringExtra(r, "stderr");
  const std::string kCut = "[... earlier output cut; the last bytes follow]\n";
  ASSERT_EQ(err.substr(0, kCut.size()), kCut) << "a cut stderr says it was cut";
  EXPECT_EQ(err.size(), kCut.size() + 2000u - 1);  // the final newline is dropped
  EXPECT_EQ(err.substr(err.size() - 4), "aEND");
}

TEST_F(ExecPayloadTest, ShortStderrIsWholeAndNotMarkedCut) {
  Result r = RunOne({"sh", "-c", "echo oops >&2; exit 1"}, "");
  EXPECT_EQ(StringExtra(r, "stderr"), "oops");
}

TEST_F(ExecPayloadTest, DeathBySignalIsError) {
  Result r = RunOne({"sh", "-c", "kill -9 $$"}, "");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.value, "killed by signal 9");
  EXPECT_EQ(IntExtra(r, "signal"), 9);
  EXPECT_EQ(r.extra.count("exit_code"), 0u);
}

TEST_F(ExecPayloadTest, CommandNotFoundIsErrorResultAtOnce) {
  Use({"fanmap-no-such-command"});
  Start(3, "x");
  ASSERT_EQ(sink_.size(), 1u);
  EXPECT_EQ(payload_->running(), 0u);
  EXPECT_EQ(sink_[0].index, 3u);
  EXPECT_FALSE(sink_[0].ok);
  EXPECT_EQ(sink_[0].value, "cannot run 'fanmap-no-such-command': No such file or directory");
}

TEST_F(ExecPayloadTest, NonExecutableFileIsErrorResult) {
  Use({"/etc/passwd"});
  Start(0, "x");
  ASSERT_EQ(sink_.size(), 1u);
  EXPECT_EQ(sink_[0].value, "cannot run '/etc/passwd': Permission denied");
}

TEST_F(ExecPayloadTest, RunsTasksConcurrently) {
  // Each command finishes only once all five have started, so a payload that
  // ran them one at a time would time out.
  char dir_template[] = "/tmp/fanmap_exec_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string dir = dir_template;
  Use({"sh", "-c",
       "touch " + dir + "/{}; until [ $(ls " + dir +
           " | wc -l) -ge 5 ]; do sleep 0.01; done; echo item-{}"});
  for (uint64_t i = 0; i < 5; ++i) Start(i, std::to_string(i));
  EXPECT_EQ(payload_->running(), 5u);
  EXPECT_TRUE(WaitForResults(5));
  std::map<uint64_t, std::string> by_index;
  for (const Result& r : sink_) {
    EXPECT_TRUE(r.ok) << r.value;
    by_index[r.index] = r.value;
  }
  for (uint64_t i = 0; i < 5; ++i) EXPECT_EQ(by_index[i], "item-" + std::to_string(i));
  EXPECT_EQ(std::system(("rm -rf " + dir).c_str()), 0);
}

TEST_F(ExecPayloadTest, WaitsForExitAfterOutputIsClosed) {
  // Both pipes reach end-of-file long before the exit: the exit code proves
  // the result waited for it.
  Result r = RunOne({"sh", "-c", "exec >&- 2>&-; sleep 0.2; exit 4"}, "");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(IntExtra(r, "exit_code"), 4);
}

TEST_F(ExecPayloadTest, LargeOutputIsReadWhole) {
  Result r = RunOne({"head", "-c", "{}", "/dev/zero"}, "3000000");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value.size(), 3000000u);
}

TEST_F(ExecPayloadTest, OutputOverCapKillsCommand) {
  Result r = RunOne({"sh", "-c", "cat /dev/zero; echo unreachable >&2; exit 0"}, "");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.value, "output larger than 64 MiB");
}

TEST_F(ExecPayloadTest, ChildStdinIsDevNull) {
  Result r = RunOne({"sh", "-c", "wc -c"}, "");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "0");
}

TEST_F(ExecPayloadTest, ShutdownKillsAndReapsEveryChild) {
  Use({"sh", "-c", "{}"});
  Start(0, "sleep 30");
  Start(1, "trap '' TERM; sleep 30 & wait; sleep 30");  // ignores SIGTERM
  Start(2, "sleep 30 & sleep 30 & wait");
  EXPECT_EQ(payload_->running(), 3u);
  payload_->Shutdown();
  EXPECT_EQ(payload_->running(), 0u);
  EXPECT_TRUE(sink_.empty());
  EXPECT_TRUE(NoChildrenLeft());
  payload_->Shutdown();  // safe twice
}

TEST_F(ExecPayloadTest, DestroyingPayloadReapsChildren) {
  Use({"sleep"});
  Start(0, "30");
  payload_.reset();
  EXPECT_TRUE(NoChildrenLeft());
}

class ChildProcessTest : public ::testing::Test {
 protected:
  void TearDown() override { EXPECT_TRUE(NoChildrenLeft()); }

  // Reads until both pipes are closed and the child is reaped.
  ::testing::AssertionResult Finish(ChildProcess* child) {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!child->output_closed() || !child->reaped()) {
      if (std::chrono::steady_clock::now() > deadline) {
        return ::testing::AssertionFailure() << "child did not finish";
      }
      std::vector<pollfd> fds;
      for (int fd : {child->stdout_fd(), child->stderr_fd(), child->pidfd()}) {
        if (fd >= 0) fds.push_back(pollfd{fd, POLLIN, 0});
      }
      poll(fds.data(), fds.size(), 1000);
      child->ReadAvailable();
      child->TryReap();
    }
    return ::testing::AssertionSuccess();
  }
};

TEST_F(ChildProcessTest, PipesStdinWhenAsked) {
  std::unique_ptr<ChildProcess> child;
  ChildProcess::Options options;
  options.pipe_stdin = true;
  ASSERT_TRUE(ChildProcess::Spawn({"cat"}, options, &child).ok());
  ASSERT_GE(child->stdin_fd(), 0);
  ASSERT_EQ(write(child->stdin_fd(), "abc", 3), 3);
  child->CloseStdin();
  child->CloseStdin();
  EXPECT_EQ(child->stdin_fd(), -1);
  ASSERT_TRUE(Finish(child.get()));
  EXPECT_EQ(child->stdout_data(), "abc");
  EXPECT_TRUE(WIFEXITED(child->wait_status()));
  EXPECT_EQ(WEXITSTATUS(child->wait_status()), 0);
}

TEST_F(ChildProcessTest, LeadsItsOwnProcessGroup) {
  std::unique_ptr<ChildProcess> child;
  ASSERT_TRUE(ChildProcess::Spawn({"sleep", "30"}, ChildProcess::Options(), &child).ok());
  EXPECT_EQ(child->stdin_fd(), -1);
  EXPECT_EQ(getpgid(child->pid()), child->pid());
}

TEST_F(ChildProcessTest, KillEscalatesToSigkill) {
  std::unique_ptr<ChildProcess> child;
  ASSERT_TRUE(ChildProcess::Spawn({"sh", "-c", "trap '' TERM; echo ready; while :; do :; done"},
                                  ChildProcess::Options(), &child)
                  .ok());
  // Wait until the trap is installed, or SIGTERM would kill it outright.
  while (child->stdout_data().empty() && child->stdout_fd() >= 0) {
    pollfd p{child->stdout_fd(), POLLIN, 0};
    poll(&p, 1, 1000);
    child->ReadAvailable();
  }
  child->Kill(std::chrono::milliseconds(50));
  ASSERT_TRUE(child->reaped());
  EXPECT_TRUE(WIFSIGNALED(child->wait_status()));
  EXPECT_EQ(WTERMSIG(child->wait_status()), SIGKILL);
  child->Kill();  // no effect once reaped
}

TEST_F(ChildProcessTest, KillWithGraceLetsChildExitOnSigterm) {
  std::unique_ptr<ChildProcess> child;
  ASSERT_TRUE(ChildProcess::Spawn({"sleep", "30"}, ChildProcess::Options(), &child).ok());
  child->Kill(std::chrono::seconds(10));
  ASSERT_TRUE(child->reaped());
  EXPECT_TRUE(WIFSIGNALED(child->wait_status()));
  EXPECT_EQ(WTERMSIG(child->wait_status()), SIGTERM);
}

TEST_F(ChildProcessTest, SpawnFailureLeavesNoChild) {
  std::unique_ptr<ChildProcess> child;
  Status s = ChildProcess::Spawn({"fanmap-no-such-command", "a"}, ChildProcess::Options(), &child);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "cannot run 'fanmap-no-such-command': No such file or directory");
  EXPECT_EQ(child, nullptr);
  EXPECT_FALSE(ChildProcess::Spawn({}, ChildProcess::Options(), &child).ok());
}

}  // namespace
}  // namespace fanmap
