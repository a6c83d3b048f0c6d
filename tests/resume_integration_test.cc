// Integration tests of --resume with the real binaries: a killed run
// continued, records kept as they are, and every way a file can fail to be
// this job's output (another job, other items, more records than items, a
// file that is not fanmap's), which must be refused with the file left as it
// was.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/job_keys.h"
#include "coordinator/item_fingerprint.h"
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

class ResumeTest : public testing_util::FarmFixture {
 protected:
  // A record as `fanmap --builtin echo -o FILE` writes it for `item`.
  static std::string EchoRecord(int index, const std::string& item, bool ok,
                                const std::string& text) {
    JobSpec job;
    job.kind = "builtin";
    job.argv = {"echo"};
    job.options[job_key::kInputFormat] = "lines";
    nlohmann::json record;
    std::string line = "{\"index\":" + std::to_string(index) +
                       ",\"ok\":" + (ok ? "true,\"result\":" : "false,\"error\":") +
                       nlohmann::json(text).dump() + ",\"fp\":\"" +
                       FingerprintHex(ItemFingerprinter(job).Fingerprint(item)) + "\"}\n";
    return line;
  }

  // A whole `--builtin echo` run from "in" to "out".
  void RunEcho() {
    RunResult r =
        Fanmap({"-j", "1", "--builtin", "echo", "-i", dir_.File("in"), "-o", dir_.File("out")}, "");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  RunResult Resume(std::vector<std::string> args, const std::string& flag = "--resume") {
    args.insert(args.end(), {"-i", dir_.File("in"), "-o", dir_.File("out"), flag});
    return Fanmap(args, "");
  }

  TempDir dir_;
};

TEST_F(ResumeTest, ResumeAfterKilledCoordinatorEqualsAnUninterruptedRun) {
  WriteFile(dir_.File("in"), Seq(0, 29999));
  std::vector<std::string> job = {"-j", "2", "--builtin", "sleep:1", "--slots", "8"};
  std::vector<std::string> whole_args = job;
  whole_args.insert(whole_args.end(), {"-i", dir_.File("in"), "-o", dir_.File("whole")});
  RunResult whole = Fanmap(whole_args, "");
  ASSERT_EQ(whole.exit_code, 0) << whole.err;

  // The first run reads the same path as a FIFO that holds only the first
  // 3,000 items and is not closed: however slowly the test gets to its kill,
  // the run is interrupted before it could end.
  ASSERT_EQ(unlink(dir_.File("in").c_str()), 0);
  {
    testing_util::InputFifo in(dir_.File("in"));
    in.Write(Seq(0, 2999));
    std::vector<std::string> first_args = job;
    first_args.insert(first_args.begin(), FanmapPath());
    first_args.insert(first_args.end(), {"-i", dir_.File("in"), "-o", dir_.File("out")});
    Process first(first_args, "", dir_.File("out1"), dir_.File("err1"), Env());
    ASSERT_FALSE(testing_util::WaitForText(dir_.File("out"), "\"index\":2000,").empty())
        << ReadFile(dir_.File("err1"));
    kill(first.pid(), SIGKILL);
    first.Wait();
  }
  size_t before = Lines(ReadFile(dir_.File("out"))).size();
  ASSERT_GE(before, 2000u);
  ASSERT_LE(before, 3000u);
  ASSERT_EQ(unlink(dir_.File("in").c_str()), 0);
  WriteFile(dir_.File("in"), Seq(0, 29999));

  RunResult second = Resume(job);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(ReadFile(dir_.File("out")), ReadFile(dir_.File("whole")));
  EXPECT_NE(second.err.find("resuming"), std::string::npos);
}

TEST_F(ResumeTest, CutsATornLastLine) {
  WriteFile(dir_.File("in"), Seq(0, 9));
  std::string prefix;
  for (int i = 0; i < 4; ++i) prefix += EchoRecord(i, std::to_string(i), true, std::to_string(i));
  WriteFile(dir_.File("out"), prefix + "{\"index\":4,\"ok\":tr");
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("torn"), std::string::npos) << r.err;
  auto records = ParseRecords(ReadFile(dir_.File("out")), 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(records[i]["result"], std::to_string(i));
}

// A resume refused at its first item must not have cut the torn last line
// already: "leaves the file as it is" means every byte.
TEST_F(ResumeTest, ARefusedResumeLeavesATornLastLineAsItWas) {
  WriteFile(dir_.File("in"), Seq(201, 210));
  std::string before;
  for (int i = 0; i < 4; ++i) before += EchoRecord(i, std::to_string(i), true, std::to_string(i));
  before += "{\"index\":4,\"ok\":tr";
  WriteFile(dir_.File("out"), before);
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("out")), before);
}

