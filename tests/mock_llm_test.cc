// The mock-llm server, run as a real process and spoken to over real sockets.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/farm_test_util.h"
#include "worker/rate_limit_headers.h"

namespace fanmap {
namespace {

using Json = nlohmann::json;
using testing_util::Process;
using testing_util::ReadFile;
using testing_util::TempDir;

const std::string kMockLlm = std::string(FANMAP_BIN_DIR) + "/mock-llm";

struct Reply {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;

  Json BodyJson() const { return Json::parse(body, nullptr, false); }
};

size_t AppendBody(char* data, size_t size, size_t count, void* reply) {
  static_cast<Reply*>(reply)->body.append(data, size * count);
  return size * count;
}

size_t AddHeader(char* data, size_t size, size_t count, void* reply) {
  std::string line(data, size * count);
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    value.erase(value.find_last_not_of("\r\n ") + 1);
    static_cast<Reply*>(reply)->headers[name] = value;
  }
  return size * count;
}

// One libcurl easy handle with the options every request of these tests shares;
// keeps its connection alive between Call()s.
class Client {
 public:
  Client() : curl_(curl_easy_init()) {}
  ~Client() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(curl_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Prepares a request; `method` "GET" or "POST" (with `body`).
  void Prepare(const std::string& method, const std::string& url, const std::string& body,
               const std::vector<std::string>& headers, Reply* reply) {
    body_ = body;
    curl_slist_free_all(headers_);
    headers_ = nullptr;
    for (const std::string& h : headers) headers_ = curl_slist_append(headers_, h.c_str());
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_NOPROXY, "*");  // never leave 127.0.0.1
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    if (method == "POST") {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body_.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body_.size()));
    } else {
      curl_easy_setopt(curl_, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, AppendBody);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, AddHeader);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, reply);
  }

  Reply Call(const std::string& method, const std::string& url, const std::string& body = "",
             const std::vector<std::string>& headers = {}) {
    Reply reply;
    Prepare(method, url, body, headers, &reply);
    reply.code = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &reply.status);
    return reply;
  }

  CURL* handle() { return curl_; }

 private:
  CURL* curl_;
  curl_slist* headers_ = nullptr;
  std::string body_;
};

Json ChatBody(const std::string& prompt) {
  return {{"model", "test-model"}, {"messages", {{{"role", "user"}, {"content", prompt}}}}};
}

const std::vector<std::string> kJson = {"Content-Type: application/json"};

// Lets this process open `n` more descriptors; false if the hard limit forbids it.
bool AllowDescriptors(rlim_t n) {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  if (limit.rlim_cur >= n) return true;
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < n) return false;
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? n : limit.rlim_max;
  return setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

class MockLlmTest : public ::testing::Test {
 protected:
  // Starts mock-llm with `args` (and --port 0); false if it never printed its URL.
  bool Start(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), {kMockLlm, "--port", "0"});
    server_ = std::make_unique<Process>(args, "", dir_.File("out"), dir_.File("err"), env);
    std::string out = testing_util::WaitForText(dir_.File("out"), "\n");
    std::smatch match;
    if (!std::regex_match(out, match, std::regex("listening on (http://127\\.0\\.0\\.1:\\d+)\n"))) {
      ADD_FAILURE() << "stdout: '" << out << "' stderr: " << ReadFile(dir_.File("err"));
      return false;
    }
    base_url_ = match[1];
    return true;
  }

  std::string Url(const std::string& path) const { return base_url_ + path; }

  Reply Chat(const std::string& prompt, std::vector<std::string> headers = kJson) {
    return client_.Call("POST", Url("/v1/chat/completions"), ChatBody(prompt).dump(), headers);
  }

  Json Stats() {
    Client client;
    return client.Call("GET", Url("/stats")).BodyJson();
  }

  static int64_t CountOf(const Json& stats, const std::string& status) {
    return stats["by_status"].value(status, int64_t{0});
  }

  TempDir dir_;
  std::unique_ptr<Process> server_;
  std::string base_url_;
  Client client_;
};

