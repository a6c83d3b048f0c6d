// Integration tests of the command line as a Unix user meets it: typos are
// usage errors (never run as the command), --version, one file as input and
// output, a bounded -j, a closed output pipe, and the exit statuses.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/protocol.h"
#include "tests/farm_fixture.h"
#include "tests/farm_test_util.h"

namespace fanmap {
namespace {

using testing_util::FanmapPath;
using testing_util::Lines;
using testing_util::ReadFile;
using testing_util::RunResult;
using testing_util::Seq;
using testing_util::TempDir;
using testing_util::WriteFile;

// Waits until `path` exists (at most a minute: a condition, not a delay).
bool WaitForFile(const std::string& path) {
  for (int i = 0; i < 6000; ++i) {
    if (access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class CliTest : public testing_util::FarmFixture {
 protected:
  // Runs a bash pipeline in which FANMAP is the fanmap binary.
  RunResult Shell(const std::string& pipeline) {
    return testing_util::Run({"/bin/bash", "-c", "FANMAP=" + FanmapPath() + "; " + pipeline}, "",
                             Env(), 60);
  }
  int HaltSuccessAsTheInputEnds(int first_success);
  TempDir dir_;
};

TEST_F(CliTest, UnknownOptionIsAUsageErrorNotTheCommand) {
  RunResult r = Fanmap({"--retires", "3", "--", "echo"}, "x\n");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("unknown option '--retires' (did you mean --retries?)"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");
  r = Fanmap({"--frobnicate", "echo"}, "x\n");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("unknown option '--frobnicate'"), std::string::npos) << r.err;
}

TEST_F(CliTest, ACommandStartingWithADashGoesAfterTheDoubleDash) {
  RunResult r = Fanmap({"-j", "1", "--", "-no-such-program"}, "x\n");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.out.find("cannot run '-no-such-program'"), std::string::npos) << r.out;
}

TEST_F(CliTest, KeepOrderIsAcceptedAsGnuParallelSpellsIt) {
  RunResult r = Fanmap({"-k", "-j", "2", "echo"}, "a\nb\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  testing_util::ParseRecords(r.out, 2);
}

TEST_F(CliTest, VersionNamesProtocolAndLibrariesWithoutReadingStdin) {
  RunResult r = Fanmap({"--version"}, "");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("fanmap "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("protocol 3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("libzmq"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("libcurl"), std::string::npos) << r.out;
  RunResult w = testing_util::Run({testing_util::WorkerPath(), "--version"}, "", Env());
  EXPECT_EQ(w.exit_code, 0);
  EXPECT_NE(w.out.find("fanmap-worker "), std::string::npos) << w.out;
}

TEST_F(CliTest, OneFileAsInputAndOutputIsRefusedAndLeftAlone) {
  WriteFile(dir_.File("f"), Seq(1, 3));
  RunResult r = Fanmap({"-i", dir_.File("f"), "-o", dir_.File("f"), "--builtin", "echo"}, "");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("is also the input"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("f")), Seq(1, 3));
  r = Shell("$FANMAP -o " + dir_.File("f") + " --builtin echo < " + dir_.File("f"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("f")), Seq(1, 3));
}

// The input given with -a or :::: (or read as it), and the job log, are
// files the run reads or writes too: each was destroyed with exit 0.
TEST_F(CliTest, EveryFileTheRunReadsIsSafeFromWhatItWrites) {
  std::string f = dir_.File("f"), other = dir_.File("other");
  std::vector<std::vector<std::string>> clashes = {
      {"-j", "1", "-a", f, "-o", f, "echo"},
      {"-j", "1", "-o", f, "echo", "::::", f},
      {"-j", "1", "-o", f, "echo", ":::", "x", "::::", f},
      {"-j", "1", "-i", f, "--joblog", f, "echo"},
      {"-j", "1", "-i", other, "-o", f, "--joblog", f, "echo"},
  };
  // Not a regular file: nothing to destroy (the first source of ::: reads
  // /dev/null).
  RunResult fine = Fanmap(
      {"-j", "1", "-o", "/dev/null", "--joblog", dir_.File("jl"), "echo", ":::", "a", "b"}, "");
  EXPECT_EQ(fine.exit_code, 0) << fine.err;
  for (const auto& args : clashes) {
    WriteFile(f, Seq(1, 3));
    WriteFile(other, Seq(1, 3));
    RunResult r = Fanmap(args, "");
    EXPECT_EQ(r.exit_code, 2) << testing::PrintToString(args) << r.err;
    EXPECT_NE(r.err.find("is also the"), std::string::npos) << r.err;
    EXPECT_EQ(ReadFile(f), Seq(1, 3)) << testing::PrintToString(args);
  }
}

// A mistake on the command line found while setting up (keys, endpoints)
// used to be found after the output file had been opened, and emptied.
TEST_F(CliTest, ASetUpErrorLeavesTheOutputAsItWas) {
  std::string out = dir_.File("out");
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--listen", "tcp://0.0.0.0:0"},
        std::vector<std::string>{"--listen", "bogus"},
        std::vector<std::string>{"--authorized-keys", dir_.File("keys")},
        // No workers at all: found before the output was opened, too.
        std::vector<std::string>{"-j", "0"}}) {
    WriteFile(out, "keep\n");
    std::vector<std::string> args = {"--builtin", "echo", "-o", out};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r = Fanmap(args, "1\n");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_FALSE(r.err.empty()) << testing::PrintToString(extra);
    EXPECT_EQ(ReadFile(out), "keep\n") << testing::PrintToString(extra);
  }
}

// A line too long for a task was sent anyway: the worker's socket refused
// the frame, the worker went silent, and the run never ended. It is an
// error record, and the items around it run.
TEST_F(CliTest, AnItemTooLongForATaskIsAnErrorRecordAndTheRunGoesOn) {
  std::string in = dir_.File("in"), out = dir_.File("out");
  const size_t big = kMaxItemBytes + (1u << 20);
  WriteFile(in, "a\n" + std::string(big, 'x') + "\nb\n");
  RunResult r = Fanmap({"-j", "1", "--builtin", "echo", "-i", in, "-o", out}, "");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::string want =
      "line 2 (item 1): " + std::to_string(big) + " bytes, more than the 254 MiB an item may hold";
  std::vector<std::string> lines = Lines(ReadFile(out));
  ASSERT_EQ(lines.size(), 3u) << r.err;
  EXPECT_EQ(lines[0].rfind(R"({"index":0,"ok":true,"result":"a")", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind(R"({"index":1,"ok":false,"error":")" + want + "\"", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind(R"({"index":2,"ok":true,"result":"b")", 0), 0u) << lines[2];
}

// A cut line stayed one byte too long to be an item, unless that byte was a
// "\r" the reader then took off as a line end: a truncated item ran, ok.
// Split into arguments (--colsep), the columns past the cut were dropped
// without a word: such a line is a usage error.
TEST_F(CliTest, ACutLineNeverRunsTruncated) {
  std::string in = dir_.File("in"), out = dir_.File("out");
  WriteFile(in, std::string(kMaxItemBytes, 'x') + "\r" + std::string(3u << 20, 'y'));
  RunResult r = Fanmap({"-j", "1", "--builtin", "echo", "-i", in, "-o", out}, "");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::string records = ReadFile(out);
  EXPECT_EQ(records.rfind(R"({"index":0,"ok":false,"error":"line 1 (item 0): )", 0), 0u)
      << records.substr(0, 200);
  const size_t big = kMaxItemBytes + (8u << 20);
  WriteFile(in, "a b\nz " + std::string(big, 'x') + " c\n");
  r = Fanmap({"-j", "1", "--colsep", " ", "-i", in, "-o", out, "echo", "{3}"}, "");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("line 2: " + std::to_string(big + 4) +
                       " bytes, more than the 254 MiB an item may hold"),
            std::string::npos)
      << r.err;
}

// A result too large for a frame (--tag lengthens every line of an output
// already at the 64 MiB cap) made the worker's frame one the coordinator
// refused: the worker went silent and the run never ended.
TEST_F(CliTest, AResultTooLargeForAFrameIsAnErrorRecord) {
  std::string out = dir_.File("out");
  RunResult r = Fanmap({"-j", "1", "--tag", "-o", out, "sh", "-c",
                        "head -c 64M /dev/zero | tr '\\0' '\\n'", ":::", "aaaaaaaa"},
                       "");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::vector<std::string> lines = Lines(ReadFile(out));
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_NE(lines[0].find(R"("ok":false,"error":"result of 671088630 bytes, more than the )"
                          R"(254 MiB a result may hold")"),
            std::string::npos)
      << lines[0].substr(0, 300);
}

TEST_F(CliTest, ResumeAndWindowValuesThatCannotWorkAreUsageErrors) {
  WriteFile(dir_.File("out"), "");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--builtin", "echo", "-o", "-", "--resume"},
        std::vector<std::string>{"-o", dir_.File("out"), "--resume", "--dry-run", "echo"},
        std::vector<std::string>{"--builtin", "echo", "--window", "-1"},
        std::vector<std::string>{"--builtin", "echo", "--window", "0"}}) {
    RunResult r = Fanmap(args, "1\n");
    EXPECT_EQ(r.exit_code, 2) << testing::PrintToString(args) << r.err;
    EXPECT_EQ(r.out, "") << testing::PrintToString(args);
  }
  EXPECT_FALSE(access("-", F_OK) == 0) << "a file named '-' was written";
  // A pipe cannot be resumed: it was read for records, and the run hung.
  RunResult r = Shell(
      "echo 1 | $FANMAP --builtin echo -o /dev/stdout --resume | cat; "
      "echo ${PIPESTATUS[1]}");
  EXPECT_EQ(r.out, "2\n") << r.err;
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
}

// An unwritable --summary was only logged: a script checking the exit status
// went on without its figures.
TEST_F(CliTest, ASummaryThatCannotBeWrittenFailsTheRun) {
  RunResult r = Fanmap({"--builtin", "echo", "--summary", "/dev/full"}, "1\n");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("cannot write the summary"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "{\"index\":0,\"ok\":true,\"result\":\"1\"}\n");
}

TEST_F(CliTest, WorkerCountAboveTheLimitIsRefusedInPlainWords) {
  RunResult r = Fanmap({"-j", "100000", "--builtin", "echo"}, "1\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("between 0 and 1024"), std::string::npos) << r.err;
  r = Fanmap({"--slots", "0", "--builtin", "echo"}, "1\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--slots: must be a whole number between 1 and 65536"), std::string::npos)
      << r.err;
  EXPECT_LT(r.err.size(), 200u) << "no 300-digit range: " << r.err;
}

TEST_F(CliTest, NeverStartsMoreLocalWorkersThanItems) {
  // Both items start (each leaves a file) and then wait. By then every
  // worker the run would start for them has been started: all 64 of them
  // before this fix, at once.
  WriteFile(dir_.File("in"), "1\n2\n");
  std::string script = "touch " + dir_.path() + "/started.$0; exec sleep 600";
  testing_util::Process run(
      {FanmapPath(), "-j", "64", "-i", dir_.File("in"), "--", "sh", "-c", script}, "",
      dir_.File("out"), dir_.File("err"), Env());
  ASSERT_TRUE(WaitForFile(dir_.File("started.1")));
  ASSERT_TRUE(WaitForFile(dir_.File("started.2")));
  EXPECT_EQ(testing_util::ProcessesNamed(token_, "fanmap-worker").size(), 2u);
  kill(run.pid(), SIGTERM);
  kill(run.pid(), SIGTERM);
  run.Wait();
  ExpectNoProcessLeft();
}

// A reader that stops reading (`| less` left on its first page) must not stop
// the coordinator: blocked in write(2), it sent the workers no heartbeat, they
// gave it up as gone after --heartbeat and exited, and the tasks they had
// run were sent again. Here each item prints 4 KB: 3,000 items fill the pipe
// and the records held back for it (4 MiB), and the reader waits three
// --heartbeat periods before it reads on.
TEST_F(CliTest, AReaderThatPausesMakesNoTaskRunTwice) {
  std::string runs = dir_.File("runs");
  RunResult r = Shell("seq 3000 | $FANMAP -j 2 --heartbeat 1 -- sh -c 'echo $1 >> " + runs +
                      "; printf \"%04000d\\n\" $1' sh | (sleep 3; cat) > " + dir_.File("out") +
                      "; echo ${PIPESTATUS[1]}");
  EXPECT_EQ(r.out, "0\n") << r.err;
  std::string ran = ReadFile(runs);
  EXPECT_EQ(std::count(ran.begin(), ran.end(), '\n'), 3000) << r.err;
  std::string out = ReadFile(dir_.File("out"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3000);
  EXPECT_EQ(r.err.find("silent"), std::string::npos) << r.err;
}

// Interrupted while the reader was not reading, the run wrote only the
// records that fitted before the writer was full (425 of 3,000 finished).
TEST_F(CliTest, InterruptedWhileTheReaderPausesWritesEveryFinishedRecord) {
  std::string runs = dir_.File("runs"), fifo = dir_.File("fifo");
  RunResult r =
      Shell("mkfifo " + fifo + "; seq 3000 > " + dir_.File("in") + "; $FANMAP -j 2 -i " +
            dir_.File("in") + " -- sh -c 'echo $1 >> " + runs +
            "; printf \"%04000d\\n\" $1' sh > " + fifo + " & P=$!; exec 3< " + fifo + "; " +
            "until [ \"$(wc -l < " + runs + " 2>/dev/null)\" = 3000 ]; do sleep 0.05; done; " +
            "kill -INT $P; cat <&3 > " + dir_.File("out") + "; wait $P; echo $?");
  EXPECT_EQ(r.out, "130\n") << r.err;
  std::string out = ReadFile(dir_.File("out"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3000) << r.err;
}

// Ctrl-C again (or a kill) while the last records wait for a reader that
// never reads: fanmap waited in write(2) for ever, and only SIGKILL ended it.
TEST_F(CliTest, ASecondInterruptEndsTheWaitForAReaderThatNeverReads) {
  std::string runs = dir_.File("runs"), fifo = dir_.File("fifo"), err = dir_.File("err");
  RunResult r = Shell("mkfifo " + fifo + "; seq 3000 > " + dir_.File("in") + "; $FANMAP -j 2 -i " +
                      dir_.File("in") + " -- sh -c 'echo $1 >> " + runs +
                      "; printf \"%04000d\\n\" $1' sh > " + fifo + " 2> " + err +
                      " & P=$!; exec 3< " + fifo + "; " + "until [ \"$(wc -l < " + runs +
                      " 2>/dev/null)\" = 3000 ]; do sleep 0.05; done; " +
                      "kill -INT $P; until grep -q 'again to stop now' " + err +
                      "; do sleep 0.05; done; " + "kill -INT $P; wait $P; echo $?");
  std::string log = ReadFile(err);
  EXPECT_EQ(r.out, "130\n") << log;
  EXPECT_NE(log.find("finished record(s) the reader did not take are not written"),
            std::string::npos)
      << log;
}

// --halt soon,done=N exits as any run does: 1 if an item failed, the tasks
// that finish after the stop included (they were not counted: exit 0 with a
// failed record in the file). And an unwritable --summary is exit 3, halted
// or not.
TEST_F(CliTest, AHaltOnFinishedItemsCountsTheFailuresThatFinishAfterIt) {
  std::string mark = dir_.File("mark"), out = dir_.File("out");
  // Both run at once (--slots 2); the second fails once the first is done.
  RunResult r = Fanmap({"-j", "1", "--slots", "2", "-o", out, "--halt", "soon,done=1", "sh", "-c",
                        "if [ $0 = a ]; then touch " + mark + "; else until [ -e " + mark +
                            " ]; do sleep 0.01; done; exit 1; fi",
                        ":::", "a", "b"},
                       "");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::vector<std::string> lines = Lines(ReadFile(out));
  ASSERT_EQ(lines.size(), 2u) << r.err;
  EXPECT_NE(lines[1].find(R"("ok":false)"), std::string::npos) << lines[1];
  r = Fanmap({"-j", "1", "--builtin", "echo", "--summary", dir_.File("no/such/dir"), "--halt",
              "soon,done=1"},
             "1\n2\n3\n");
  EXPECT_EQ(r.exit_code, 3) << r.err;
}

TEST_F(CliTest, ClosedOutputStopsQuietlyWithStatus141) {
  RunResult r = Shell(
      "seq 100000 | $FANMAP -j 1 --builtin echo | head -n 2 >/dev/null; "
      "echo ${PIPESTATUS[1]}");
  EXPECT_EQ(r.out, "141\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(CliTest, ClosedOutputIsNoticedWithoutWaitingForTheNextRecord) {
  // The items sleep 600 s: only noticing the closed pipe itself ends this
  // run before the test's own deadline.
  RunResult r = Shell(
      "printf '1\\n2\\n' | $FANMAP -j 1 --builtin sleep:600000 | true; "
      "echo ${PIPESTATUS[1]}");
  EXPECT_EQ(r.out, "141\n") << r.err;
}

TEST_F(CliTest, ErrorsNameWhatFailed) {
  RunResult r = Fanmap({"-i", dir_.path(), "--builtin", "echo"}, "");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot read input '" + dir_.path() + "': Is a directory"),
            std::string::npos)
      << r.err;
  r = Fanmap({"--listen", "bogus://x", "--builtin", "echo"}, "1\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("invalid endpoint 'bogus://x'"), std::string::npos) << r.err;
  r = Fanmap({"-j", "1", "--input-format", "jsonl", "--builtin", "echo"}, "1\nnot json\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("line 2 (item 1): invalid JSON"), std::string::npos) << r.err;
}

TEST_F(CliTest, HttpOnlyFlagsAndTheBatchFormatNeedTheirPayload) {
  RunResult r = Fanmap({"--input-format", "openai-batch", "--builtin", "echo"}, "{}\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--input-format openai-batch needs --http BASE_URL"), std::string::npos)
      << r.err;
  r = Fanmap({"--input-format", "openai-batch", "--http", "http://127.0.0.1:9", "--chat", "m"},
             "{}\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no --chat or --method"), std::string::npos) << r.err;
  r = Fanmap({"--cacert", "ca.pem", "--builtin", "echo"}, "a\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--cacert and --http1.1 need --http URL"), std::string::npos) << r.err;
  // Chat's own flags without --chat were accepted and ignored.
  for (const std::vector<std::string>& flag : {std::vector<std::string>{"--system", "be brief"},
                                               std::vector<std::string>{"--max-tokens", "5"},
                                               std::vector<std::string>{"--temperature", "0"}}) {
    std::vector<std::string> args = {"--builtin", "echo"};
    args.insert(args.end(), flag.begin(), flag.end());
    r = Fanmap(args, "a\n");
    EXPECT_EQ(r.exit_code, 2) << flag[0];
    EXPECT_NE(r.err.find("need --chat MODEL"), std::string::npos) << r.err;
  }
  r = Fanmap({"-k", "--unordered", "--builtin", "echo"}, "a\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("contradict"), std::string::npos) << r.err;
}

TEST_F(CliTest, ListeningOnLocalhostAndIpv6LoopbackWorks) {
  for (const char* endpoint : {"tcp://localhost:*", "tcp://[::1]:*"}) {
    RunResult r = Fanmap({"-j", "1", "--listen", endpoint, "--builtin", "echo"}, "a\n");
    EXPECT_EQ(r.exit_code, 0) << endpoint << ": " << r.err;
    EXPECT_NE(r.err.find("listening on tcp://"), std::string::npos) << r.err;
  }
}

TEST_F(CliTest, KeygenMakesTheDirectoriesOfItsName) {
  RunResult r = Fanmap({"keygen", dir_.File("workers/host1")}, "");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(access(dir_.File("workers/host1.key").c_str(), R_OK), 0);
  EXPECT_EQ(access(dir_.File("workers/host1.pub").c_str(), R_OK), 0);
}

TEST_F(CliTest, SighupDrainsLikeSigint) {
  WriteFile(dir_.File("in"), Seq(1, 1000));
  testing_util::Process run(
      {FanmapPath(), "-j", "1", "-i", dir_.File("in"), "-o", dir_.File("out"), "--", "sh", "-c",
       "[ $0 = 3 ] && touch " + dir_.path() + "/third; [ $0 -ge 3 ] && exec sleep 600; echo $0"},
      "", dir_.File("stdout"), dir_.File("err"), Env());
  ASSERT_TRUE(WaitForFile(dir_.File("third")));
  kill(run.pid(), SIGHUP);
  kill(run.pid(), SIGHUP);
  EXPECT_EQ(run.Wait(), 130) << ReadFile(dir_.File("err"));
  std::string out = ReadFile(dir_.File("out"));
  EXPECT_EQ(out.rfind("{\"index\":0,", 0), 0u) << out;
}

TEST_F(CliTest, ACommandThatCannotStartStopsTheRunAtOnce) {
  RunResult r = Fanmap({"-j", "2", "--", "/nonexistent-command"}, Seq(1, 100000));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("none succeeded: cannot run '/nonexistent-command'"), std::string::npos)
      << r.err;
  EXPECT_LT(testing_util::Lines(r.out).size(), 1000u) << "it must not run all 100,000 items";
}

TEST_F(CliTest, ACommandThatCannotStartFailsTheRunEvenUnderHaltSuccess) {
  // Regression: --halt WHEN,success= made every early stop exit 0, failing
  // fast included.
  for (const char* halt : {"now,success=1", "soon,success=50%"}) {
    RunResult r = Fanmap({"-j", "1", "--halt", halt, "--", "/nonexistent-command"}, Seq(1, 100));
    EXPECT_EQ(r.exit_code, 3) << halt << ": " << r.err;
    EXPECT_NE(r.err.find("none succeeded: cannot run '/nonexistent-command'"), std::string::npos)
        << r.err;
  }
}

// --halt soon: "no new tasks" held for the coordinator only; tasks already
// queued at a worker (its prefetch) still started: 104 commands ran where
// `parallel -j1 --halt soon,fail=1` runs 100.
TEST_F(CliTest, HaltSoonStartsNoTaskAfterTheHalt) {
  std::string started = dir_.path() + "/started";
  RunResult r = Shell("seq 1 500 | $FANMAP -q -j 1 --halt soon,fail=1 -- sh -c 'echo $1 >> " +
                      started + "; test $1 -ne 100' sh > /dev/null; echo $?");
  EXPECT_EQ(r.out, "3\n") << r.err;
  EXPECT_EQ(testing_util::Lines(ReadFile(started)).size(), 100u);
}

TEST_F(CliTest, HaltNowStopsAtTheNthFailure) {
  RunResult r = Fanmap({"-j", "1", "--halt", "now,fail=2", "--", "sh", "-c",
                        "[ $0 = 3 ] || [ $0 = 5 ] && exit 1; echo $0"},
                       Seq(1, 1000));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("--halt: 2 item(s) failed"), std::string::npos) << r.err;
  EXPECT_LT(testing_util::Lines(r.out).size(), 1000u);
  RunResult bad = Fanmap({"--halt", "sometimes", "--builtin", "echo"}, "1\n");
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
}

TEST_F(CliTest, HaltPercentCountsAgainstAllItemsAsParallelDoes) {
  // 9 items, every one failing: 20% of 9 is 1.8, so GNU parallel stops at
  // the second failure, and so does fanmap. (A file is read to its end before
  // any task goes out. The records of items that finished meanwhile are kept.)
  WriteFile(dir_.File("in"), Seq(1, 9));
  RunResult r = Fanmap(
      {"-j", "1", "--halt", "now,fail=20%", "-i", dir_.File("in"), "--", "sh", "-c", "exit 1"}, "");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("--halt: 2 item(s) failed of 2 finished (of 9)"), std::string::npos)
      << r.err;
}

TEST_F(CliTest, HaltPercentOfALongInputIsNotTheShareOfItsFirstItems) {
  // 20,000 items, more than are read ahead at first; the first 100 fail:
  // 0.5% of them, far from 20% (parallel would not stop either), though
  // they are all of the first items to finish.
  WriteFile(dir_.File("in"), Seq(0, 19999));
  RunResult r = Fanmap({"-j", "1", "--halt", "soon,fail=20%", "-i", dir_.File("in"),
                        "--pipe-answers", "json", "--pipe",
                        R"(awk '{ if ($1 < 100) print "{\"ok\":false,\"error\":\"e\"}"; )"
                        R"(else print "{\"ok\":true,\"result\":1}"; fflush() }')"},
                       "");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.find("--halt"), std::string::npos) << r.err;
  EXPECT_EQ(testing_util::Lines(r.out).size(), 20000u);
}

TEST_F(CliTest, HaltPercentCountsAnInvalidJsonLineAgainstTheItemsReadWithIt) {
  // Regression: a line that is not JSON fails as it is read, before --halt
  // had heard of the items read with it, and 1 of the floor of 10 is 10%.
  // It is 1 of 1,000: far from 10%.
  std::string in;
  for (int i = 0; i < 1000; ++i) in += (i == 500 ? "{oops" : std::to_string(i)) + "\n";
  WriteFile(dir_.File("in"), in);
  RunResult r = Fanmap({"-j", "1", "--halt", "now,fail=10%", "--input-format", "jsonl", "-i",
                        dir_.File("in"), "--builtin", "echo"},
                       "");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.find("--halt"), std::string::npos) << r.err;
  std::vector<std::string> lines = testing_util::Lines(r.out);
  ASSERT_EQ(lines.size(), 1000u) << r.err;
  EXPECT_NE(lines[500].find("\"ok\":false"), std::string::npos) << lines[500];
  EXPECT_NE(lines[500].find("invalid JSON"), std::string::npos) << lines[500];
}

