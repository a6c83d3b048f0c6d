// HttpPayload against a real HTTP server on 127.0.0.1 (cpp-httplib in a
// thread), driven by a zmq_poll loop the way the worker drives it.
#include "worker/payload_http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/clock.h"
#include "common/record_fields.h"
#include "common/version.h"
#include "tests/loopback_port.h"

namespace fanmap {
namespace {

constexpr char kKey[] = "sk-secret-5f1e2d3c4b";
constexpr int kConcurrent = 100;

// cpp-httplib 0.11 listens with a backlog of 5: a burst of connections
// beyond it waits for SYN retransmits (1 s, 3 s, 7 s...). Listening again on
// the same socket raises the backlog; the socket is found by its port.
void RaiseListenBacklog(int port) {
  for (int fd = 0; fd < 1024; ++fd) {
    sockaddr_in addr = {};
    socklen_t len = sizeof addr;
    int listening = 0;
    socklen_t optlen = sizeof listening;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
        addr.sin_family == AF_INET && ntohs(addr.sin_port) == port &&
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) == 0 && listening) {
      listen(fd, 1024);
    }
  }
}

class HttpPayloadTest : public ::testing::Test {
 protected:
  struct Seen {
    std::string content_type;
    std::string authorization;
    std::string body;
    std::string user_agent;
  };

