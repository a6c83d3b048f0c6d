// Rate limits, outages and the run summary, end to end: the real fanmap and
// fanmap-worker binaries against the real mock-llm server on 127.0.0.1. No
// assertion depends on speed: bounds are on counts, with wide margins, and
// outages start and end on conditions, not after sleeps.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/farm_test_util.h"
#include "tests/mock_llm_fixture.h"

namespace fanmap {
namespace {

using Json = nlohmann::json;
using testing_util::Lines;
using testing_util::Process;
using testing_util::ReadFile;
using testing_util::RunResult;
using testing_util::TempDir;

std::string Prompts(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "prompt " + std::to_string(i) + "\n";
  return s;
}

class RateIntegrationTest : public testing_util::MockLlmFixture {
 protected:
  std::vector<std::string> ChatArgs(std::vector<std::string> args) const {
    args.insert(args.end(), {"--http", base_url_ + "/v1/chat/completions", "--chat", "mock-model"});
    return args;
  }

  static std::vector<Json> Records(const std::string& out) {
    std::vector<Json> records;
    for (const std::string& line : Lines(out)) records.push_back(Json::parse(line));
    return records;
  }

  // Every record ok, in input order.
  static void ExpectAllOk(const std::vector<Json>& records, size_t n) {
    ASSERT_EQ(records.size(), n);
    for (size_t i = 0; i < n; ++i) {
      if (records[i]["index"] != i || records[i]["ok"] != true) {
        ADD_FAILURE() << "record " << i << ": " << records[i].dump();
        return;
      }
    }
  }
};

TEST_F(RateIntegrationTest, SummaryCountsEqualThoseFromTheRecordsAndTheServer) {
  ASSERT_TRUE(StartMock({"--latency-ms", "2", "--p429", "0.1", "--p500", "0.1", "--retry-after",
                         "0", "--seed", "7"}));
  const int n = 600;
  std::string summary_path = dir_.File("summary.json");
  RunResult r =
      Fanmap(ChatArgs({"-j", "2", "--slots", "20", "--summary", summary_path}), Prompts(n));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<Json> records = Records(r.out);
  ExpectAllOk(records, n);
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (const Json& rec : records) {
    prompt_tokens += rec["prompt_tokens"].get<int64_t>();
    completion_tokens += rec["completion_tokens"].get<int64_t>();
  }
  Json summary = Json::parse(ReadFile(summary_path), nullptr, false);
  ASSERT_TRUE(summary.is_object()) << ReadFile(summary_path);
  EXPECT_EQ(summary["items"]["ok"], n);
  EXPECT_EQ(summary["items"]["failed"], 0);
  EXPECT_EQ(summary["tokens"]["prompt"], prompt_tokens);
  EXPECT_EQ(summary["tokens"]["completion"], completion_tokens);
  // Every request the server answered, and every 429 and 500 it sent.
  Json stats = Stats();
  EXPECT_EQ(summary["requests"], stats["chat_requests"]);
  EXPECT_EQ(summary["retries"]["429"], CountOf(stats, "429"));
  EXPECT_EQ(summary["retries"]["5xx"], CountOf(stats, "500"));
  EXPECT_GT(CountOf(stats, "429"), 0);
  EXPECT_GT(CountOf(stats, "500"), 0);
  EXPECT_EQ(summary["retries"]["timeout"], 0);
  EXPECT_EQ(summary["retries"]["connection"], 0);
  EXPECT_GT(summary["latency_ms"]["max"].get<double>(), 0);
  EXPECT_LE(summary["latency_ms"]["p50"].get<double>(), summary["latency_ms"]["p99"].get<double>());
  // The same figures on stderr, in words.
  EXPECT_NE(r.err.find(std::to_string(n) + " ok, 0 failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(CountOf(stats, "429")) + " 429"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(prompt_tokens) + " prompt + "), std::string::npos) << r.err;
  ExpectNoProcessLeft();
}

TEST_F(RateIntegrationTest, QuietRunPrintsNoSummary) {
  ASSERT_TRUE(StartMock({"--latency-ms", "0"}));
  RunResult r = Fanmap(ChatArgs({"-j", "1", "-q"}), Prompts(5));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find(" ok, "), std::string::npos) << r.err;
  RunResult loud = Fanmap(ChatArgs({"-j", "1"}), Prompts(5));
  EXPECT_NE(loud.err.find("5 ok, 0 failed"), std::string::npos) << loud.err;
}

// Regression: against a server that refuses what is beyond its limit (429,
// no headers), items used up their attempts and failed.
TEST_F(RateIntegrationTest, RunUnderAServerLimitLosesNoItem) {
  ASSERT_TRUE(StartMock({"--latency-ms", "20", "--limit-rps", "200", "--no-limit-headers"}));
  const int n = 1000;
  RunResult r = Fanmap(ChatArgs({"-j", "2", "--slots", "200", "--retries", "2"}), Prompts(n));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectAllOk(Records(r.out), n);
  Json stats = Stats();
  // Paced near the limit: refusals are a minority of the requests, not the
  // flood of an unpaced client (each of 400 requests in flight refused
  // over and over).
  EXPECT_LT(CountOf(stats, "429"), stats["chat_requests"].get<int64_t>() / 2) << stats.dump();
  ExpectNoProcessLeft();
}

TEST_F(RateIntegrationTest, RateLimitHeadersKeepRefusalsRare) {
  ASSERT_TRUE(StartMock({"--latency-ms", "20", "--limit-rps", "200"}));
  const int n = 1000;
  RunResult r = Fanmap(ChatArgs({"-j", "2", "--slots", "200"}), Prompts(n));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectAllOk(Records(r.out), n);
  Json stats = Stats();
  EXPECT_LT(CountOf(stats, "429"), stats["chat_requests"].get<int64_t>() / 10) << stats.dump();
}

// Regression: during an outage every item burnt its attempts and failed.
// Here the server is down from the start, stays down until the run has
// paused and probed twice (long past any item's --retries 1), then comes
// back: no item fails, and few requests reached the server meanwhile.
TEST_F(RateIntegrationTest, OutageIsSurvivedWithFewRequests) {
  ASSERT_TRUE(StartMock({"--latency-ms", "5"}));
  Call("POST", "/admin/outage?on=1");
  const int n = 300;
  std::string input = dir_.File("in.txt");
  {
    FILE* f = fopen(input.c_str(), "w");
    fputs(Prompts(n).c_str(), f);
    fclose(f);
  }
  std::vector<std::string> argv =
      ChatArgs({testing_util::FanmapPath(), "-j", "2", "--rate", "100/s", "--retries", "1"});
  std::vector<std::string> env = Env();
  Process run(argv, input, dir_.File("out"), dir_.File("err"), env);
  // The breaker trips after 20 failures; two rounds of 3 failed probes follow.
  ASSERT_TRUE(testing_util::WaitUntil([&] {
    return testing_util::Count(ReadFile(dir_.File("err")), "the run pauses") == 1 &&
           Stats()["outage_refused"].get<int64_t>() >= 20 + 6;
  })) << ReadFile(dir_.File("err"));
  int64_t during = Stats()["outage_refused"].get<int64_t>();
  Call("POST", "/admin/outage?on=0");
  ASSERT_EQ(run.Wait(), 0) << ReadFile(dir_.File("err"));
  ExpectAllOk(Records(ReadFile(dir_.File("out"))), n);
  // Without the pause, 100/s for as long: hundreds of requests.
  EXPECT_LT(during, 100);
  std::string err = ReadFile(dir_.File("err"));
  EXPECT_NE(err.find("resuming at full speed"), std::string::npos) << err;
  ExpectNoProcessLeft();
}

TEST_F(RateIntegrationTest, RetryForBoundsRetriesInTime) {
  ASSERT_TRUE(StartMock({"--latency-ms", "0", "--p500", "1"}));
  // Every request fails: the breaker pauses the run, and --retry-for ends
  // the items' retries however many attempts are left.
  RunResult r = Fanmap(ChatArgs({"-j", "1", "--retries", "1000", "--retry-for", "1s"}), Prompts(3));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::vector<Json> records = Records(r.out);
  ASSERT_EQ(records.size(), 3u);
  for (const Json& rec : records) {
    EXPECT_EQ(rec["ok"], false);
    EXPECT_NE(rec["error"].get<std::string>().find("HTTP 500"), std::string::npos) << rec.dump();
  }
}

// The records of items an outage left unsent are made by the coordinator,
// and had "custom_id":null (and no metadata): a Batch consumer joins the
// output on custom_id. They carry the item's fields as a worker's do.
TEST_F(RateIntegrationTest, ItemsAnOutageLeftUnsentKeepTheirCustomId) {
  ASSERT_TRUE(StartMock({"--latency-ms", "0", "--p500", "1"}));
  const int n = 200;
  for (const char* format : {"jsonl", "openai-batch"}) {
    bool batch = std::string(format) == "openai-batch";
    std::string input = dir_.File(std::string(format) + ".in");
    {
      FILE* f = fopen(input.c_str(), "w");
      for (int i = 0; i < n; ++i) {
        std::string id = "req-" + std::to_string(i);
        std::string chat = R"({"model":"mock-model","messages":[{"role":"user","content":"x"}]})";
        std::string line =
            batch ? R"({"custom_id":")" + id +
                        R"(","method":"POST","url":"/v1/chat/completions","body":)" + chat + "}"
                  : R"({"custom_id":")" + id + R"(","metadata":{"n":)" + std::to_string(i) +
                        R"(},"messages":[{"role":"user","content":"x"}]})";
        fputs((line + "\n").c_str(), f);
      }
      fclose(f);
    }
    std::vector<std::string> argv = {testing_util::FanmapPath(), "-j",  "2", "--retry-for", "1s",
                                     "--input-format",           format};
    if (batch) {
      argv.insert(argv.end(), {"--http", base_url_});
    } else {
      argv = ChatArgs(argv);
    }
    Process run(argv, input, dir_.File("out"), dir_.File("err"), Env());
    EXPECT_TRUE(testing_util::WaitUntil([&] { return run.Exited(); }, 60))
        << ReadFile(dir_.File("err"));
    EXPECT_EQ(run.Wait(), 1) << ReadFile(dir_.File("err"));
    std::vector<Json> records = Records(ReadFile(dir_.File("out")));
    ASSERT_EQ(records.size(), static_cast<size_t>(n)) << format;
    int unsent = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      const Json& rec = records[i];
      EXPECT_EQ(rec["ok"], false) << rec.dump();
      EXPECT_EQ(rec["custom_id"], "req-" + std::to_string(i)) << format << " " << rec.dump();
      if (!batch) {
        EXPECT_EQ(rec["metadata"], Json({{"n", i}})) << rec.dump();
      }
      std::string error =
          batch ? rec["error"]["message"].get<std::string>() : rec["error"].get<std::string>();
      unsent += error.rfind("not sent:", 0) == 0;
    }
    EXPECT_GT(unsent, 0) << format << ": the outage left no item unsent";
  }
  ExpectNoProcessLeft();
}