TEST_F(CliTest, HaltPercentReachedOnlyAsTheInputEndsStopsNothing) {
  // Five items of a stream fail: under 60% of no fewer than 10 while the
  // input is open. It ends only after all five have finished: 5 of 5 is over
  // 60%, but nothing is left to stop.
  testing_util::InputFifo in(dir_.File("in"));
  in.Write(Seq(1, 5));
  testing_util::Process fanmap({FanmapPath(), "-j", "1", "--halt", "now,fail=60%", "-i", in.path(),
                                "-o", dir_.File("out"), "--", "sh", "-c", "exit 1"},
                               "", dir_.File("stdout"), dir_.File("err"), Env());
  ASSERT_FALSE(testing_util::WaitForText(dir_.File("out"), "\"index\":4,").empty())
      << ReadFile(dir_.File("err"));
  in.Close();
  EXPECT_EQ(fanmap.Wait(), 1) << ReadFile(dir_.File("err"));
  EXPECT_EQ(ReadFile(dir_.File("err")).find("--halt"), std::string::npos)
      << ReadFile(dir_.File("err"));
  EXPECT_EQ(testing_util::Lines(ReadFile(dir_.File("out"))).size(), 5u);
}

// Items 1 to 4 through a FIFO that is closed only once all four have
// finished, under --halt now,success=50%; items from `first_success` on
// succeed. Returns fanmap's exit status; its stderr is in dir_/err.
int CliTest::HaltSuccessAsTheInputEnds(int first_success) {
  testing_util::InputFifo in(dir_.File("in"));
  in.Write(Seq(1, 4));
  testing_util::Process fanmap({FanmapPath(), "-j", "1", "--halt", "now,success=50%", "-i",
                                in.path(), "-o", dir_.File("out"), "--", "sh", "-c",
                                "test \"$0\" -ge " + std::to_string(first_success), "{}"},
                               "", dir_.File("stdout"), dir_.File("err"), Env());
  EXPECT_FALSE(testing_util::WaitForText(dir_.File("out"), "\"index\":3,").empty())
      << ReadFile(dir_.File("err"));
  in.Close();
  return fanmap.Wait();
}

