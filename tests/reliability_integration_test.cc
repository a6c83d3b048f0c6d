// Integration tests of what must never lose an item: dead, stopped and hung
// workers, poison items, interrupts and resuming after a killed coordinator.
// Real binaries, real processes, real signals.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <random>

#include "tests/farm_fixture.h"
#include "tests/farm_test_util.h"

namespace fanmap {
namespace {

using testing_util::FanmapPath;
using testing_util::Lines;
using testing_util::ParseRecords;
using testing_util::Process;
using testing_util::ReadFile;
using testing_util::RunResult;
using testing_util::Seq;
using testing_util::TempDir;
using testing_util::WriteFile;

class ReliabilityTest : public testing_util::FarmFixture {
 protected:
  // Starts fanmap in the background reading dir/in, writing dir/out.
  std::unique_ptr<Process> Start(std::vector<std::string> args) {
    args.insert(args.begin(), FanmapPath());
    return std::make_unique<Process>(args, "", dir_.File("out"), dir_.File("err"), Env());
  }

  std::vector<pid_t> Workers() { return testing_util::ProcessesNamed(token_, "fanmap-worker"); }

  // Waits until at least `n` workers run; returns them (fewer if they never did).
  std::vector<pid_t> WaitForWorkers(size_t n) {
    std::vector<pid_t> workers;
    testing_util::WaitUntil([&] {
      workers = Workers();
      return workers.size() >= n;
    });
    return workers;
  }

  // The workers that run (not zombies).
  std::vector<pid_t> LiveWorkers() {
    std::vector<pid_t> live;
    for (pid_t pid : Workers()) {
      if (testing_util::Running(pid)) live.push_back(pid);
    }
    return live;
  }

  TempDir dir_;
};

TEST_F(ReliabilityTest, TimedOutTaskIsCancelledAndRetried) {
  // Every item hangs on its first attempt only: the attempt that makes the item's
  // directory (mkdir is atomic: exactly one does). All 6 hang at once, 3 per worker.
  std::string script = "if mkdir " + dir_.path() + "/m$0 2>/dev/null; then sleep 60; fi; echo ok$0";
  RunResult r = Fanmap({"-j", "2", "--slots", "3", "--timeout", testing_util::kShortTimeoutS, "--",
                        "sh", "-c", script},
                       Seq(1, 6));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(r.out, 6);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(records[i]["result"], "ok" + std::to_string(i + 1));
    EXPECT_EQ(records[i]["attempts"], 2);
  }
}

TEST_F(ReliabilityTest, TaskThatAlwaysTimesOutBecomesAnErrorRecordAfterItsRetries) {
  RunResult r = Fanmap(
      {"-j", "1", "--timeout", testing_util::kShortTimeoutS, "--retries", "1", "--summary",
       dir_.File("summary.json"), "--", "sh", "-c", "if [ $0 = 2 ]; then sleep 60; fi; echo $0"},
      Seq(1, 3));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(r.out, 3);
  EXPECT_EQ(records[0]["ok"], true);
  EXPECT_EQ(records[1]["ok"], false);
  EXPECT_NE(records[1]["error"].get<std::string>().find("timed out"), std::string::npos);
  EXPECT_EQ(records[1]["attempts"], 2);
  EXPECT_EQ(records[2]["ok"], true);
  // Both attempts timed out, and the summary says so (not "other").
  nlohmann::json summary = nlohmann::json::parse(ReadFile(dir_.File("summary.json")));
  EXPECT_EQ(summary["retries"]["timeout"], 2) << summary;
  EXPECT_EQ(summary["retries"]["other"], 0) << summary;
  EXPECT_NE(r.err.find("(2 timeout)"), std::string::npos) << r.err;
}

TEST_F(ReliabilityTest, PoisonItemBecomesAnErrorRecordAndTheRunEnds) {
  // Item 5 kills the worker that runs it, every time.
  RunResult r = Fanmap(
      {"-j", "2", "--", "sh", "-c", "if [ $0 = 5 ]; then kill -9 $PPID; fi; echo $0"}, Seq(1, 40));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(r.out, 40);
  for (int i = 0; i < 40; ++i) {
    if (i == 4) continue;
    EXPECT_EQ(records[i]["ok"], true) << records[i];
  }
  EXPECT_EQ(records[4]["ok"], false);
  EXPECT_NE(records[4]["error"].get<std::string>().find("worker lost"), std::string::npos)
      << records[4];
  EXPECT_EQ(records[4]["attempts"], 3);  // --retries 2 by default
}

TEST_F(ReliabilityTest, WorkersKilledAtRandomLoseNoItem) {
  // The items come in 10 parts of 2,000; in each of the first 8, once its middle record is
  // written, a random worker is killed. The run cannot end before the last part: every kill
  // hits a run still going, and each comes after progress, so that the coordinator never
  // takes the kills for workers that cannot start.
  testing_util::InputFifo in(dir_.File("in"));
  auto fanmap = Start(
      {"-j", "3", "--builtin", "sleep:1", "--slots", "4", "-i", in.path(), "-o", dir_.File("out")});
  std::mt19937 rng(42);
  int kills = 0;
  for (int part = 0; part < 10; ++part) {
    in.Write(Seq(part * 2000, part * 2000 + 1999));
    if (part >= 8) continue;
    std::string middle = "\"index\":" + std::to_string(part * 2000 + 1000) + ",";
    ASSERT_FALSE(testing_util::WaitForText(dir_.File("out"), middle).empty())
        << ReadFile(dir_.File("err"));
    std::vector<pid_t> workers;
    ASSERT_TRUE(testing_util::WaitUntil([&] {
      workers = LiveWorkers();
      return !workers.empty();
    })) << ReadFile(dir_.File("err"));
    if (kill(workers[rng() % workers.size()], SIGKILL) == 0) ++kills;
  }
  in.Close();
  ASSERT_EQ(fanmap->Wait(), 0) << ReadFile(dir_.File("err"));
  EXPECT_EQ(kills, 8);
  auto records = ParseRecords(ReadFile(dir_.File("out")), 20000);
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(records[i]["result"], std::to_string(i));
  }
}