  void SetUp() override {
    // Nothing may divert the requests away from 127.0.0.1.
    setenv("no_proxy", "*", 1);
    // The default pool (8 threads here) would serialise the concurrency test.
    server_.new_task_queue = [] { return new httplib::ThreadPool(kConcurrent + 20); };
    server_.Post("/json", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      // Pretty-printed on purpose: the record must still be one line.
      res.set_content(nlohmann::json{{"got", req.body}}.dump(2) + "\n", "application/json");
    });
    server_.Post("/text", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      res.set_content("plain text", "text/plain");
    });
    // The item says what to answer: first line a status (or "slow", "big"),
    // then response headers.
    server_.Post("/do", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      std::istringstream lines(req.body);
      std::string command, header;
      std::getline(lines, command);
      if (command == "slow") {
        arrived_++;
        WaitForRelease([] { return false; }, std::chrono::seconds(20));
        res.set_content("late", "text/plain");
        return;
      }
      if (command == "big") {
        res.set_content(std::string((64 << 20) + 1, 'x'), "text/plain");
        return;
      }
      res.status = std::stoi(command);
      while (std::getline(lines, header)) {
        size_t colon = header.find(':');
        res.set_header(header.substr(0, colon), header.substr(colon + 2));
      }
      res.set_content("nope", "text/plain");
    });
    // Answers only once kConcurrent requests are inside the server at once.
    server_.Post("/barrier", [this](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock<std::mutex> lock(mu_);
      ++barrier_count_;
      cv_.notify_all();
      bool all = cv_.wait_for(lock, std::chrono::seconds(20),
                              [this] { return barrier_count_ >= kConcurrent || released_; });
      res.set_content(all && barrier_count_ >= kConcurrent ? "all arrived" : "gave up",
                      "text/plain");
    });
    // Echoes the Authorization header, like a careless server would; the
    // item is the status to answer with.
    server_.Post("/auth", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      res.status = std::stoi(req.body);
      res.set_content(nlohmann::json{{"auth", req.get_header_value("Authorization")}}.dump(),
                      "application/json");
    });
    // The same in a request id header, and with "-" escaped in the body, as
    // a server of the Batch API's kind might.
    server_.Post("/v1/echo-auth", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      std::string auth = req.get_header_value("Authorization");
      res.set_header("x-request-id", auth);
      std::string escaped;
      for (char c : auth) escaped += c == '-' ? std::string("\\u002d") : std::string(1, c);
      res.set_content("{\"auth\":\"" + escaped + "\"}", "application/json");
    });
    // Promises 1,000 bytes, sends 10 and closes: a reply cut off halfway.
    server_.Post("/v1/cut-off", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      res.set_content_provider(1000, "application/json",
                               [](size_t offset, size_t, httplib::DataSink& sink) {
                                 if (offset == 0) sink.write("{\"partial\"", 10);
                                 return offset == 0;
                               });
    });
    server_.Post("/v1/chat/completions",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   Record(req);
                   nlohmann::json request = nlohmann::json::parse(req.body);
                   std::string prompt = request["messages"].back()["content"];
                   nlohmann::json completion = {
                       {"id", "chatcmpl-1"},
                       {"object", "chat.completion"},
                       {"model", request["model"]},
                       {"choices",
                        {{{"index", 0},
                          {"message", {{"role", "assistant"}, {"content", "echo: " + prompt}}},
                          {"finish_reason", "stop"}}}},
                       {"usage",
                        {{"prompt_tokens", prompt.size()},
                         {"completion_tokens", prompt.size() + 6},
                         {"total_tokens", 2 * prompt.size() + 6}}}};
                   res.set_content(completion.dump(), "application/json");
                 });

    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    RaiseListenBacklog(port_);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  void TearDown() override {
    if (payload_) payload_->Shutdown();
    payload_.reset();
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
    server_.stop();
    thread_.join();
  }

  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  void Make(const std::string& url, std::map<std::string, std::string> options = {}) {
    JobSpec job;
    job.kind = "http";
    job.argv = {url};
    job.options = std::move(options);
    job.options.emplace("method", "POST");
    job.options.emplace("input_format", "lines");
    Status status = MakePayload(job, &sink_, &payload_);
    ASSERT_TRUE(status.ok()) << status.message();
  }
  void Start(uint64_t index, const std::string& item) { payload_->Start(Task{index, 0, item}); }

  // One round of the worker loop.
  void Step() {
    std::vector<zmq_pollitem_t> items;
    long timeout = 100;
    payload_->AddPollItems(&items, &timeout);
    zmq_poll(items.data(), static_cast<int>(items.size()), timeout);
    payload_->Advance(items.data(), items.size());
  }
  // Runs the loop until `done` or 30 s (then fails the test).
  void RunWhileNot(const std::function<bool()>& done) {
    int64_t give_up = NowMillis() + 30000;
    while (!done() && NowMillis() < give_up) Step();
    ASSERT_TRUE(done()) << "gave up after 30 s";
  }
  void RunUntil(size_t n) {
    RunWhileNot([&] { return sink_.size() >= n; });
    ASSERT_EQ(sink_.size(), n);
    EXPECT_EQ(payload_->running(), 0u);
  }
  // One request, run to its result.
  Result Request(const std::string& item) {
    sink_.clear();
    Start(0, item);
    RunUntil(1);
    return sink_.empty() ? Result() : sink_[0];
  }

  void Record(const httplib::Request& req) {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(Seen{req.get_header_value("Content-Type"),
                         req.get_header_value("Authorization"), req.body,
                         req.get_header_value("User-Agent")});
  }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  template <typename Pred, typename Duration>
  void WaitForRelease(Pred pred, Duration limit) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, limit, [&] { return released_ || pred(); });
  }

  static int64_t ExtraInt(const Result& r, const std::string& key) {
    auto it = r.extra.find(key);
    return it == r.extra.end() ? -1 : std::get<int64_t>(it->second);
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;   // GUARDED_BY(mu_)
  int barrier_count_ = 0;   // GUARDED_BY(mu_)
  std::vector<Seen> seen_;  // GUARDED_BY(mu_)
  std::atomic<int> arrived_{0};

  ResultSink sink_;
  std::unique_ptr<Payload> payload_;
};

TEST_F(HttpPayloadTest, JsonBodyIsEmbeddedAsJson) {
  Make(Url("/json"), {{"input_format", "jsonl"}});
  Result r = Request(R"({"q": 1})");
  EXPECT_TRUE(r.ok) << r.value;
  EXPECT_TRUE(r.value_is_json);
  EXPECT_EQ(r.value, R"({"got":"{\"q\": 1}"})");
  EXPECT_EQ(ExtraInt(r, "status"), 200);
  ASSERT_EQ(seen().size(), 1u);
  EXPECT_EQ(seen()[0].content_type, "application/json");
  EXPECT_EQ(seen()[0].body, R"({"q": 1})");
}