TEST_F(CliTest, HaltSuccessPercentReachedOnlyAsTheInputEndsExitsZeroAsParallelDoes) {
  // Regression: items 3 and 4 of 4 succeed. While the stream is open that
  // is 2 of no fewer than 10, under 50%; it ends only after all four have
  // finished: 2 of 4 is 50%. GNU parallel exits 0 (so does fanmap when the
  // input ends sooner); fanmap exited 1, as if --halt had not been given.
  EXPECT_EQ(HaltSuccessAsTheInputEnds(3), 0) << ReadFile(dir_.File("err"));
  std::string err = ReadFile(dir_.File("err"));
  EXPECT_NE(err.find("--halt: 2 item(s) succeeded of 4 finished (of 4): the share of successes "
                     "--halt asks for, so exit status 0\n"),
            std::string::npos)
      << err;
  std::vector<std::string> lines = testing_util::Lines(ReadFile(dir_.File("out")));
  ASSERT_EQ(lines.size(), 4u) << err;
  EXPECT_NE(lines[0].find("\"ok\":false"), std::string::npos) << lines[0];
  EXPECT_NE(lines[3].find("\"ok\":true"), std::string::npos) << lines[3];
}

TEST_F(CliTest, HaltSuccessPercentNotReachedAsTheInputEndsExitsOne) {
  // One success in four: 25%, under 50%.
  EXPECT_EQ(HaltSuccessAsTheInputEnds(4), 1) << ReadFile(dir_.File("err"));
  EXPECT_EQ(ReadFile(dir_.File("err")).find("--halt"), std::string::npos)
      << ReadFile(dir_.File("err"));
}

