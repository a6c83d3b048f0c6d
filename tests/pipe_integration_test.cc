// Integration tests of `fanmap --pipe`: the real fanmap and fanmap-worker
// binaries streaming items through real co-processes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "tests/farm_fixture.h"
#include "tests/farm_test_util.h"

namespace fanmap {
namespace {

using testing_util::ParseRecords;
using testing_util::RunResult;
using testing_util::Seq;
using testing_util::TempDir;

using PipeFarmTest = testing_util::FarmFixture;

TEST_F(PipeFarmTest, PythonCoProcessKeepsInputOrder) {
  RunResult r = Fanmap({"-j", "2", "--pipe",
                        "python3 -u -c 'import sys\n"
                        "for line in sys.stdin:\n"
                        "    print(line.rstrip(\"\\n\")[::-1] + \"!\")'"},
                       Seq(0, 9999));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(r.out, 10000);
  for (size_t i = 0; i < records.size(); ++i) {
    std::string number = std::to_string(i);
    std::string reversed(number.rbegin(), number.rend());
    ASSERT_EQ(records[i]["ok"], true) << records[i].dump();
    ASSERT_EQ(records[i]["result"], reversed + "!");
  }
  ExpectNoProcessLeft();
}

TEST_F(PipeFarmTest, JsonLinesItemsArriveAsOneLineEach) {
  RunResult r =
      Fanmap({"-j", "1", "--input-format", "jsonl", "--pipe", "cat"}, "{\"a\": [1, 2]}\n\"x\"\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(r.out, 2);
  EXPECT_EQ(records[0]["result"], "{\"a\": [1, 2]}");
  EXPECT_EQ(records[1]["result"], "\"x\"");
}

TEST_F(PipeFarmTest, ItemsOfACoProcessThatDiedAreRetried) {
  TempDir dir;
  // The first co-process to see item 1234 kills itself (and leaves a mark);
  // whatever it held is sent again.
  std::string command =
      "while IFS= read -r x; do "
      "if [ \"$x\" = 1234 ] && mkdir '" +
      dir.File("died") +
      "' 2>/dev/null; then echo 'dying on purpose' >&2; kill -9 $$; fi; "
      "echo \"$x\"; done";
  RunResult r = Fanmap({"-j", "2", "--pipe", command}, Seq(0, 2999));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(access(dir.File("died").c_str(), F_OK), 0) << "no co-process died";
  auto records = ParseRecords(r.out, 3000);
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(records[i]["ok"], true) << records[i].dump();
    ASSERT_EQ(records[i]["result"], std::to_string(i));
  }
  ExpectNoProcessLeft();
}

TEST_F(PipeFarmTest, CoProcessThatHangsIsCancelledAndItsItemsRetried) {
  TempDir dir;
  // Item 77 hangs the first time only.
  std::string command =
      "while IFS= read -r x; do "
      "if [ \"$x\" = 77 ] && mkdir '" +
      dir.File("hung") +
      "' 2>/dev/null; then sleep 1000; fi; "
      "echo \"$x\"; done";
  RunResult r = Fanmap({"-j", "2", "--timeout", testing_util::kShortTimeoutS, "--pipe", command},
                       Seq(0, 199));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(access(dir.File("hung").c_str(), F_OK), 0) << "no co-process hung";
  auto records = ParseRecords(r.out, 200);
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(records[i]["ok"], true) << records[i].dump();
    ASSERT_EQ(records[i]["result"], std::to_string(i));
  }
  ExpectNoProcessLeft();
}

TEST_F(PipeFarmTest, CoProcessThatAnswersTooManyLinesFailsItems) {
  // sed holds its output until its input ends (block-buffered, under 4 KB):
  // fanmap closes its input and reads its answers to the end, all 200 lines
  // for 100 items. (A co-process that answers each line at once with two
  // may have its second lines taken for the next items' answers, or still
  // unread when the run ends: the line protocol cannot tell in time, which
  // made this test depend on scheduling when it used one.)
  RunResult r = Fanmap({"-j", "1", "--pipe", "sed p"}, Seq(0, 99));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(r.out, 100);
  size_t violations = 0;
  for (const auto& record : records) {
    if (record["ok"] == true) continue;
    EXPECT_EQ(record["error"].get<std::string>().rfind(
                  "co-process wrote more lines than it was given items", 0),
              0u)
        << record;
    ++violations;
  }
  EXPECT_GT(violations, 0u);
  ExpectNoProcessLeft();
}

TEST_F(PipeFarmTest, CoProcessThatDropsLinesGivesNoItemAWrongResult) {
  // grep -v 3 answers nothing for 3, 13, 23...: matched in order, every later
  // answer would be the next item's. An item either gets its own line or
  // fails, and the run says so in its exit status.
  RunResult r = Fanmap({"-j", "2", "--pipe", "grep -v 3"}, Seq(0, 99));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(r.out, 100);
  size_t failed = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i]["ok"] == true) {
      EXPECT_EQ(records[i]["result"], std::to_string(i)) << records[i];
      continue;
    }
    ++failed;
    // Either the lines came short, or a restarted grep that was given only
    // items with a 3 selected nothing and exited 1 at its end of input
    // (which of the two depends on how the items were batched).
    std::string error = records[i]["error"].get<std::string>();
    EXPECT_TRUE(error.rfind("co-process wrote fewer lines than it was given items", 0) == 0 ||
                error.rfind("co-process exited with code 1 while holding this item", 0) == 0)
        << records[i];
  }
  EXPECT_GT(failed, 0u);
  ExpectNoProcessLeft();
}