TEST_F(ReliabilityTest, StoppedWorkerIsDeclaredDeadAndItsTasksAreSentAgain) {
  // The run lasts until the stopped worker is declared dead (the input stays open).
  testing_util::InputFifo in(dir_.File("in"));
  auto fanmap = Start({"-j", "2", "--heartbeat", testing_util::kHeartbeatS, "--builtin", "sleep:10",
                       "-i", in.path(), "-o", dir_.File("out")});
  in.Write(Seq(0, 399));
  std::vector<pid_t> workers = WaitForWorkers(2);
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_FALSE(testing_util::WaitForText(dir_.File("out"), "\"index\":10,").empty())
      << ReadFile(dir_.File("err"));
  ASSERT_EQ(kill(workers[0], SIGSTOP), 0);
  // A local worker's name ends with its pid: the stopped one is declared dead.
  std::string silent = ":" + std::to_string(workers[0]) + " silent for";
  EXPECT_FALSE(testing_util::WaitForText(dir_.File("err"), silent).empty())
      << ReadFile(dir_.File("err"));
  in.Close();
  int code = fanmap->Wait();
  kill(workers[0], SIGCONT);
  ASSERT_EQ(code, 0) << ReadFile(dir_.File("err"));
  ParseRecords(ReadFile(dir_.File("out")), 400);
  // Logged like a killed worker: what happened to it and that it is replaced.
  std::string err = ReadFile(dir_.File("err"));
  EXPECT_NE(err.find("; killed; a new worker replaces it"), std::string::npos) << err;
}

TEST_F(ReliabilityTest, StragglerGetsABackupCopyOnAnIdleWorker) {
  // Item 3 hangs on its first attempt only; nothing else is slow. Without a
  // backup copy the run would wait for it (there is no --timeout).
  // Whichever attempt makes the directory first hangs (mkdir is atomic), the other answers.
  std::string script =
      "if [ $0 = 3 ] && mkdir " + dir_.path() + "/m 2>/dev/null; then sleep 120; fi; echo $0";
  RunResult r = Fanmap({"-j", "2", "--speculate", "--", "sh", "-c", script}, Seq(1, 20));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(r.out, 20);
  EXPECT_EQ(records[2]["result"], "3");
}

