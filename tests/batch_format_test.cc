#include "worker/batch_format.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace fanmap {
namespace {

constexpr char kBase[] = "https://api.example.test";

class BatchFormatTest : public ::testing::Test {
 protected:
  // The error of a line that must be refused; checks it names `field`.
  std::string Refused(const std::string& line, const std::string& field) {
    BatchRequest request;
    Status status = ParseBatchLine(kBase, line, &request);
    EXPECT_FALSE(status.ok()) << line;
    EXPECT_NE(status.message().find(field), std::string::npos) << status.message();
    return request.custom_id;
  }
};

TEST_F(BatchFormatTest, ReadsALineIntoUrlBodyAndCustomId) {
  BatchRequest request;
  Status status = ParseBatchLine(
      kBase,
      R"({"custom_id":"r-1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}})",
      &request);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(request.custom_id, "r-1");
  EXPECT_EQ(request.url, "https://api.example.test/v1/chat/completions");
  EXPECT_EQ(nlohmann::json::parse(request.body),
            nlohmann::json::parse(R"({"model":"m","messages":[]})"));
}

TEST_F(BatchFormatTest, BaseUrlEndingInV1TakesV1PathsOnce) {
  BatchRequest request;
  std::string line = R"({"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{}})";
  ASSERT_TRUE(ParseBatchLine(BatchBaseUrl("http://h:1/v1/"), line, &request).ok());
  EXPECT_EQ(request.url, "http://h:1/v1/embeddings");
  ASSERT_TRUE(ParseBatchLine(BatchBaseUrl("http://h:1/proxy"), line, &request).ok());
  EXPECT_EQ(request.url, "http://h:1/proxy/v1/embeddings");
  line = R"({"custom_id":"x","method":"POST","url":"/v1x","body":{}})";
  ASSERT_TRUE(ParseBatchLine(BatchBaseUrl("http://h:1/v1"), line, &request).ok());
  EXPECT_EQ(request.url, "http://h:1/v1/v1x");
}