TEST_F(CliTest, HaltPercentReachedOnlyWithALastInvalidLineStopsNothing) {
  // Regression: the same when the input ends with a line that is not JSON
  // (without "\n", so it is read only with the end of the input): --halt
  // heard that the input had ended before that line's failure was recorded,
  // while the line itself counted as work left, and stopped the run.
  testing_util::InputFifo in(dir_.File("in"));
  in.Write(Seq(1, 5));
  // 5 of no fewer than 10 is under 70% while the input is open; the last
  // line's failure makes it 6 of 10, still under.
  testing_util::Process fanmap(
      {FanmapPath(), "-j", "1", "--halt", "now,fail=70%", "--input-format", "jsonl", "-i",
       in.path(), "-o", dir_.File("out"), "--", "sh", "-c", "exit 1"},
      "", dir_.File("stdout"), dir_.File("err"), Env());
  ASSERT_FALSE(testing_util::WaitForText(dir_.File("out"), "\"index\":4,").empty())
      << ReadFile(dir_.File("err"));
  in.Write("{oops");
  in.Close();
  EXPECT_EQ(fanmap.Wait(), 1) << ReadFile(dir_.File("err"));
  std::string err = ReadFile(dir_.File("err"));
  EXPECT_EQ(err.find("--halt"), std::string::npos) << err;
  std::vector<std::string> lines = testing_util::Lines(ReadFile(dir_.File("out")));
  ASSERT_EQ(lines.size(), 6u) << err;
  EXPECT_NE(lines[5].find("invalid JSON"), std::string::npos) << lines[5];
}

}  // namespace
}  // namespace fanmap