// A --resume that rewrites the file (here its first record is missing), then
// is interrupted, keeps what it finished: before, the new file was thrown
// away and the next run did every item again. Item 0 waits for `release`,
// so the runs end with it unfinished, the others done; each item leaves a
// line in `runs` whenever it runs.
TEST_F(ResumeTest, AnInterruptedRewriteKeepsWhatItFinished) {
  std::string runs = dir_.File("runs"), release = dir_.File("release");
  std::string script = "if [ $1 = 0 ]; then while [ ! -e " + release +
                       " ]; do sleep 0.05; done; fi; echo $1 >> " + runs + "; echo $1";
  auto run_until = [&](int last, size_t runs_seen, const char* flag) {
    WriteFile(dir_.File("in"), Seq(0, last));
    std::vector<std::string> argv = {
        FanmapPath(), "-j", "2", "--slots", "4", "-i", dir_.File("in"), "-o", dir_.File("out")};
    if (flag != nullptr) argv.push_back(flag);
    for (const char* a : {"--", "sh", "-c"}) argv.push_back(a);
    argv.push_back(script);
    argv.push_back("sh");
    Process run(argv, "", dir_.File("stdout"), dir_.File("stderr"), Env());
    // Every item but 0 has finished; one SIGINT then drains: the results on
    // their way still count, and the run ends when item 0 has had its grace.
    EXPECT_TRUE(testing_util::WaitForCount(runs, "\n", runs_seen));
    kill(run.pid(), SIGINT);
    return run.Wait();
  };
  EXPECT_EQ(run_until(9, 9, "--unordered"), 130);
  // Records 1-9, no 0: a --resume of it rewrites.
  EXPECT_EQ(Lines(ReadFile(dir_.File("out"))).size(), 9u);
  EXPECT_EQ(run_until(19, 19, "--resume"), 130) << ReadFile(dir_.File("stderr"));
  EXPECT_EQ(Lines(ReadFile(dir_.File("out"))).size(), 19u) << ReadFile(dir_.File("stderr"));
  WriteFile(release, "");
  WriteFile(dir_.File("in"), Seq(0, 19));
  RunResult r = Fanmap({"-j", "2", "-i", dir_.File("in"), "-o", dir_.File("out"), "--resume", "--",
                        "sh", "-c", script, "sh"},
                       "");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(ReadFile(dir_.File("out")), 20);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(records[i]["index"], i);
  // Items 1-19 ran once, item 0 once (it never finished before).
  std::vector<std::string> ran = Lines(ReadFile(runs));
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(std::count(ran.begin(), ran.end(), std::to_string(i)), 1) << "item " << i;
  }
}

// An interrupted --resume-failed kept only what it had written: the failed
// record of an item it had not run again yet was gone from the file. Item 5
// fails in the first run; in the second it starts and waits for `release`.
TEST_F(ResumeTest, AnInterruptedResumeFailedKeepsTheFailuresItHasNotRunAgain) {
  std::string fail = dir_.File("fail"), started = dir_.File("started"),
              release = dir_.File("release");
  std::string script = "if [ $1 = 5 ]; then [ -e " + fail + " ] && exit 1; touch " + started +
                       "; while [ ! -e " + release + " ]; do sleep 0.05; done; fi; echo $1";
  WriteFile(dir_.File("in"), Seq(0, 9));
  WriteFile(fail, "");
  std::vector<std::string> argv = {FanmapPath(),     "-j", "2",  "-i", dir_.File("in"), "-o",
                                   dir_.File("out"), "--", "sh", "-c", script,          "sh"};
  ASSERT_EQ(testing_util::Run(argv, "", Env(), 60).exit_code, 1);
  std::string before = ReadFile(dir_.File("out"));
  unlink(fail.c_str());
  argv.insert(argv.begin() + 7, "--resume-failed");
  Process run(argv, "", dir_.File("stdout"), dir_.File("stderr"), Env());
  // Item 5 runs again (and waits): every other item was kept.
  for (int i = 0; i < 6000 && access(started.c_str(), F_OK) != 0; ++i) usleep(10000);
  ASSERT_EQ(access(started.c_str(), F_OK), 0);
  kill(run.pid(), SIGINT);
  EXPECT_EQ(run.Wait(), 130) << ReadFile(dir_.File("stderr"));
  auto records = Lines(ReadFile(dir_.File("out")));
  ASSERT_EQ(records.size(), 10u) << ReadFile(dir_.File("stderr"));
  EXPECT_NE(ReadFile(dir_.File("out")).find("\"index\":5,\"ok\":false"), std::string::npos);
}