TEST_F(MockLlmTest, AnswersChatWithEchoOfLastUserMessage) {
  ASSERT_TRUE(Start({"--latency-ms", "10"}));
  Json request = {{"model", "some-model"},
                  {"messages",
                   {{{"role", "system"}, {"content", "You are helpful."}},  // 16 chars
                    {{"role", "user"}, {"content", "first"}},               // 5
                    {{"role", "assistant"}, {"content", "ok"}},             // 2
                    {{"role", "user"}, {"content", "héllo"}}}}};            // 5 characters
  Reply reply = client_.Call("POST", Url("/v1/chat/completions"), request.dump(), kJson);
  ASSERT_EQ(reply.code, CURLE_OK);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.headers["content-type"], "application/json");
  Json answer = reply.BodyJson();
  EXPECT_EQ(answer["object"], "chat.completion");
  EXPECT_EQ(answer["model"], "some-model");
  EXPECT_EQ(answer["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_TRUE(answer["created"].is_number_integer());
  ASSERT_EQ(answer["choices"].size(), 1u);
  EXPECT_EQ(answer["choices"][0]["index"], 0);
  EXPECT_EQ(answer["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(answer["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(answer["choices"][0]["message"]["content"], "echo: héllo");
  EXPECT_EQ(answer["usage"]["prompt_tokens"], 7);      // ceil(28 / 4)
  EXPECT_EQ(answer["usage"]["completion_tokens"], 3);  // ceil(11 / 4)
  EXPECT_EQ(answer["usage"]["total_tokens"], 10);
}

TEST_F(MockLlmTest, AcceptsMultiPartContent) {
  ASSERT_TRUE(Start({"--latency-ms", "0"}));
  Json request = {
      {"model", "m"},
      {"messages",
       {{{"role", "user"},
         {"content", {{{"type", "text"}, {"text", "ab"}}, {{"type", "text"}, {"text", "cd"}}}}}}}};
  Reply reply = client_.Call("POST", Url("/v1/chat/completions"), request.dump(), kJson);
  EXPECT_EQ(reply.BodyJson()["choices"][0]["message"]["content"], "echo: abcd");
}

TEST_F(MockLlmTest, MaxTokensTruncatesContent) {
  ASSERT_TRUE(Start({"--latency-ms", "0"}));
  Json request = ChatBody("abcdefghijklmnopqrstuvwxyz");
  request["max_tokens"] = 2;
  Json answer = client_.Call("POST", Url("/v1/chat/completions"), request.dump(), kJson).BodyJson();
  EXPECT_EQ(answer["choices"][0]["message"]["content"], "echo: ab");
  EXPECT_EQ(answer["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(answer["usage"]["completion_tokens"], 2);
}

TEST_F(MockLlmTest, BadJsonGets400WithOpenAiError) {
  ASSERT_TRUE(Start({"--latency-ms", "0"}));
  Reply reply = client_.Call("POST", Url("/v1/chat/completions"), "{\"model\": ", kJson);
  EXPECT_EQ(reply.status, 400);
  Json error = reply.BodyJson();
  EXPECT_EQ(error["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(error["error"]["message"].is_string());
}

TEST_F(MockLlmTest, MissingModelOrMessagesGets400) {
  ASSERT_TRUE(Start({"--latency-ms", "0"}));
  Json no_model = {{"messages", Json::array()}};
  Json no_messages = {{"model", "m"}};
  Json messages_not_array = {{"model", "m"}, {"messages", "hi"}};
  for (const Json& body : {no_model, no_messages, messages_not_array}) {
    Reply reply = client_.Call("POST", Url("/v1/chat/completions"), body.dump(), kJson);
    EXPECT_EQ(reply.status, 400) << body;
    EXPECT_EQ(reply.BodyJson()["error"]["type"], "invalid_request_error") << body;
  }
}

TEST_F(MockLlmTest, WrongOrMissingApiKeyGets401) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--api-key", "sk-right"}));
  Reply wrong = Chat("hi", {"Content-Type: application/json", "Authorization: Bearer sk-wrong"});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.BodyJson()["error"]["type"], "invalid_request_error");
  EXPECT_EQ(Chat("hi").status, 401);
  EXPECT_EQ(client_.Call("GET", Url("/v1/models")).status, 401);
  Reply right = Chat("hi", {"Content-Type: application/json", "Authorization: Bearer sk-right"});
  EXPECT_EQ(right.status, 200);
}

TEST_F(MockLlmTest, ApiKeyComesFromEnvironment) {
  ASSERT_TRUE(Start({"--latency-ms", "0"}, {"MOCK_LLM_API_KEY=sk-env"}));
  EXPECT_EQ(Chat("hi").status, 401);
  EXPECT_EQ(Chat("hi", {"Authorization: Bearer sk-env"}).status, 200);
}

TEST_F(MockLlmTest, ListsModels) {
  ASSERT_TRUE(Start({}));
  Reply reply = client_.Call("GET", Url("/v1/models"));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.BodyJson(),
            Json::parse(R"({"object":"list","data":[{"id":"mock-model","object":"model"}]})"));
}

TEST_F(MockLlmTest, EchoReturnsBodyAndContentType) {
  ASSERT_TRUE(Start({"--p500", "1"}));  // faults never touch /echo
  std::string body = "line one\n{\"not\": \"parsed\"}\x01\xff";
  Reply reply = client_.Call("POST", Url("/echo"), body, {"Content-Type: text/x-test; a=b"});
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, body);
  EXPECT_EQ(reply.headers["content-type"], "text/x-test; a=b");
}

TEST_F(MockLlmTest, UnknownPathGets404) {
  ASSERT_TRUE(Start({}));
  EXPECT_EQ(client_.Call("GET", Url("/v1/nothing")).status, 404);
}

TEST_F(MockLlmTest, KeepsConnectionAlive) {
  ASSERT_TRUE(Start({"--latency-ms", "0"}));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Chat("p" + std::to_string(i)).status, 200);
  Json stats = Stats();
  EXPECT_EQ(stats["requests_total"], 5);
  EXPECT_EQ(stats["connections_total"], 2);  // ours and Stats()'s
}

TEST_F(MockLlmTest, HeaderBytesPadsEachAnswerAndKeepsTheConnection) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--header-bytes", "50000"}));
  for (int i = 0; i < 3; ++i) {
    Reply reply = Chat("p" + std::to_string(i));
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.headers["x-padding"], std::string(50000, 'a'));
    EXPECT_EQ(reply.BodyJson()["choices"][0]["message"]["content"], "echo: p" + std::to_string(i));
  }
  Json stats = Stats();  // not padded
  EXPECT_EQ(stats["requests_total"], 3);
  EXPECT_EQ(stats["connections_total"], 2);  // ours and Stats()'s
}