TEST_F(RateIntegrationTest, RetryForEndsAnOutageForEveryItemNotOnlyTheProbes) {
  ASSERT_TRUE(StartMock({"--latency-ms", "0", "--p500", "1"}));
  // 200 items against a server that fails them all: the run pauses and lets
  // a few probes through at a time. Items waiting for a retry fail once
  // their --retry-for is over, not when a probe finally takes them (that was
  // 3 items per pause of up to 5 s: minutes for 200).
  std::string input = dir_.File("in.txt");
  {
    FILE* f = fopen(input.c_str(), "w");
    fputs(Prompts(200).c_str(), f);
    fclose(f);
  }
  Process run(ChatArgs({testing_util::FanmapPath(), "-j", "2", "--retry-for", "1s"}), input,
              dir_.File("out"), dir_.File("err"), Env());
  EXPECT_TRUE(testing_util::WaitUntil([&] { return run.Exited(); }, 60))
      << ReadFile(dir_.File("err"));
  EXPECT_EQ(run.Wait(), 1) << ReadFile(dir_.File("err"));
  std::vector<Json> records = Records(ReadFile(dir_.File("out")));
  ASSERT_EQ(records.size(), 200u);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i]["index"], i);
    EXPECT_EQ(records[i]["ok"], false);
    EXPECT_NE(records[i]["error"].get<std::string>().find("HTTP 500"), std::string::npos)
        << records[i].dump();
  }
  ExpectNoProcessLeft();
}

TEST_F(RateIntegrationTest, BadRetryForIsAUsageError) {
  RunResult r = Fanmap({"--retry-for", "soon", "--builtin", "echo"}, "x\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--retry-for 'soon'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace fanmap