// Interrupted before the input reached the file's last record, a rewrite
// cannot keep what it finished: the records after it were never checked
// against their items (another job's file was replaced with a mix of both).
// The file stays as it was.
TEST_F(ResumeTest, AnInterruptedRewriteThatHasNotReadEveryRecordsItemLeavesTheFile) {
  WriteFile(dir_.File("in"), Seq(0, 9));
  ASSERT_NO_FATAL_FAILURE(RunEcho());
  std::vector<std::string> lines = Lines(ReadFile(dir_.File("out")));
  std::string gapped;
  for (size_t i = 1; i < lines.size(); ++i) gapped += lines[i] + "\n";
  WriteFile(dir_.File("out"), gapped);
  testing_util::InputFifo input(dir_.File("pipe"));
  Process run({FanmapPath(), "-j", "1", "--builtin", "sha256:1", "-i", input.path(), "-o",
               dir_.File("out"), "--resume"},
              "", dir_.File("stdout"), dir_.File("stderr"), Env());
  // Item 0 has no record: it runs, under another job. Items 1-9 are not
  // read before the interrupt, so their records are never checked.
  input.Write("0\n");
  ASSERT_FALSE(testing_util::WaitForText(dir_.File("stderr"), "resuming").empty());
  kill(run.pid(), SIGINT);
  EXPECT_EQ(run.Wait(), 130) << ReadFile(dir_.File("stderr"));
  EXPECT_EQ(ReadFile(dir_.File("out")), gapped);
  EXPECT_NE(ReadFile(dir_.File("stderr")).find("not kept"), std::string::npos)
      << ReadFile(dir_.File("stderr"));
  input.Close();
}