TEST_F(MockLlmTest, Answers100ContinueForLargeBodies) {
  ASSERT_TRUE(Start({"--latency-ms", "0"}));
  // Without the server's "100 Continue" curl would wait for this timeout
  // (longer than the request's) and fail.
  curl_easy_setopt(client_.handle(), CURLOPT_EXPECT_100_TIMEOUT_MS, 600000L);
  std::string prompt(100000, 'x');
  Reply reply;
  client_.Prepare("POST", Url("/v1/chat/completions"), ChatBody(prompt).dump(),
                  {"Content-Type: application/json", "Expect: 100-continue"}, &reply);
  curl_easy_setopt(client_.handle(), CURLOPT_TIMEOUT, 30L);
  ASSERT_EQ(curl_easy_perform(client_.handle()), CURLE_OK);
  EXPECT_EQ(reply.BodyJson()["choices"][0]["message"]["content"], "echo: " + prompt);
}

TEST_F(MockLlmTest, P429OneAlwaysRateLimitsWithRetryAfter) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--p429", "1", "--retry-after", "7"}));
  for (int i = 0; i < 20; ++i) {
    Reply reply = Chat("p" + std::to_string(i));
    EXPECT_EQ(reply.status, 429);
    EXPECT_EQ(reply.headers["retry-after"], "7");
    EXPECT_EQ(reply.BodyJson()["error"]["code"], "rate_limit_exceeded");
  }
  EXPECT_EQ(CountOf(Stats(), "429"), 20);
}

