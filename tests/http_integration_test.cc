// Integration tests of --http --chat: the real fanmap and fanmap-worker
// binaries against the real mock-llm server, all on 127.0.0.1.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
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

const std::string kMockLlm = testing_util::BinaryPath("mock-llm");
constexpr int kPrompts = 2000;

size_t Utf8Length(const std::string& s) {
  return std::count_if(s.begin(), s.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

// mock-llm's token estimate: a token per 4 characters, at least one.
int64_t MockTokens(const std::string& text) {
  return std::max<int64_t>(1, (Utf8Length(text) + 3) / 4);
}

// Prompts of varied length, some with characters that need escaping.
std::vector<std::string> Prompts(int n) {
  std::vector<std::string> prompts;
  for (int i = 0; i < n; ++i) {
    std::string p = "prompt " + std::to_string(i);
    if (i % 7 == 0) p += " with \"quotes\", a \\ and ünïcödé";
    if (i % 11 == 0) p += std::string(i % 200, 'x');
    prompts.push_back(std::move(p));
  }
  return prompts;
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& line : lines) s += line + "\n";
  return s;
}

class HttpIntegrationTest : public testing_util::MockLlmFixture {
 protected:
  RunResult Chat(std::vector<std::string> args, const std::vector<std::string>& prompts,
                 std::vector<std::string> env = {}) {
    args.insert(args.end(), {"--http", base_url_ + "/v1/chat/completions", "--chat", "mock-model"});
    return Fanmap(args, Joined(prompts), env);
  }

  // Checks one record per prompt, in input order, each the echo of its
  // prompt with mock-llm's token counts. Returns the records.
  std::vector<Json> ExpectEchoes(const RunResult& r, const std::vector<std::string>& prompts) {
    std::vector<Json> records;
    for (const std::string& line : Lines(r.out)) records.push_back(Json::parse(line));
    EXPECT_EQ(records.size(), prompts.size());
    for (size_t i = 0; i < std::min(records.size(), prompts.size()); ++i) {
      const Json& rec = records[i];
      const std::string answer = "echo: " + prompts[i];
      if (rec["index"] != i || rec["ok"] != true || rec["result"] != answer ||
          rec["status"] != 200 || rec["prompt_tokens"] != MockTokens(prompts[i]) ||
          rec["completion_tokens"] != MockTokens(answer) ||
          rec["total_tokens"] != MockTokens(prompts[i]) + MockTokens(answer)) {
        ADD_FAILURE() << "record " << i << " for '" << prompts[i] << "': " << rec.dump();
        break;
      }
    }
    return records;
  }
};

TEST_F(HttpIntegrationTest, ChatAnswersEveryPromptInOrderAcrossTwoWorkers) {
  ASSERT_TRUE(StartMock({"--latency-ms", "20"}));
  std::vector<std::string> prompts = Prompts(kPrompts);
  RunResult r = Chat({"-j", "2", "--slots", "50"}, prompts);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectEchoes(r, prompts);
  Json stats = Stats();
  EXPECT_EQ(stats["chat_requests"], kPrompts);
  EXPECT_EQ(CountOf(stats, "200"), kPrompts);
  // Requests overlap, but never beyond 2 workers x 50 slots.
  EXPECT_GT(stats["in_flight_peak"].get<int64_t>(), 1);
  EXPECT_LE(stats["in_flight_peak"].get<int64_t>(), 100);
  ExpectNoProcessLeft();
}

TEST_F(HttpIntegrationTest, InjectedFaultsAreRetriedAfterRetryAfterUntilAllSucceed) {
  ASSERT_TRUE(StartMock({"--latency-ms", "20", "--p429", "0.2", "--p500", "0.05", "--retry-after",
                         "1", "--seed", "1"}));
  std::vector<std::string> prompts = Prompts(kPrompts);
  // 11 attempts: a prompt fails them all with probability 0.25^11.
  RunResult r = Chat({"-j", "2", "--slots", "50", "--retries", "10"}, prompts);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<Json> records = ExpectEchoes(r, prompts);
  int64_t retried = std::count_if(records.begin(), records.end(),
                                  [](const Json& rec) { return rec.value("attempts", 1) > 1; });
  EXPECT_GT(retried, 0);
  Json stats = Stats();
  EXPECT_GT(CountOf(stats, "429"), 0);
  EXPECT_GT(CountOf(stats, "500"), 0);
  EXPECT_EQ(CountOf(stats, "200"), kPrompts);
  // mock-llm counts a prompt sent again before its Retry-After elapsed.
  EXPECT_EQ(stats["early_retries"], 0);
  ExpectNoProcessLeft();
}

TEST_F(HttpIntegrationTest, AServerSendingAHugeHeaderFailsItsItemsOnceWithAClearError) {
  // Regression: libcurl refuses a header line over 100 KiB as "Out of
  // memory"; each item was retried and its record blamed memory.
  ASSERT_TRUE(StartMock({"--latency-ms", "1", "--header-bytes", "200000"}));
  RunResult r = Chat({"-j", "1", "--retries", "3"}, {"one", "two"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  for (size_t i = 0; i < lines.size(); ++i) {
    Json rec = Json::parse(lines[i]);
    EXPECT_EQ(rec["index"], i);
    EXPECT_EQ(rec["ok"], false);
    EXPECT_EQ(rec["error"], "response header line larger than 100 KiB (libcurl: Out of memory)");
    EXPECT_FALSE(rec.contains("attempts")) << "not retried: " << rec.dump();
  }
  EXPECT_EQ(CountOf(Stats(), "200"), 2) << "one request per item";
  ExpectNoProcessLeft();
}

TEST_F(HttpIntegrationTest, ApiKeyReachesTheServerButNeverTheOutput) {
  const std::string key = "sk-integration-" + token_;
  ASSERT_TRUE(StartMock({"--api-key", key}));
  std::vector<std::string> prompts = Prompts(50);
  std::vector<std::string> flags = {"-j", "2", "--api-key-env", "FANMAP_TEST_KEY"};

  RunResult r = Chat(flags, prompts, {"FANMAP_TEST_KEY=" + key});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectEchoes(r, prompts);
  EXPECT_EQ(r.out.find(key), std::string::npos);
  EXPECT_EQ(r.err.find(key), std::string::npos);

  const std::string wrong = "sk-wrong-" + token_;
  r = Chat(flags, prompts, {"FANMAP_TEST_KEY=" + wrong});
  // Refused credentials fail every item alike: the run stops at once (fail
  // fast) with the server's answer, after writing the records it finished.
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("none succeeded: HTTP 401"), std::string::npos) << r.err;
  // All 50 requests may be in flight at once: those that finished have records.
  std::vector<std::string> lines = Lines(r.out);
  EXPECT_LE(lines.size(), prompts.size());
  for (const std::string& line : lines) {
    Json rec = Json::parse(line);
    EXPECT_EQ(rec["ok"], false);
    EXPECT_EQ(rec["status"], 401);
    EXPECT_FALSE(rec.contains("attempts")) << "a 401 is not retried: " << line;
  }
  EXPECT_EQ(r.out.find(wrong), std::string::npos);
  EXPECT_EQ(r.err.find(wrong), std::string::npos);
  ExpectNoProcessLeft();
}

TEST_F(HttpIntegrationTest, NonHttpUrlIsAUsageError) {
  RunResult r = Fanmap({"--http", "ftp://127.0.0.1/x"}, "a\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("http:// or https://"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST_F(HttpIntegrationTest, PlainHttpSendsTheApiKeyOnlyWhenAskedTo) {
  // The server requires a key; $OPENAI_API_KEY holds it. A plain --http
  // request (no --chat) must not carry it to whatever URL it names...
  ASSERT_TRUE(StartMock({"--api-key", "sk-test-secret"}));
  std::string body = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
  std::vector<std::string> args = {
      "-j",        "1", "--input-format", "jsonl",
      "--retries", "0", "--http",         base_url_ + "/v1/chat/completions"};
  RunResult plain = Fanmap(args, body + "\n", {"OPENAI_API_KEY=sk-test-secret"});
  EXPECT_EQ(plain.exit_code, 1) << plain.err;
  EXPECT_EQ(CountOf(Stats(), "401"), 1);
  // ... unless --api-key-env says which variable to send.
  args.insert(args.end(), {"--api-key-env", "OPENAI_API_KEY"});
  RunResult asked = Fanmap(args, body + "\n", {"OPENAI_API_KEY=sk-test-secret"});
  EXPECT_EQ(asked.exit_code, 0) << asked.err;
  EXPECT_EQ(asked.out.find("sk-test-secret"), std::string::npos);
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

TEST_F(HttpIntegrationTest, ChatRecordsCarryTheReplysFieldsAndTheItemsIds) {
  ASSERT_TRUE(StartMock({"--latency-ms", "20"}));
  std::vector<std::string> items;
  for (int i = 0; i < 50; ++i) {
    items.push_back(
        R"({"custom_id":"req-)" + std::to_string(i) + R"(","metadata":{"n":)" + std::to_string(i) +
        R"(},"messages":[{"role":"user","content":"custom_id metadata"}],"max_tokens":2})");
  }
  RunResult r = Chat({"-j", "1", "--input-format", "jsonl"}, items);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<Json> records = testing_util::ParseRecords(r.out, items.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const Json& rec = records[i];
    EXPECT_EQ(rec["custom_id"], "req-" + std::to_string(i)) << rec.dump();
    EXPECT_EQ(rec["metadata"], Json({{"n", i}})) << rec.dump();
    // mock-llm cuts the answer to max_tokens * 4 characters: "echo: cu".
    EXPECT_EQ(rec["result"], "echo: cu") << rec.dump();
    EXPECT_EQ(rec["finish_reason"], "length") << rec.dump();
    EXPECT_EQ(rec["model"], "mock-model") << rec.dump();
    EXPECT_TRUE(rec["id"].is_string() && rec["id"].get<std::string>().rfind("chatcmpl-", 0) == 0)
        << rec.dump();
    EXPECT_GE(rec["latency_ms"].get<int64_t>(), 20) << rec.dump();
  }
  // (That the request itself holds neither is checked by HttpPayloadTest.)
}

}  // namespace
}  // namespace fanmap