TEST_F(HttpPayloadTest, NonJsonBodyIsAString) {
  Make(Url("/text"));
  Result r = Request("hello");
  EXPECT_TRUE(r.ok) << r.value;
  EXPECT_FALSE(r.value_is_json);
  EXPECT_EQ(r.value, "plain text");
  EXPECT_EQ(seen()[0].content_type, "text/plain");
  EXPECT_EQ(seen()[0].body, "hello");
}

TEST_F(HttpPayloadTest, UserHeaderOverridesContentType) {
  Make(Url("/text"), {{"headers", "Content-Type: application/x-custom\n"}});
  EXPECT_TRUE(Request("x").ok);
  EXPECT_EQ(seen()[0].content_type, "application/x-custom");
}

TEST_F(HttpPayloadTest, SendsFanmapsUserAgentUnlessTheUserSetsOne) {
  Make(Url("/text"));
  Request("a");
  Make(Url("/text"), {{"headers", "User-Agent: mine/1"}});
  Request("b");
  std::vector<Seen> got = seen();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].user_agent, std::string("fanmap/") + kFanmapVersion);
  EXPECT_EQ(got[1].user_agent, "mine/1");
}

TEST_F(HttpPayloadTest, NotFoundIsNotRetryable) {
  Make(Url("/do"));
  Result r = Request("404");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.value, "HTTP 404: nope");
  EXPECT_EQ(ExtraInt(r, "status"), 404);
}

TEST_F(HttpPayloadTest, TooManyRequestsIsRetryableAfterRetryAfter) {
  Make(Url("/do"));
  Result r = Request("429\nRetry-After: 2");
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.retry_after_ms, 2000u);
  EXPECT_EQ(r.value, "HTTP 429: nope");
  EXPECT_EQ(ExtraInt(r, "status"), 429);
  // The same (reused) handle must not remember the previous Retry-After.
  r = Request("429");
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.retry_after_ms, 0u);
}

TEST_F(HttpPayloadTest, RetryAfterInThePastMeansNow) {
  Make(Url("/do"));
  Result r = Request("429\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT");
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.retry_after_ms, 0u);
}

TEST_F(HttpPayloadTest, ServiceUnavailableIsRetryable) {
  Make(Url("/do"));
  Result r = Request("503");
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(ExtraInt(r, "status"), 503);
}

TEST_F(HttpPayloadTest, ConnectionRefusedIsRetryable) {
  Make("http://127.0.0.1:" + std::to_string(testing_util::UnusedLoopbackPort()) + "/x");
  Result r = Request("x");
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_NE(r.value.find("Couldn't connect to server"), std::string::npos) << r.value;
  EXPECT_EQ(r.extra.count("status"), 0u);
}

TEST_F(HttpPayloadTest, TimeoutIsRetryable) {
  Make(Url("/do"), {{"timeout_ms", "200"}});
  Result r = Request("slow");
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_NE(r.value.find("Timeout was reached"), std::string::npos) << r.value;
}

TEST_F(HttpPayloadTest, OversizedResponseIsAnError) {
  Make(Url("/do"));
  Result r = Request("big");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.value, "response larger than 64 MiB");
}

TEST_F(HttpPayloadTest, HundredRequestsAreInFlightAtOnce) {
  Make(Url("/barrier"));
  for (int i = 0; i < kConcurrent; ++i) Start(i, std::to_string(i));
  EXPECT_EQ(payload_->running(), static_cast<size_t>(kConcurrent));
  // Each request is answered only when all of them have reached the server:
  // a payload that queued any of them would get "gave up".
  RunUntil(kConcurrent);
  std::map<uint64_t, int> indexes;
  for (const Result& r : sink_) {
    EXPECT_TRUE(r.ok) << r.value;
    EXPECT_EQ(r.value, "all arrived");
    indexes[r.index]++;
  }
  EXPECT_EQ(indexes.size(), static_cast<size_t>(kConcurrent));
}