// A limit of 3 requests a minute refills one request every 20 s: the requests
// after the third are refused unless the test stalls that long.
TEST_F(MockLlmTest, RequestLimitRefusesAtOnceWithOpenAiHeaders) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--limit-rpm", "3"}));
  for (int i = 0; i < 3; ++i) {
    Reply reply = Chat("p" + std::to_string(i));
    ASSERT_EQ(reply.status, 200);
    EXPECT_EQ(reply.headers["x-ratelimit-limit-requests"], "3");
    EXPECT_EQ(reply.headers["x-ratelimit-remaining-requests"], std::to_string(2 - i));
    // What the worker's parser reads: a reset no longer than a minute.
    std::optional<uint64_t> reset =
        ParseRateLimitDuration(reply.headers["x-ratelimit-reset-requests"]);
    ASSERT_TRUE(reset.has_value()) << reply.headers["x-ratelimit-reset-requests"];
    EXPECT_GT(*reset, 0u);
    EXPECT_LE(*reset, 60000u);
  }
  for (int i = 0; i < 3; ++i) {
    Reply reply = Chat("q" + std::to_string(i));
    EXPECT_EQ(reply.status, 429);
    EXPECT_EQ(reply.headers["x-ratelimit-remaining-requests"], "0");
    EXPECT_EQ(reply.BodyJson()["error"]["code"], "rate_limit_exceeded");
    ASSERT_EQ(reply.headers.count("retry-after-ms"), 1u);
    EXPECT_GT(std::stoll(reply.headers["retry-after-ms"]), 0);
  }
  Json stats = Stats();
  EXPECT_EQ(stats["rate_limited"], 3);
  EXPECT_EQ(CountOf(stats, "429"), 3);
  EXPECT_EQ(CountOf(stats, "200"), 3);
}

TEST_F(MockLlmTest, TokenLimitSendsTokenHeaders) {
  // "echo: p" is a few tokens; 30 a minute allow a handful of requests.
  ASSERT_TRUE(Start({"--latency-ms", "0", "--limit-tpm", "30"}));
  int ok = 0, refused = 0;
  for (int i = 0; i < 20; ++i) {
    Reply reply = Chat("p");
    EXPECT_EQ(reply.headers["x-ratelimit-limit-tokens"], "30");
    EXPECT_TRUE(ParseRateLimitDuration(reply.headers["x-ratelimit-reset-tokens"]).has_value());
    EXPECT_EQ(reply.headers.count("x-ratelimit-limit-requests"), 0u);
    (reply.status == 200 ? ok : refused) += 1;
  }
  EXPECT_GE(ok, 1);
  EXPECT_LE(ok, 15);
  EXPECT_EQ(ok + refused, 20);
}

TEST_F(MockLlmTest, LimitWithoutHeadersSendsNone) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--limit-rpm", "1", "--no-limit-headers"}));
  EXPECT_EQ(Chat("a").status, 200);
  Reply refused = Chat("b");
  EXPECT_EQ(refused.status, 429);
  for (const auto& [name, value] : refused.headers) {
    EXPECT_EQ(name.rfind("x-ratelimit-", 0), std::string::npos) << name;
    EXPECT_NE(name, "retry-after-ms");
    EXPECT_NE(name, "retry-after");
  }
}

TEST_F(MockLlmTest, OutageSwitchedByHandAnswers503WithoutRetryAfter) {
  ASSERT_TRUE(Start({"--latency-ms", "0"}));
  EXPECT_EQ(Chat("before").status, 200);
  Client admin;
  EXPECT_EQ(admin.Call("POST", Url("/admin/outage?on=1")).BodyJson()["outage"], true);
  for (int i = 0; i < 5; ++i) {
    Reply reply = Chat("during");
    EXPECT_EQ(reply.status, 503);
    EXPECT_EQ(reply.headers.count("retry-after"), 0u);
  }
  EXPECT_EQ(admin.Call("POST", Url("/admin/outage?on=0")).BodyJson()["outage"], false);
  EXPECT_EQ(Chat("after").status, 200);
  EXPECT_EQ(admin.Call("POST", Url("/admin/outage?on=maybe")).status, 400);
  Json stats = Stats();
  EXPECT_EQ(stats["outage_refused"], 5);
  EXPECT_EQ(CountOf(stats, "503"), 5);
}

TEST_F(MockLlmTest, ScheduledOutageCoversItsWindowOnly) {
  // From 0 s for an hour: every request of the test falls in it.
  ASSERT_TRUE(Start({"--latency-ms", "0", "--outage-at", "0", "--outage-for", "3600"}));
  EXPECT_EQ(Chat("x").status, 503);
  Client admin;
  admin.Call("POST", Url("/admin/outage?on=0"));
  EXPECT_EQ(Chat("y").status, 200);
  admin.Call("POST", Url("/admin/outage?on=auto"));
  EXPECT_EQ(Chat("z").status, 503);
}