TEST_F(BatchFormatTest, RefusesEachBrokenFieldByName) {
  Refused("[1]", "not an object");
  Refused("{", "not valid JSON");
  EXPECT_EQ(Refused(R"({"method":"POST","url":"/v1/x","body":{}})", "custom_id"), "");
  Refused(R"({"custom_id":"","method":"POST","url":"/v1/x","body":{}})", "custom_id");
  Refused(R"({"custom_id":7,"method":"POST","url":"/v1/x","body":{}})", "custom_id");
  // A line with a usable custom_id gives it for the error record.
  EXPECT_EQ(Refused(R"({"custom_id":"c","method":"GET","url":"/v1/x","body":{}})", "POST"), "c");
  Refused(R"({"custom_id":"c","url":"/v1/x","body":{}})", "method");
  Refused(R"({"custom_id":"c","method":"POST","body":{}})", "url");
  Refused(R"({"custom_id":"c","method":"POST","url":"v1/x","body":{}})", "url");
  Refused(R"({"custom_id":"c","method":"POST","url":"https://evil/v1/x","body":{}})", "url");
  Refused(R"({"custom_id":"c","method":"POST","url":"/v1/x y","body":{}})", "url");
  Refused(R"({"custom_id":"c","method":"POST","url":"/v1/x\r\nHost: e","body":{}})", "url");
  Refused(R"({"custom_id":"c","method":"POST","url":"/v1/x"})", "body");
  Refused(R"({"custom_id":"c","method":"POST","url":"/v1/x","body":"text"})", "body");
}

// The API key goes to --http's base path: a url that curl or the server
// would resolve above it is refused, and never sent.
TEST_F(BatchFormatTest, RefusesAUrlThatCouldLeaveTheBasePath) {
  const std::string base = "http://127.0.0.1:1/openai/v1";
  // JSON string contents: "\\\\" here is one backslash in the url.
  for (const char* url : {
           "/v1/../../admin/secret",
           "/..",
           "/v1/..",
           "/v1/../",
           "/v1/./chat/completions",
           "/./v1/chat/completions",
           "/v1/%2e%2e/%2e%2e/admin",
           "/v1/%2E%2E/%2E%2E/admin",
           "/v1/.%2e/admin",
           "/v1/%2E./admin",
           "/v1/%2e/chat/completions",
           "/v1/..;/admin",
           "/v1/..\\\\admin",
           "/v1\\\\..\\\\..\\\\admin",
           "/v1/chat\\\\completions",
           "/v1/..%2f..%2fadmin",
           "/v1/..%2F..%2Fadmin",
           "/v1/..%5c..%5cadmin",
           "/v1/..%5C..%5Cadmin",
           "/v1/../admin?x=1",
       }) {
    std::string line =
        std::string(R"({"custom_id":"c","method":"POST","url":")") + url + R"(","body":{}})";
    BatchRequest request;
    Status status = ParseBatchLine(base, line, &request);
    EXPECT_FALSE(status.ok()) << url << " was accepted as " << request.url;
    EXPECT_NE(status.message().find("\"url\""), std::string::npos) << status.message();
    EXPECT_NE(status.message().find("base path"), std::string::npos) << status.message();
    EXPECT_EQ(request.custom_id, "c") << url;
  }
}

TEST_F(BatchFormatTest, DotsThatAreNotSegmentsAndDotsInTheQueryAreKept) {
  const std::string base = "http://127.0.0.1:1/openai/v1";
  for (const char* url :
       {"/v1/files/a..b", "/v1/.well-known/x", "/v1/.../x", "/v1/%2e%2e%2e", "/v1/x..",
        "/v1/chat/completions?next=../up", "/v1/chat/completions?api-version=2024-01-01"}) {
    std::string line =
        std::string(R"({"custom_id":"c","method":"POST","url":")") + url + R"(","body":{}})";
    BatchRequest request;
    Status status = ParseBatchLine(base, line, &request);
    ASSERT_TRUE(status.ok()) << url << ": " << status.message();
    EXPECT_EQ(request.url, "http://127.0.0.1:1/openai" + std::string(url));
  }
}

TEST_F(BatchFormatTest, ResponseObjectEmbedsJsonBodiesAndQuotesOthers) {
  EXPECT_EQ(BatchResponseJson(200, "req_1", R"({"b":1, "a":2})"),
            R"({"status_code":200,"request_id":"req_1","body":{"b":1,"a":2}})");
  EXPECT_EQ(BatchResponseJson(502, "", "Bad Gateway\n"),
            R"({"status_code":502,"request_id":null,"body":"Bad Gateway\n"})");
}

TEST_F(BatchFormatTest, OkResultCarriesTheResponseAsItsValueAFailedOneAsAField) {
  Result ok;
  ok.ok = true;
  ok.value = R"({"x":1})";
  ok.value_is_json = true;
  MakeBatchResult("c-1", 200, "req_9", R"({"x":1})", &ok);
  EXPECT_EQ(ok.value, R"({"status_code":200,"request_id":"req_9","body":{"x":1}})");
  EXPECT_TRUE(ok.value_is_json);
  EXPECT_EQ(std::get<std::string>(ok.extra["custom_id"]), "c-1");

  Result failed;
  failed.value = "HTTP 400: bad";
  MakeBatchResult("c-2", 400, "", "bad", &failed);
  EXPECT_EQ(failed.value, "HTTP 400: bad");
  EXPECT_EQ(std::get<std::string>(failed.extra["response:json"]),
            R"({"status_code":400,"request_id":null,"body":"bad"})");

  Result no_reply;
  no_reply.value = "Couldn't connect to server";
  MakeBatchResult("c-3", 0, "", "", &no_reply);
  EXPECT_EQ(no_reply.extra.count("response:json"), 0u);
  EXPECT_EQ(std::get<std::string>(no_reply.extra["custom_id"]), "c-3");
}

// A line nested deeper than the worker can write out again is refused, not a
// crash (150,000 levels overflowed the stack in nlohmann's dump()).
TEST_F(BatchFormatTest, ALineNestedTooDeeplyIsRefused) {
  std::string deep = std::string(200000, '[') + std::string(200000, ']');
  Refused(
      R"({"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"a":)" + deep + "}}",
      "nested deeper than");
}

// Azure's base URLs carry ?api-version=: the path was appended after it
// ("/openai/v1?api-version=X/v1/chat/completions"), and after a fragment.
TEST_F(BatchFormatTest, ABaseUrlsQueryStaysAtTheEndAndItsFragmentIsDropped) {
  BatchRequest request;
  std::string line = R"({"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{}})";
  ASSERT_TRUE(
      ParseBatchLine(BatchBaseUrl("https://h/openai/v1/?api-version=2024-10-21"), line, &request)
          .ok());
  EXPECT_EQ(request.url, "https://h/openai/v1/chat/completions?api-version=2024-10-21");
  ASSERT_TRUE(ParseBatchLine(BatchBaseUrl("http://h:1/v1#frag"), line, &request).ok());
  EXPECT_EQ(request.url, "http://h:1/v1/chat/completions");
  ASSERT_TRUE(ParseBatchLine(BatchBaseUrl("http://h:1/p?a=1#f"), line, &request).ok());
  EXPECT_EQ(request.url, "http://h:1/p/v1/chat/completions?a=1");
}

}  // namespace
}  // namespace fanmap