TEST_F(PipeFarmTest, UnknownCommandStopsTheRunWithoutRetrying) {
  // Retries are left at their default: a command that cannot start is not
  // worth another attempt, for this item or any other, and the run stops
  // (fail fast) instead of failing all 1,000 items.
  RunResult r = Fanmap({"-j", "1", "--pipe", "fanmap-no-such-command"}, Seq(0, 999));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("none succeeded: co-process cannot start"), std::string::npos) << r.err;
  std::vector<std::string> lines = testing_util::Lines(r.out);
  ASSERT_GE(lines.size(), 1u) << r.err;
  EXPECT_LT(lines.size(), 1000u);
  auto records = ParseRecords(r.out, lines.size());
  for (const auto& record : records) {
    EXPECT_EQ(record["ok"], false);
    std::string error = record["error"];
    EXPECT_NE(error.find("cannot start"), std::string::npos) << record.dump();
    EXPECT_NE(error.find("not found"), std::string::npos) << record.dump();
    EXPECT_FALSE(record.contains("attempts")) << "no item may be tried twice: " << record.dump();
  }
  EXPECT_EQ(records[0]["exit_code"], 127);
  ExpectNoProcessLeft();
}

TEST_F(PipeFarmTest, JsonAnswersBecomeRecordsInOrder) {
  // Items ending in 3 fail; the others answer a JSON object.
  std::string command =
      "while IFS= read -r x; do case $x in "
      "*3) printf '{\"ok\":false,\"error\":\"no %s\",\"traceback\":\"T\\\\n%s\"}\\n' \"$x\" "
      "\"$x\";; "
      "*) printf '{\"ok\":true,\"result\":{\"n\":%s}}\\n' \"$x\";; esac; done";
  RunResult r = Fanmap({"-j", "2", "--pipe-answers", "json", "--pipe", command}, Seq(0, 999));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("100 of 1000 item(s) failed"), std::string::npos) << r.err;
  auto records = ParseRecords(r.out, 1000);
  for (size_t i = 0; i < records.size(); ++i) {
    const nlohmann::json& record = records[i];
    std::string n = std::to_string(i);
    if (i % 10 == 3) {
      ASSERT_EQ(record["ok"], false) << record.dump();
      ASSERT_EQ(record["error"], "no " + n);
      ASSERT_EQ(record["traceback"], "T\n" + n);
      // An answered failure is the function's verdict: not tried again.
      ASSERT_FALSE(record.contains("attempts")) << record.dump();
    } else {
      ASSERT_EQ(record["ok"], true) << record.dump();
      ASSERT_EQ(record["result"], nlohmann::json({{"n", i}})) << record.dump();
    }
  }
  ExpectNoProcessLeft();
}

TEST_F(PipeFarmTest, RetryableJsonAnswerIsTriedAgain) {
  TempDir dir;
  // Item 5 asks to be tried again, the first time only.
  std::string command =
      "while IFS= read -r x; do "
      "if [ \"$x\" = 5 ] && mkdir '" +
      dir.File("once") +
      "' 2>/dev/null; then echo '{\"ok\":false,\"error\":\"busy\",\"retryable\":true}'; "
      "else printf '{\"ok\":true,\"result\":\"%s\"}\\n' \"$x\"; fi; done";
  RunResult r = Fanmap({"-j", "1", "--pipe-answers", "json", "--pipe", command}, Seq(0, 9));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(r.out, 10);
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(records[i]["ok"], true) << records[i].dump();
    ASSERT_EQ(records[i]["result"], std::to_string(i));
  }
  EXPECT_EQ(records[5]["attempts"], 2) << records[5].dump();
}

TEST_F(PipeFarmTest, MalformedJsonAnswersFailOnlyTheirItems) {
  // Even items get answers that are not answer objects (by their last
  // digit); the odd ones must still get their own answers, in order.
  std::string command =
      "while IFS= read -r x; do case $x in "
      "*0|*4|*8) echo \"plain $x\";; *2|*6) echo '[1]';; "
      "*) printf '{\"ok\":true,\"result\":\"%s\"}\\n' \"$x\";; esac; done";
  RunResult r = Fanmap({"-j", "1", "--pipe-answers", "json", "--pipe", command}, Seq(0, 99));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(r.out, 100);
  for (size_t i = 0; i < records.size(); ++i) {
    if (i % 2 == 1) {
      ASSERT_EQ(records[i]["ok"], true) << records[i].dump();
      ASSERT_EQ(records[i]["result"], std::to_string(i));
      continue;
    }
    ASSERT_EQ(records[i]["ok"], false) << records[i].dump();
    std::string error = records[i]["error"];
    ASSERT_EQ(error.rfind("co-process answer is not a --pipe-answers json object: ", 0), 0u)
        << error;
    bool plain = i % 10 == 0 || i % 10 == 4 || i % 10 == 8;
    ASSERT_NE(error.find(plain ? "not JSON" : "an array, not an object"), std::string::npos)
        << error;
  }
  ExpectNoProcessLeft();
}