// curl opens a connection for every new transfer it is given before it
// sends any request: 500 new transfers held every request back until 500
// connects were made. At most kHttpAddsPerTurn reach curl per turn of the
// loop, so the first requests are out while later connections are opened.
// (A listening socket that never answers: curl connects only inside Step(),
// so what is in its accept queue between steps is exact.)
TEST_F(HttpPayloadTest, NewConnectionsOpenAFewAtATimeWhileRequestsGoOut) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 1024), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Make("http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/hold",
       {{"timeout_ms", "60000"}});
  const size_t tasks = 3 * kHttpAddsPerTurn + 10;
  for (size_t i = 0; i < tasks; ++i) Start(i, "x");
  EXPECT_EQ(payload_->running(), tasks);

  std::vector<int> accepted;
  // Takes every connection curl has opened; waits (up to 10 s) for `n`.
  auto accept_up_to = [&](size_t n) {
    int64_t give_up = NowMillis() + 10000;
    for (;;) {
      int fd;
      while ((fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0) accepted.push_back(fd);
      if (accepted.size() >= n || NowMillis() >= give_up) return;
      pollfd p = {listener, POLLIN, 0};
      poll(&p, 1, 100);
    }
  };
  Step();
  accept_up_to(kHttpAddsPerTurn);
  EXPECT_EQ(accepted.size(), kHttpAddsPerTurn) << "the first turn opened too many connections";
  Step();
  accept_up_to(2 * kHttpAddsPerTurn);
  EXPECT_EQ(accepted.size(), 2 * kHttpAddsPerTurn) << "the second turn opened too many";
  // The first turn's connections carry their requests already.
  for (size_t i = 0; i < kHttpAddsPerTurn && i < accepted.size(); ++i) {
    pollfd p = {accepted[i], POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 10000), 1) << "no request on connection " << i;
    char head[10] = {};
    ASSERT_EQ(recv(accepted[i], head, 9, 0), 9);
    EXPECT_STREQ(head, "POST /hol") << "connection " << i;
  }
  // And every task gets its connection in the end.
  RunWhileNot([&] {
    accept_up_to(0);
    return accepted.size() >= tasks;
  });
  EXPECT_EQ(accepted.size(), tasks);
  EXPECT_EQ(payload_->running(), tasks);
  EXPECT_TRUE(sink_.empty());
  payload_->Shutdown();
  for (int fd : accepted) close(fd);
  close(listener);
}

TEST_F(HttpPayloadTest, SendsTheApiKeyAndNeverReturnsIt) {
  Make(Url("/auth"), {{"api_key", kKey}});
  for (int i = 0; i < 3; ++i) Start(i, "200");
  Start(3, "401");
  Start(4, "503");
  RunUntil(5);
  for (const Seen& s : seen()) EXPECT_EQ(s.authorization, std::string("Bearer ") + kKey);
  for (const Result& r : sink_) {
    EXPECT_EQ(r.value.find(kKey), std::string::npos) << r.value;
    EXPECT_NE(r.value.find("[REDACTED]"), std::string::npos) << r.value;
    for (const auto& [name, value] : r.extra) {
      if (const auto* text = std::get_if<std::string>(&value)) {
        EXPECT_EQ(text->find(kKey), std::string::npos) << name;
      }
    }
  }
  for (const Result& r : sink_) EXPECT_EQ(r.value_is_json, r.index < 3) << r.index;
}

TEST_F(HttpPayloadTest, BatchRecordsNeverCarryTheApiKey) {
  Make(Url(""), {{"api_key", kKey}, {"input_format", "openai-batch"}});
  Start(0, R"({"custom_id":"a","method":"POST","url":"/v1/echo-auth","body":{}})");
  RunUntil(1);
  ASSERT_EQ(sink_.size(), 1u);
  ASSERT_EQ(seen().size(), 1u);
  EXPECT_EQ(seen()[0].authorization, std::string("Bearer ") + kKey);
  const Result& r = sink_[0];
  EXPECT_TRUE(r.ok) << r.value;
  EXPECT_EQ(r.value.find(kKey), std::string::npos) << r.value;
  nlohmann::json response = nlohmann::json::parse(r.value);
  EXPECT_EQ(response["request_id"], "Bearer [REDACTED]") << r.value;
  EXPECT_EQ(response["body"]["auth"], "Bearer [REDACTED]") << r.value;
}