// A rewrite renamed its new file over the link -o named: the link became a
// file of mode 0644 and its target kept the old records.
TEST_F(ResumeTest, ARewriteReplacesTheFileALinkPointsToAndKeepsItsMode) {
  WriteFile(dir_.File("in"), Seq(0, 5));
  std::string gapped = EchoRecord(0, "0", true, "0") + EchoRecord(2, "2", true, "2");
  WriteFile(dir_.File("real"), gapped);
  ASSERT_EQ(chmod(dir_.File("real").c_str(), 0600), 0);
  ASSERT_EQ(symlink(dir_.File("real").c_str(), dir_.File("out").c_str()), 0);
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat link, real;
  ASSERT_EQ(lstat(dir_.File("out").c_str(), &link), 0);
  EXPECT_TRUE(S_ISLNK(link.st_mode));
  ASSERT_EQ(stat(dir_.File("real").c_str(), &real), 0);
  EXPECT_EQ(real.st_mode & 0777, 0600u);
  auto records = ParseRecords(ReadFile(dir_.File("real")), 6);
  ASSERT_EQ(records.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(records[i]["result"], std::to_string(i));
}

TEST_F(ResumeTest, KeepsRecordsItDidNotRunAgain) {
  WriteFile(dir_.File("in"), Seq(0, 5));
  // Records 0-2 claim results an echo would never give: resume must keep them.
  std::string kept;
  for (int i = 0; i < 3; ++i) kept += EchoRecord(i, std::to_string(i), true, "old");
  WriteFile(dir_.File("out"), kept);
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(ReadFile(dir_.File("out")), 6);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(records[i]["result"], "old");
  for (int i = 3; i < 6; ++i) EXPECT_EQ(records[i]["result"], std::to_string(i));
}

TEST_F(ResumeTest, ResumeFailedRunsFailedItemsAgainInPlace) {
  WriteFile(dir_.File("in"), Seq(0, 5));
  std::string old = EchoRecord(0, "0", true, "0") + EchoRecord(1, "1", false, "boom") +
                    EchoRecord(2, "2", true, "2");
  WriteFile(dir_.File("out"), old);
  RunResult r = Resume({"-j", "1", "--builtin", "echo"}, "--resume-failed");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(ReadFile(dir_.File("out")), 6);
  EXPECT_EQ(records[1]["ok"], true);
  EXPECT_EQ(records[1]["result"], "1");
  RunResult fresh =
      Fanmap({"-j", "1", "--builtin", "echo", "-i", dir_.File("in"), "-o", dir_.File("fresh")}, "");
  EXPECT_EQ(ReadFile(dir_.File("out")), ReadFile(dir_.File("fresh")));
}

TEST_F(ResumeTest, PlainResumeKeepsFailedRecordsAndReportsThem) {
  WriteFile(dir_.File("in"), Seq(0, 3));
  WriteFile(dir_.File("out"), EchoRecord(0, "0", false, "boom"));
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(ReadFile(dir_.File("out")), 4);
  EXPECT_EQ(records[0]["error"], "boom");
}

// The regression of `seq 201 250 | fanmap -o f --resume` keeping 100 records
// of `seq 1 100`: other items are refused, naming the item, file untouched.
TEST_F(ResumeTest, RefusesOtherItemsAndLeavesTheFileAsItWas) {
  WriteFile(dir_.File("in"), Seq(1, 100));
  ASSERT_NO_FATAL_FAILURE(RunEcho());
  std::string before = ReadFile(dir_.File("out"));
  WriteFile(dir_.File("in"), Seq(201, 250));
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("changed"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("out")), before);
}

TEST_F(ResumeTest, RefusesAnItemChangedInTheMiddleNamingIt) {
  WriteFile(dir_.File("in"), Seq(0, 19));
  std::string records;
  for (int i = 0; i < 10; ++i) records += EchoRecord(i, std::to_string(i), true, std::to_string(i));
  WriteFile(dir_.File("out"), records);
  std::string items = Seq(0, 19);
  items.replace(items.find("\n7\n") + 1, 1, "x");
  WriteFile(dir_.File("in"), items);
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("item 7 (input line 8)"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("out")), records);
}

TEST_F(ResumeTest, RefusesAnotherCommand) {
  WriteFile(dir_.File("in"), Seq(0, 9));
  std::string records;
  for (int i = 0; i < 5; ++i) records += EchoRecord(i, std::to_string(i), true, std::to_string(i));
  WriteFile(dir_.File("out"), records);
  RunResult r = Resume({"-j", "1", "--builtin", "sha256:1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("job changed"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("out")), records);
}

TEST_F(ResumeTest, RefusesMoreRecordsThanTheInputHasItems) {
  WriteFile(dir_.File("in"), Seq(0, 9));
  std::string records;
  for (int i = 0; i < 10; ++i) records += EchoRecord(i, std::to_string(i), true, std::to_string(i));
  WriteFile(dir_.File("out"), records);
  WriteFile(dir_.File("in"), Seq(0, 4));
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("the input has only 5 items"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("out")), records);
}

TEST_F(ResumeTest, RefusesAFileThatIsNotFanmapOutput) {
  WriteFile(dir_.File("in"), Seq(0, 9));
  WriteFile(dir_.File("out"), "my notes\nmore notes\n");
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("line 1"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("out")), "my notes\nmore notes\n");
}

TEST_F(ResumeTest, RefusesAGarbageLineInTheMiddleNamingIt) {
  WriteFile(dir_.File("in"), Seq(0, 29));
  std::string records;
  for (int i = 0; i < 20; ++i) {
    records += i == 10 ? "garbage\n" : EchoRecord(i, std::to_string(i), true, std::to_string(i));
  }
  WriteFile(dir_.File("out"), records);
  RunResult r = Resume({"-j", "1", "--builtin", "echo"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("line 11"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(dir_.File("out")), records);
}

}  // namespace
}  // namespace fanmap