TEST_F(PipeFarmTest, PipeAnswersIsCheckedBeforeAnythingRuns) {
  RunResult r = Fanmap({"--pipe-answers", "xml", "--pipe", "cat"}, "a\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--pipe-answers"), std::string::npos) << r.err;
  r = Fanmap({"--pipe-answers", "json", "--builtin", "echo"}, "a\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--pipe-answers needs --pipe CMD"), std::string::npos) << r.err;
  // The default, given explicitly, changes nothing.
  r = Fanmap({"--pipe-answers", "lines", "--pipe", "cat"}, "{\"ok\":false}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseRecords(r.out, 1)[0]["result"], "{\"ok\":false}");
}

// Filters whose stdout is block-buffered on a pipe: they answer only when
// their buffer fills or their input ends, and the coordinator never says that
// no more items will come. fanmap must end their input to make them flush,
// and its output must be what the filter gives when run directly.
struct Filter {
  const char* name;
  const char* command;
};

// Names the filter in failure messages (instead of its bytes).
void PrintTo(const Filter& filter, std::ostream* os) { *os << filter.name; }

class BlockBufferedFilterTest : public testing_util::FarmFixture,
                                public ::testing::WithParamInterface<Filter> {
 protected:
  // Generous for 100,000 lines; before fanmap closed a co-process's input it
  // waited forever, and this turns that into a failure.
  static constexpr int kDeadlineSeconds = 60;

  // "a0bc\na1bc\n...": lines that every filter here changes.
  static std::string Words(int n) {
    std::string text;
    for (int i = 0; i < n; ++i) text += "a" + std::to_string(i) + "bc\n";
    return text;
  }

  // The interpreter `python3` on PATH runs, by its own path: a launcher in
  // front of it (pyenv's shim is a shell script) costs each start of the
  // filter a shell and more, and fanmap starts a block-buffered filter again
  // each time it ends its input to make it flush. Under load that alone took
  // this test past its deadline.
  static std::string Python3() {
    static const std::string path = [] {
      RunResult r = testing_util::Run(
          {"/bin/sh", "-c", "python3 -c 'import sys; print(sys.executable)'"}, "", {});
      std::string out = r.out.substr(0, r.out.find('\n'));
      return r.exit_code == 0 && !out.empty() && out[0] == '/' ? out : std::string("python3");
    }();
    return path;
  }

  void ExpectSameAsTheFilter(const std::string& input) {
    std::string command = GetParam().command;
    if (size_t at = command.find(" python3 "); at != std::string::npos) {
      command.replace(at + 1, 7, Python3());
    }
    RunResult direct = testing_util::Run({"/bin/sh", "-c", command}, input, Env());
    ASSERT_EQ(direct.exit_code, 0) << direct.err;
    RunResult r = testing_util::Run(
        {testing_util::FanmapPath(), "-j", "1", "--output-format", "raw", "--pipe", command}, input,
        Env(), kDeadlineSeconds);
    ASSERT_NE(r.exit_code, -1) << "fanmap --pipe '" << command << "' did not finish within "
                               << kDeadlineSeconds
                               << " s (killed): the co-process was never made to flush";
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(r.out.size(), direct.out.size());
    EXPECT_TRUE(r.out == direct.out) << "the output differs from the filter's own";
    ExpectNoProcessLeft();
  }
};

TEST_P(BlockBufferedFilterTest, AFewLinesComeOutAsFromTheFilter) {
  ExpectSameAsTheFilter("abc\nxyz\nbanana\n");
}

TEST_P(BlockBufferedFilterTest, HundredThousandLinesComeOutAsFromTheFilter) {
  ExpectSameAsTheFilter(Words(100000));
}

INSTANTIATE_TEST_SUITE_P(Filters, BlockBufferedFilterTest,
                         ::testing::Values(Filter{"sed", "sed s/a/b/"},
                                           Filter{"awk", "awk '{print toupper($0)}'"},
                                           Filter{"tr", "tr a-z A-Z"},
                                           // PYTHONUNBUFFERED would make Python flush each line.
                                           Filter{"python3",
                                                  "env -u PYTHONUNBUFFERED python3 -c 'import sys\n"
                                                  "for l in sys.stdin: print(l.strip().upper())'"}),
                         [](const ::testing::TestParamInfo<Filter>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace fanmap