TEST_F(ReliabilityTest, StragglerAtTheHeadOfAFullWindowGetsABackupWhileTheInputWaits) {
  // Item 0 hangs on its first attempt; the other 99 fill the window and are
  // done. The window is the 100 asked for: a task of 20 ms or more gets one
  // task of prefetch (10 ms of work, at least one), so each worker's credit
  // is 3 and twice their sum is far less. The worker holding item 0 has a
  // slot to spare, so more input would go to it past the window, but none
  // comes: the input stays open. The straggler must still get its backup
  // copy, and every record come out before the input ends.
  testing_util::InputFifo in(dir_.File("in"));
  std::string script = "if [ $0 = 0 ] && mkdir " + dir_.path() +
                       "/m 2>/dev/null; then sleep 120; fi; sleep 0.02; echo $0";
  auto fanmap = Start({"-j", "2", "--slots", "2", "--speculate", "--window", "100", "-i", in.path(),
                       "-o", dir_.File("out"), "--", "sh", "-c", script});
  in.Write(Seq(0, 99));
  EXPECT_FALSE(testing_util::WaitForText(dir_.File("out"), "\"index\":99,").empty())
      << ReadFile(dir_.File("err"));
  in.Close();
  ASSERT_EQ(fanmap->Wait(), 0) << ReadFile(dir_.File("err"));
  auto records = ParseRecords(ReadFile(dir_.File("out")), 100);
  EXPECT_EQ(records[0]["result"], "0");
}

TEST_F(ReliabilityTest, StragglerWhoseBackupTimesOutTooStillEnds) {
  // The straggler hangs on every attempt: the backup copy times out like the
  // original, and the item must still end (as an error) instead of staying
  // in flight forever.
  std::string input = Seq(0, 0);
  for (int i = 0; i < 20; ++i) input += "0\n";
  input += "60\n";
  RunResult r = Fanmap({"-j", "2", "--speculate", "--timeout", testing_util::kShortTimeoutS,
                        "--retries", "1", "--", "sh", "-c", "sleep $0"},
                       input);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(r.out, 22);
  EXPECT_EQ(records[21]["ok"], false);
  EXPECT_NE(records[21]["error"].get<std::string>().find("timed out"), std::string::npos);
  EXPECT_EQ(records[21]["attempts"], 2);
  for (int i = 0; i < 21; ++i) EXPECT_EQ(records[i]["ok"], true);
}

TEST_F(ReliabilityTest, ResumeRefusesRawOutput) {
  RunResult r = Fanmap({"-j", "1", "--builtin", "echo", "-o", dir_.File("out"), "--resume",
                        "--output-format", "raw"},
                       "x\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("jsonl"), std::string::npos) << r.err;
}

TEST_F(ReliabilityTest, InterruptWritesAValidPrefixAndExits130) {
  // Input that never ends (a FIFO left open): the run is still going when
  // the signal comes, however late that is.
  testing_util::InputFifo in(dir_.File("in"));
  in.Write(Seq(0, 999));
  // 20 ms per item: tasks are in flight when the signal comes, to be drained.
  auto fanmap = Start({"-j", "2", "--builtin", "sleep:20", "--slots", "8", "-i", in.path(), "-o",
                       dir_.File("out")});
  ASSERT_FALSE(testing_util::WaitForText(dir_.File("out"), "\"index\":100,").empty())
      << ReadFile(dir_.File("err"));
  kill(fanmap->pid(), SIGINT);
  ASSERT_EQ(fanmap->Wait(), 130) << ReadFile(dir_.File("err"));
  std::string out = ReadFile(dir_.File("out"));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  auto lines = Lines(out);
  EXPECT_GT(lines.size(), 100u);
  EXPECT_LE(lines.size(), 1000u);
  ParseRecords(out, lines.size());
  EXPECT_NE(ReadFile(dir_.File("err")).find("--resume"), std::string::npos);
}

TEST_F(ReliabilityTest, BackupCopiesAreOffByDefaultSoEachCommandRunsOnce) {
  // Item 5 straggles long past the straggler threshold while the other
  // worker is idle: with backups on, it would run twice. Commands have side
  // effects (here: a line appended per run), so backups are opt-in.
  std::string runs = dir_.File("runs");
  std::string script = "echo $0 >>" + runs + "; if [ $0 = 5 ]; then sleep 3; fi; echo $0";
  RunResult r = Fanmap({"-j", "2", "--", "sh", "-c", script}, Seq(1, 40));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ParseRecords(r.out, 40);
  std::string lines = ReadFile(runs);
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 40) << lines;
}

}  // namespace
}  // namespace fanmap