TEST_F(MockLlmTest, P500OneAlwaysFails) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--p500", "1"}));
  for (int i = 0; i < 20; ++i) {
    Reply reply = Chat("p" + std::to_string(i));
    EXPECT_EQ(reply.status, 500);
    EXPECT_EQ(reply.BodyJson()["error"]["type"], "server_error");
  }
  EXPECT_EQ(client_.Call("GET", Url("/v1/models")).status, 200);
  EXPECT_EQ(CountOf(Stats(), "500"), 20);
}

TEST_F(MockLlmTest, PDropOneClosesWithoutResponse) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--pdrop", "1"}));
  curl_easy_setopt(client_.handle(), CURLOPT_FRESH_CONNECT, 1L);
  for (int i = 0; i < 10; ++i) {
    Reply reply = Chat("p" + std::to_string(i));
    EXPECT_EQ(reply.code, CURLE_GOT_NOTHING);
    EXPECT_EQ(reply.status, 0);
  }
  Json stats = Stats();
  EXPECT_EQ(stats["dropped"], 10);
  EXPECT_EQ(stats["in_flight_current"], 0);
}

TEST_F(MockLlmTest, PSlowOneStillAnswersCompletely) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--pslow", "1", "--slow-ms", "100"}));
  for (int i = 0; i < 3; ++i) {
    std::string prompt = "slow " + std::to_string(i);
    Reply reply = Chat(prompt);
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.BodyJson()["choices"][0]["message"]["content"], "echo: " + prompt);
  }
  EXPECT_EQ(Stats()["slow"], 3);
}

TEST_F(MockLlmTest, FaultRatesFollowProbabilities) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--p429", "0.2", "--p500", "0.2", "--pdrop", "0.1",
                     "--pslow", "0.1", "--slow-ms", "10", "--seed", "42"}));
  // A fresh connection per request: libcurl silently resends a request whose
  // reused connection closed without an answer.
  curl_easy_setopt(client_.handle(), CURLOPT_FRESH_CONNECT, 1L);
  const int kRequests = 500;
  std::map<long, int> seen;  // status (0: dropped) -> count
  for (int i = 0; i < kRequests; ++i) ++seen[Chat("p" + std::to_string(i)).status];
  // Expected 100/100/50/250, each bound beyond 4 standard deviations.
  EXPECT_GT(seen[429], 60);
  EXPECT_LT(seen[429], 140);
  EXPECT_GT(seen[500], 60);
  EXPECT_LT(seen[500], 140);
  EXPECT_GT(seen[0], 20);
  EXPECT_LT(seen[0], 80);
  EXPECT_EQ(seen[0] + seen[200] + seen[429] + seen[500], kRequests);
  Json stats = Stats();
  EXPECT_EQ(CountOf(stats, "429"), seen[429]);
  EXPECT_EQ(CountOf(stats, "500"), seen[500]);
  EXPECT_EQ(CountOf(stats, "200"), seen[200]);
  EXPECT_EQ(stats["dropped"], seen[0]);
  EXPECT_GT(stats["slow"].get<int>(), 20);
  EXPECT_LT(stats["slow"].get<int>(), 80);
}

TEST_F(MockLlmTest, CountsRetryBeforeRetryAfterElapsed) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--p429", "1", "--retry-after", "600"}));
  EXPECT_EQ(Chat("a").status, 429);
  EXPECT_EQ(Chat("b").status, 429);  // another prompt: not a retry
  EXPECT_EQ(Stats()["early_retries"], 0);
  EXPECT_EQ(Chat("a").status, 429);
  EXPECT_EQ(Stats()["early_retries"], 1);
}

TEST_F(MockLlmTest, RetryAfterWaitingIsNotCounted) {
  ASSERT_TRUE(Start({"--latency-ms", "0", "--p429", "1", "--retry-after", "1"}));
  EXPECT_EQ(Chat("a").status, 429);
  // What is tested is a time: waiting out the Retry-After. The server starts its second
  // before sending the 429, and sleep_for sleeps at least as long as asked: a loaded
  // machine only lengthens the wait, which cannot make the retry early.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(Chat("a").status, 429);
  EXPECT_EQ(Stats()["early_retries"], 0);
}