// Regression: a reply cut off after its 2xx status line became the Batch
// record's "response" (status 200, the body's first bytes), as if the server
// had answered that.
TEST_F(HttpPayloadTest, ABatchReplyCutOffHalfwayIsNoResponse) {
  Make(Url(""), {{"input_format", "openai-batch"}});
  Start(0, R"({"custom_id":"a","method":"POST","url":"/v1/cut-off","body":{}})");
  RunUntil(1);
  ASSERT_EQ(sink_.size(), 1u);
  const Result& r = sink_[0];
  EXPECT_FALSE(r.ok) << r.value;
  // The status line did come: the reply was cut off after it.
  ASSERT_EQ(r.extra.count("status"), 1u) << r.value;
  EXPECT_EQ(std::get<int64_t>(r.extra.at("status")), 200);
  EXPECT_EQ(r.extra.count(JsonFieldKey("response")), 0u) << r.value;
  EXPECT_EQ(std::get<std::string>(r.extra.at("custom_id")), "a");
}

TEST_F(HttpPayloadTest, ChatModeEndToEnd) {
  Make(Url("/v1/chat/completions"), {{"chat_model", "mock-model"},
                                     {"system", "be brief"},
                                     {"max_tokens", "16"},
                                     {"api_key", kKey}});
  Start(0, "hello");
  Start(1, "naïve question");
  RunUntil(2);
  std::map<uint64_t, Result> by_index;
  for (Result& r : sink_) by_index[r.index] = r;
  ASSERT_EQ(by_index.size(), 2u);
  EXPECT_TRUE(by_index[0].ok) << by_index[0].value;
  EXPECT_FALSE(by_index[0].value_is_json);
  EXPECT_EQ(by_index[0].value, "echo: hello");
  EXPECT_EQ(by_index[1].value, "echo: naïve question");
  EXPECT_EQ(ExtraInt(by_index[0], "status"), 200);
  EXPECT_EQ(ExtraInt(by_index[0], "prompt_tokens"), 5);
  EXPECT_EQ(ExtraInt(by_index[0], "completion_tokens"), 11);
  EXPECT_EQ(ExtraInt(by_index[0], "total_tokens"), 16);

  ASSERT_EQ(seen().size(), 2u);
  nlohmann::json request = nlohmann::json::parse(seen()[0].body);
  EXPECT_EQ(seen()[0].content_type, "application/json");
  EXPECT_EQ(request["model"], "mock-model");
  EXPECT_EQ(request["max_tokens"], 16);
  ASSERT_EQ(request["messages"].size(), 2u);
  EXPECT_EQ(request["messages"][0]["role"], "system");
}

TEST_F(HttpPayloadTest, ChatItemFieldsReachTheRecordButNotTheServer) {
  Make(Url("/v1/chat/completions"), {{"chat_model", "m"}, {"input_format", "jsonl"}});
  Start(0,
        R"({"custom_id":"a-1","metadata":{"k":"v"},"messages":[{"role":"user","content":"x"}]})");
  RunUntil(1);
  ASSERT_TRUE(sink_[0].ok) << sink_[0].value;
  EXPECT_EQ(std::get<std::string>(sink_[0].extra["custom_id"]), "a-1");
  EXPECT_EQ(std::get<std::string>(sink_[0].extra["metadata:json"]), R"({"k":"v"})");
  EXPECT_EQ(std::get<std::string>(sink_[0].extra["id"]), "chatcmpl-1");
  EXPECT_GE(ExtraInt(sink_[0], "latency_ms"), 0);
  ASSERT_EQ(seen().size(), 1u);
  EXPECT_EQ(seen()[0].body.find("custom_id"), std::string::npos) << seen()[0].body;
  EXPECT_EQ(seen()[0].body.find("metadata"), std::string::npos) << seen()[0].body;
}

TEST_F(HttpPayloadTest, ChatRejectsAnUnusableJsonlItemWithoutSendingIt) {
  Make(Url("/v1/chat/completions"), {{"chat_model", "m"}, {"input_format", "jsonl"}});
  Start(0, "[1, 2]");
  ASSERT_EQ(sink_.size(), 1u) << "fails at once";
  EXPECT_FALSE(sink_[0].ok);
  EXPECT_FALSE(sink_[0].retryable);
  EXPECT_EQ(payload_->running(), 0u);
  EXPECT_TRUE(seen().empty());
}