TEST_F(MockLlmTest, RejectsProbabilitiesAboveOne) {
  EXPECT_EQ(testing_util::Run({kMockLlm, "--p429", "0.6", "--p500", "0.6"}, "").exit_code, 2);
  EXPECT_EQ(testing_util::Run({kMockLlm, "--pdrop", "1.5"}, "").exit_code, 2);
}

TEST_F(MockLlmTest, ExitsCleanlyOnSigterm) {
  ASSERT_TRUE(Start({}));
  EXPECT_EQ(Chat("x").status, 200);
  kill(server_->pid(), SIGTERM);
  EXPECT_EQ(server_->Wait(30), 0);
  EXPECT_NE(ReadFile(dir_.File("err")).find("\"requests_total\":1"), std::string::npos);
}

// Sends `n` chat requests at once, each on its own connection, and checks that
// every answer belongs to its prompt. Returns the server's stats afterwards.
Json ConcurrentChats(const std::string& url, const std::string& stats_url, int n) {
  CURLM* multi = curl_multi_init();
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<Reply> replies(n);
  std::vector<std::string> prompts;
  for (int i = 0; i < n; ++i) {
    prompts.push_back("concurrent prompt " + std::to_string(i));
    clients.push_back(std::make_unique<Client>());
    clients.back()->Prepare("POST", url, ChatBody(prompts.back()).dump(), kJson, &replies[i]);
    curl_easy_setopt(clients.back()->handle(), CURLOPT_PRIVATE, &replies[i]);
    curl_multi_add_handle(multi, clients.back()->handle());
  }
  int running = 1;
  while (running > 0) {
    curl_multi_perform(multi, &running);
    if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  int messages = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi, &messages)) {
    if (msg->msg != CURLMSG_DONE) continue;
    Reply* reply = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &reply);
    reply->code = msg->data.result;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &reply->status);
  }
  for (auto& client : clients) curl_multi_remove_handle(multi, client->handle());
  curl_multi_cleanup(multi);

  int ok = 0;
  for (int i = 0; i < n; ++i) {
    Json answer = replies[i].BodyJson();
    ok += replies[i].code == CURLE_OK && replies[i].status == 200 &&
          answer["choices"][0]["message"]["content"] == "echo: " + prompts[i];
  }
  EXPECT_EQ(ok, n);
  Client client;
  return client.Call("GET", stats_url).BodyJson();
}

TEST_F(MockLlmTest, HoldsThousandConcurrentRequests) {
  const int kConcurrent = 1000;
  if (!AllowDescriptors(kConcurrent + 100)) GTEST_SKIP() << "RLIMIT_NOFILE hard limit too low";
  // All 1,000 must be in flight at once: the first answer may not come before the last
  // request is in. Opening 1,000 connections takes well under a second even on a loaded
  // machine; each answer waits 10 s.
  ASSERT_TRUE(Start({"--latency-ms", "10000"}));
  Json stats = ConcurrentChats(Url("/v1/chat/completions"), Url("/stats"), kConcurrent);
  EXPECT_EQ(CountOf(stats, "200"), kConcurrent);
  EXPECT_GE(stats["connections_peak"].get<int>(), kConcurrent);
  EXPECT_GE(stats["in_flight_peak"].get<int>(), kConcurrent);
  EXPECT_EQ(stats["in_flight_current"], 0);
}

TEST_F(MockLlmTest, ServesConcurrentRequestsOnSeveralThreads) {
  const int kConcurrent = 300;
  if (!AllowDescriptors(kConcurrent + 100)) GTEST_SKIP() << "RLIMIT_NOFILE hard limit too low";
  ASSERT_TRUE(Start({"--latency-ms", "300", "--jitter-ms", "100", "--threads", "4"}));
  Json stats = ConcurrentChats(Url("/v1/chat/completions"), Url("/stats"), kConcurrent);
  EXPECT_EQ(CountOf(stats, "200"), kConcurrent);
  EXPECT_EQ(stats["requests_total"], kConcurrent);
  EXPECT_EQ(stats["in_flight_current"], 0);
}

}  // namespace
}  // namespace fanmap