TEST_F(HttpPayloadTest, CancelEndsARequestInFlight) {
  Make(Url("/do"));
  Start(1, "slow");
  RunWhileNot([&] { return arrived_ >= 1; });
  payload_->Cancel(1);
  payload_->Cancel(99);  // unknown: ignored
  EXPECT_EQ(payload_->running(), 0u);
  // The payload goes on working, and nothing ever arrives for task 1.
  Start(2, "200");
  RunUntil(1);
  EXPECT_EQ(sink_[0].index, 2u);
  EXPECT_TRUE(sink_[0].ok) << sink_[0].value;
  for (int i = 0; i < 5; ++i) Step();
  EXPECT_EQ(sink_.size(), 1u);
}

TEST_F(HttpPayloadTest, ShutdownEndsEverythingAndIsIdempotent) {
  Make(Url("/do"));
  Start(1, "slow");
  Start(2, "slow");
  RunWhileNot([&] { return arrived_ >= 2; });
  payload_->Shutdown();
  payload_->Shutdown();
  EXPECT_EQ(payload_->running(), 0u);
  EXPECT_TRUE(sink_.empty());
}

TEST_F(HttpPayloadTest, RejectsNonHttpUrls) {
  for (const char* url : {"ftp://127.0.0.1/x", "file:///etc/passwd", "not a url"}) {
    JobSpec job;
    job.kind = "http";
    job.argv = {url};
    std::unique_ptr<Payload> payload;
    Status status = MakePayload(job, &sink_, &payload);
    EXPECT_FALSE(status.ok()) << url;
    EXPECT_EQ(payload, nullptr);
    EXPECT_EQ(ValidateJob(job).ok(), false);
  }
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

TEST_F(HttpPayloadTest, RateLimitHeadersReachTheResult) {
  Make(Url("/do"));
  Result r = Request(
      "200\nx-ratelimit-limit-requests: 500\nx-ratelimit-remaining-requests: 499\n"
      "x-ratelimit-reset-requests: 120ms\nx-ratelimit-limit-tokens: 150000\n"
      "x-ratelimit-remaining-tokens: 149000\nx-ratelimit-reset-tokens: 6m0s");
  EXPECT_TRUE(r.ok) << r.value;
  EXPECT_EQ(r.cause, FailureCause::kNone);
  EXPECT_EQ(r.limits->limit_requests, 500u);
  EXPECT_EQ(r.limits->remaining_requests, 499u);
  EXPECT_EQ(r.limits->reset_requests_ms, 120u);
  EXPECT_EQ(r.limits->limit_tokens, 150000u);
  EXPECT_EQ(r.limits->remaining_tokens, 149000u);
  EXPECT_EQ(r.limits->reset_tokens_ms, 360000u);
  // The reused handle forgets them.
  r = Request("200");
  EXPECT_TRUE(r.limits->empty());
}

TEST_F(HttpPayloadTest, RetryAfterMsWinsOverRetryAfter) {
  Make(Url("/do"));
  Result r = Request("429\nretry-after-ms: 250\nRetry-After: 3");
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.retry_after_ms, 250u);
  EXPECT_EQ(r.cause, FailureCause::kThrottled);
  r = Request("429\nretry-after-ms: soon\nRetry-After: 3");
  EXPECT_EQ(r.retry_after_ms, 3000u);
}

TEST_F(HttpPayloadTest, FailuresSayTheirCause) {
  Make(Url("/do"));
  EXPECT_EQ(Request("503").cause, FailureCause::kServerError);
  EXPECT_EQ(Request("408").cause, FailureCause::kServerError);
  EXPECT_EQ(Request("404").cause, FailureCause::kOther);
  // Only the request meant to time out has a timeout: a server thread kept off
  // the CPU for a moment must not turn the others into timeouts.
  Make(Url("/do"), {{"timeout_ms", "200"}});
  EXPECT_EQ(Request("slow").cause, FailureCause::kTimeout);
  Make("http://127.0.0.1:" + std::to_string(testing_util::UnusedLoopbackPort()) + "/x");
  EXPECT_EQ(Request("x").cause, FailureCause::kConnection);
}

}  // namespace
}  // namespace fanmap
