#include "worker/http_request.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace fanmap {
namespace {

constexpr char kKey[] = "sk-test-0123456789";

class HttpRequestTest : public ::testing::Test {
 protected:
  HttpRequestTest() {
    job_.kind = "http";
    job_.argv = {"http://127.0.0.1:8000/v1/x"};
    job_.options["method"] = "POST";
    job_.options["input_format"] = "lines";
  }

  HttpOptions Parse() {
    HttpOptions options;
    Status status = ParseHttpOptions(job_, &options);
    EXPECT_TRUE(status.ok()) << status.message();
    return options;
  }
  std::string ParseError() {
    HttpOptions options;
    Status status = ParseHttpOptions(job_, &options);
    EXPECT_FALSE(status.ok());
    EXPECT_EQ(status.message().find(kKey), std::string::npos) << status.message();
    return status.message();
  }
  void Chat(const std::string& format = "lines") {
    job_.options["chat_model"] = "m1";
    job_.options["input_format"] = format;
  }
  nlohmann::json Body(const std::string& item) {
    std::string body;
    Status status = BuildRequestBody(Parse(), item, &body);
    EXPECT_TRUE(status.ok()) << status.message();
    return nlohmann::json::parse(body);
  }
  Result Classify(long status, std::string body, int64_t retry_after_s = 0) {
    HttpResponse response;
    response.status = status;
    response.body = std::move(body);
    response.retry_after_s = retry_after_s;
    return ClassifyResponse(Parse(), Task{7, 2, ""}, std::move(response));
  }
  static int64_t ExtraInt(const Result& r, const std::string& key) {
    auto it = r.extra.find(key);
    if (it == r.extra.end()) return -1;
    return std::get<int64_t>(it->second);
  }

  JobSpec job_;
};

TEST_F(HttpRequestTest, AcceptsHttpAndHttpsUrlsOnly) {
  for (const char* url : {"http://127.0.0.1:1/", "https://example.com/v1", "HTTP://host/x"}) {
    job_.argv = {url};
    Parse();
  }
  for (const char* url : {"ftp://x", "file:///etc/passwd", "127.0.0.1:8000/x", "http://", "",
                          "http://a b/", "gopher://h/"}) {
    job_.argv = {url};
    EXPECT_NE(ParseError(), "") << url;
  }
  job_.argv = {"ftp://x"};
  EXPECT_NE(ParseError().find("http:// or https://"), std::string::npos);
  job_.argv = {"https://example.com/"};
  EXPECT_TRUE(Parse().https);
  job_.argv = {"http://example.com/"};
  EXPECT_FALSE(Parse().https);
}

TEST_F(HttpRequestTest, RejectsBadOptions) {
  job_.options["method"] = "PO ST";
  EXPECT_NE(ParseError().find("method"), std::string::npos);
  job_.options["method"] = "PUT";
  job_.options["headers"] = "NoColon\n";
  EXPECT_NE(ParseError().find("NoColon"), std::string::npos);
  job_.options["headers"] = "X-A: 1\rInjected: yes\n";
  ParseError();
  job_.options.erase("headers");
  job_.options["timeout_ms"] = "soon";
  EXPECT_NE(ParseError().find("timeout_ms"), std::string::npos);
  job_.options.erase("timeout_ms");
  job_.options["input_format"] = "csv";
  ParseError();
  Chat();
  job_.options["max_tokens"] = "0";
  EXPECT_NE(ParseError().find("max_tokens"), std::string::npos);
  job_.options["max_tokens"] = "12";
  job_.options["temperature"] = "warm";
  EXPECT_NE(ParseError().find("temperature"), std::string::npos);
  job_.options["temperature"] = "0.5";
  Parse();
}

TEST_F(HttpRequestTest, ApiKeyWithLineBreakIsRejectedWithoutEchoingIt) {
  job_.options["api_key"] = std::string(kKey) + "\r\nX-Evil: 1";
  EXPECT_NE(ParseError().find("API key"), std::string::npos);
}

TEST_F(HttpRequestTest, DefaultHeadersDependOnTheInput) {
  EXPECT_EQ(Parse().headers, (std::vector<std::string>{"Content-Type: text/plain", "Expect:"}));
  job_.options["input_format"] = "jsonl";
  job_.options["api_key"] = kKey;
  EXPECT_EQ(Parse().headers,
            (std::vector<std::string>{"Content-Type: application/json",
                                      std::string("Authorization: Bearer ") + kKey, "Expect:"}));
  Chat("lines");
  EXPECT_EQ(Parse().headers[0], "Content-Type: application/json");
}

TEST_F(HttpRequestTest, UserHeadersOverrideDefaultsOfTheSameName) {
  job_.options["api_key"] = kKey;
  job_.options["headers"] =
      "content-type:  application/x-ndjson \nAuthorization: Basic abc\nX-Empty:\n";
  EXPECT_EQ(Parse().headers,
            (std::vector<std::string>{"Expect:", "content-type: application/x-ndjson",
                                      "Authorization: Basic abc", "X-Empty:"}));
}

TEST_F(HttpRequestTest, GenericBodyIsTheItem) {
  HttpOptions options = Parse();
  std::string body;
  ASSERT_TRUE(BuildRequestBody(options, "plain line", &body).ok());
  EXPECT_EQ(body, "plain line");
  EXPECT_TRUE(options.SendsBody());
  job_.options["method"] = "GET";
  EXPECT_FALSE(Parse().SendsBody());
}

TEST_F(HttpRequestTest, ChatWrapsATextItem) {
  Chat();
  job_.options["system"] = "be brief";
  job_.options["max_tokens"] = "64";
  job_.options["temperature"] = "0.700000";
  nlohmann::json body = Body("hello \"world\"");
  EXPECT_EQ(body["model"], "m1");
  ASSERT_EQ(body["messages"].size(), 2u);
  EXPECT_EQ(body["messages"][0], (nlohmann::json{{"role", "system"}, {"content", "be brief"}}));
  EXPECT_EQ(body["messages"][1],
            (nlohmann::json{{"role", "user"}, {"content", "hello \"world\""}}));
  EXPECT_EQ(body["max_tokens"], 64);
  EXPECT_DOUBLE_EQ(body["temperature"].get<double>(), 0.7);
}

TEST_F(HttpRequestTest, ChatWithoutOptionalFieldsSendsOnlyModelAndUserMessage) {
  Chat();
  nlohmann::json body = Body("hi");
  EXPECT_EQ(body, (nlohmann::json{{"model", "m1"},
                                  {"messages", {{{"role", "user"}, {"content", "hi"}}}}}));
}

TEST_F(HttpRequestTest, ChatReplacesInvalidUtf8InATextItem) {
  Chat();
  nlohmann::json body = Body("bad \xff byte");
  EXPECT_EQ(body["messages"][0]["content"], "bad \xEF\xBF\xBD byte");
}

TEST_F(HttpRequestTest, ChatTakesAJsonlStringAsTheUserMessage) {
  Chat("jsonl");
  nlohmann::json body = Body(R"("line one\nline two")");
  EXPECT_EQ(body["messages"][0]["content"], "line one\nline two");
}

TEST_F(HttpRequestTest, ChatFillsOnlyAbsentFieldsOfAMessagesObject) {
  Chat("jsonl");
  job_.options["system"] = "default system";
  job_.options["max_tokens"] = "64";
  job_.options["temperature"] = "1";
  nlohmann::json body = Body(
      R"({"model":"mine","max_tokens":5,"messages":[{"role":"user","content":"q"}],"seed":1})");
  EXPECT_EQ(body["model"], "mine");
  EXPECT_EQ(body["max_tokens"], 5);
  EXPECT_EQ(body["temperature"], 1.0);
  EXPECT_EQ(body["seed"], 1);
  ASSERT_EQ(body["messages"].size(), 2u);
  EXPECT_EQ(body["messages"][0]["content"], "default system");

  body = Body(R"({"messages":[{"role":"system","content":"own"},{"role":"user","content":"q"}]})");
  EXPECT_EQ(body["model"], "m1");
  ASSERT_EQ(body["messages"].size(), 2u);
  EXPECT_EQ(body["messages"][0]["content"], "own");
}

TEST_F(HttpRequestTest, ChatRejectsOtherJsonlShapes) {
  Chat("jsonl");
  HttpOptions options = Parse();
  for (const char* item : {"42", "[1,2]", R"({"prompt":"x"})", R"({"messages":"x"})", "null"}) {
    std::string body;
    Status status = BuildRequestBody(options, item, &body);
    EXPECT_FALSE(status.ok()) << item;
    EXPECT_NE(status.message().find("\"messages\""), std::string::npos) << status.message();
  }
}

TEST_F(HttpRequestTest, JsonBodyIsEmbeddedOnOneLine) {
  Result r = Classify(200, "{\n  \"a\": \"x y\\n\",\n  \"b\": [1, 2]\n}\n");
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.value_is_json);
  EXPECT_EQ(r.value, R"({"a":"x y\n","b":[1,2]})");
  EXPECT_EQ(nlohmann::json::parse(r.value)["a"], "x y\n");
  EXPECT_EQ(ExtraInt(r, "status"), 200);
  EXPECT_EQ(r.index, 7u);
  EXPECT_EQ(r.attempt, 2u);

  r = Classify(201, R"({"a": 1} )");
  EXPECT_EQ(r.value, R"({"a": 1})");
  EXPECT_TRUE(r.value_is_json);
}

TEST_F(HttpRequestTest, NonJsonBodyIsAString) {
  for (const char* body : {"hello", "", "{\"a\":", "1 2", "\"bad \xff\""}) {
    Result r = Classify(200, body);
    EXPECT_TRUE(r.ok);
    EXPECT_FALSE(r.value_is_json) << body;
    EXPECT_EQ(r.value, body);
  }
}

TEST_F(HttpRequestTest, ClientErrorsAreFinal) {
  Result r = Classify(404, "no such thing\n");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.value, "HTTP 404: no such thing");
  EXPECT_EQ(ExtraInt(r, "status"), 404);
  EXPECT_EQ(Classify(400, "").value, "HTTP 400");
  EXPECT_FALSE(Classify(301, "moved").retryable);
}

// `python3 -m http.server` answers POST 501: every retry for 10 minutes got
// the same answer.
TEST_F(HttpRequestTest, NotImplementedAndVersionNotSupportedAreFinal) {
  for (long status : {501, 505}) {
    Result r = Classify(status, "no");
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.retryable) << status;
  }
}

// nlohmann's parser stops at a NUL: `{"a":1}\0,"ok":false` was embedded as
// JSON, and the record line was no longer JSON (nor readable by --resume).
TEST_F(HttpRequestTest, ABodyWithANulByteIsTextNotJson) {
  std::string body = std::string("{\"a\":1}") + '\0' + ",\"ok\":false,\"index\":7";
  Result r = Classify(200, body);
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.value_is_json);
  EXPECT_EQ(r.value, body);
}

// 150,000 levels of nesting overflowed the worker's stack when the message
// was written out again (SIGSEGV, the worker lost with all its requests).
TEST_F(HttpRequestTest, AReplyNestedTooDeeplyIsAnErrorNotACrash) {
  Chat();
  std::string deep = std::string(200000, '[') + std::string(200000, ']');
  Result r = Classify(200, R"({"choices":[{"message":{"role":"assistant","content":null,
      "tool_calls":)" + deep + "}}]}");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.value.find("nested deeper than"), std::string::npos) << r.value.substr(0, 200);
  job_.options["input_format"] = "jsonl";
  std::string body;
  Status status = BuildRequestBody(Parse(), R"({"messages":)" + deep + "}", &body);
  EXPECT_FALSE(status.ok());
}

TEST_F(HttpRequestTest, OverloadAndServerErrorsAreRetryable) {
  for (long status : {408, 429, 500, 502, 503, 504}) {
    Result r = Classify(status, "busy");
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.retryable) << status;
    EXPECT_EQ(r.value, "HTTP " + std::to_string(status) + ": busy");
    EXPECT_EQ(ExtraInt(r, "status"), status);
  }
}

TEST_F(HttpRequestTest, RetryAfterIsClampedToTenMinutes) {
  EXPECT_EQ(Classify(429, "", 2).retry_after_ms, 2000u);
  EXPECT_EQ(Classify(503, "", 0).retry_after_ms, 0u);
  EXPECT_EQ(Classify(429, "", -1700000000).retry_after_ms, 0u) << "a date in the past";
  EXPECT_EQ(Classify(429, "", 1000000).retry_after_ms, 600000u);
  EXPECT_EQ(Classify(404, "", 5).retry_after_ms, 0u) << "only retryable errors wait";
}

TEST_F(HttpRequestTest, ErrorTextCarriesABoundedExcerpt) {
  std::string body(400, 'a');
  body += std::string(100, 'b') + "\xE2\x82\xAC" + std::string(2000, 'c');  // euro sign at 500
  Result r = Classify(500, body);
  std::string prefix = "HTTP 500: ";
  ASSERT_EQ(r.value.compare(0, prefix.size(), prefix), 0);
  std::string excerpt = r.value.substr(prefix.size());
  EXPECT_LE(excerpt.size(), kHttpExcerptBytes);
  EXPECT_EQ(excerpt.substr(excerpt.size() - 3), "...");
  EXPECT_EQ(excerpt.find('c'), std::string::npos);
}

TEST_F(HttpRequestTest, ExcerptNeverSplitsAUtf8Character) {
  std::string euros;
  for (int i = 0; i < 10; ++i) euros += "\xE2\x82\xAC";  // 3 bytes each
  for (size_t max = 4; max < 20; ++max) {
    std::string e = Excerpt(euros, max);
    EXPECT_LE(e.size(), max);
    EXPECT_EQ((e.size() - 3) % 3, 0u) << max;
  }
  EXPECT_EQ(Excerpt("  short \n"), "short");
}

TEST_F(HttpRequestTest, TransportFailuresAreRetryableWithCurlsText) {
  HttpResponse response;
  response.curl_code = CURLE_COULDNT_CONNECT;
  response.curl_error = "Failed to connect to 127.0.0.1 port 9: Connection refused";
  Result r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(
      r.value,
      "Couldn't connect to server: Failed to connect to 127.0.0.1 port 9: Connection refused");
  EXPECT_EQ(r.extra.count("status"), 0u);

  response.curl_code = CURLE_OPERATION_TIMEDOUT;
  response.curl_error.clear();
  r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.value, "Timeout was reached");

  for (CURLcode code : {CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_SEND_ERROR, CURLE_PARTIAL_FILE,
                        CURLE_HTTP2_STREAM, CURLE_COULDNT_RESOLVE_HOST}) {
    response.curl_code = code;
    EXPECT_TRUE(ClassifyResponse(Parse(), Task{1, 0, ""}, response).retryable) << code;
  }
  response.curl_code = CURLE_PEER_FAILED_VERIFICATION;
  EXPECT_FALSE(ClassifyResponse(Parse(), Task{1, 0, ""}, response).retryable);
}

TEST_F(HttpRequestTest, AHeaderLineOverLibcurlsLimitIsAFinalErrorThatSaysSo) {
  // Regression: libcurl refuses such a line with CURLE_OUT_OF_MEMORY, and the
  // record said "Out of memory" and was retried.
  HttpResponse response;
  response.curl_code = CURLE_OUT_OF_MEMORY;
  response.status = 200;
  Result r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.value, "response header line larger than 100 KiB (libcurl: Out of memory)");
  // Before any status line it may be this process's memory: retried.
  response.status = 0;
  r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.value, "Out of memory");
}

TEST_F(HttpRequestTest, OversizedBodyIsAFinalError) {
  HttpResponse response;
  response.curl_code = CURLE_WRITE_ERROR;
  response.status = 200;
  response.body_too_large = true;
  Result r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.value, "response larger than 64 MiB");
  EXPECT_EQ(ExtraInt(r, "status"), 200);
}

TEST_F(HttpRequestTest, ApiKeyIsRedactedFromEveryText) {
  job_.options["api_key"] = kKey;
  std::string echo = std::string(R"({"auth":"Bearer )") + kKey + R"("})";
  Result r = Classify(200, echo);
  EXPECT_TRUE(r.value_is_json);
  EXPECT_EQ(r.value, R"({"auth":"Bearer [REDACTED]"})");
  r = Classify(401, std::string("bad key ") + kKey + " " + kKey);
  EXPECT_EQ(r.value, "HTTP 401: bad key [REDACTED] [REDACTED]");

  HttpResponse response;
  response.curl_code = CURLE_RECV_ERROR;
  response.curl_error = std::string("oops ") + kKey;
  r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  EXPECT_EQ(r.value.find(kKey), std::string::npos) << r.value;
}

TEST_F(HttpRequestTest, ApiKeySpelledWithJsonEscapesIsRedactedToo) {
  // A server that escapes "-" (or "/") echoes the key in a spelling that a
  // plain search misses and every JSON reader decodes.
  job_.options["api_key"] = "sk-abc/def";
  Result r = Classify(200, R"({"auth":"Bearer sk\u002dabc\/def","n":1})");
  EXPECT_TRUE(r.value_is_json);
  EXPECT_EQ(nlohmann::json::parse(r.value),
            nlohmann::json::parse(R"({"auth":"Bearer [REDACTED]","n":1})"))
      << r.value;
  // And in a chat reply, whose content is decoded into the result.
  Chat();
  job_.options["api_key"] = "sk-abc/def";
  r = Classify(200, R"({"choices":[{"message":{"role":"assistant",
      "content":"key: sk\u002dabc\/def"},"finish_reason":"stop"}]})");
  EXPECT_TRUE(r.ok) << r.value;
  EXPECT_EQ(r.value, "key: [REDACTED]");
}

TEST_F(HttpRequestTest, RedactionKeepsKeyOrderAndSurvivesDeepNesting) {
  job_.options["api_key"] = "sk-abc";
  // Rewritten only where the key was: the order of keys, repeats and the
  // spelling of numbers stay.
  Result r = Classify(200, R"({"z":1.50,"a":"sk\u002dabc","z":2})");
  EXPECT_EQ(r.value, R"({"z":1.50,"a":"[REDACTED]","z":2})");
  // An error quoting a JSON body is redacted as well.
  r = Classify(401, R"({"error":"bad key sk\u002dabc"})");
  EXPECT_EQ(r.value.find("abc"), std::string::npos) << r.value;
  // 200,000 levels of nesting and an escape: no recursion to overflow.
  std::string deep = std::string(200000, '[') + "\"sk\\u002dabc\"" + std::string(200000, ']');
  r = Classify(200, deep);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value.find("u002dabc"), std::string::npos);
  EXPECT_NE(r.value.find("[REDACTED]"), std::string::npos);
}

TEST_F(HttpRequestTest, TextBodyKeepsItsByteOrderMark) {
  Result r = Classify(200, "\xEF\xBB\xBFplain text");
  EXPECT_TRUE(r.ok);
  EXPECT_FALSE(r.value_is_json);
  EXPECT_EQ(r.value, "\xEF\xBB\xBFplain text");
}

TEST_F(HttpRequestTest, JsonBodyWithAByteOrderMarkIsEmbeddedWithoutIt) {
  Result r = Classify(200, "\xEF\xBB\xBF{\"bom\":1}");
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.value_is_json);
  EXPECT_EQ(r.value, R"({"bom":1})");
}

TEST_F(HttpRequestTest, ChatResponseGivesContentAndTokenCounts) {
  Chat();
  Result r = Classify(200, R"({"id":"x","choices":[{"index":0,"message":{"role":"assistant",
      "content":"echo: hi"},"finish_reason":"stop"}],
      "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}})");
  EXPECT_TRUE(r.ok);
  EXPECT_FALSE(r.value_is_json);
  EXPECT_EQ(r.value, "echo: hi");
  EXPECT_EQ(ExtraInt(r, "status"), 200);
  EXPECT_EQ(ExtraInt(r, "prompt_tokens"), 3);
  EXPECT_EQ(ExtraInt(r, "completion_tokens"), 4);
  EXPECT_EQ(ExtraInt(r, "total_tokens"), 7);
}

TEST_F(HttpRequestTest, ChatResponseWithoutUsageHasNoTokenFields) {
  Chat();
  Result r = Classify(200, R"({"choices":[{"message":{"content":""}}]})");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "");
  EXPECT_EQ(r.extra.count("total_tokens"), 0u);
}

TEST_F(HttpRequestTest, ChatResponseWithoutContentIsAFinalErrorWithExcerpt) {
  Chat();
  for (const char* body : {R"({"choices":[]})", R"({"choices":[{"message":{"content":null}}]})",
                           R"({"choices":[{"message":{"content":null,"tool_calls":null}}]})",
                           "not json", R"({"error":"x"})"}) {
    Result r = Classify(200, body);
    EXPECT_FALSE(r.ok) << body;
    EXPECT_FALSE(r.retryable);
    EXPECT_NE(r.value.find(std::string("HTTP 200: ") + body), std::string::npos) << r.value;
  }
}

TEST_F(HttpRequestTest, ChatErrorsUseTheGenericShape) {
  Chat();
  Result r = Classify(429, R"({"error":{"message":"slow down"}})", 3);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.retry_after_ms, 3000u);
  EXPECT_EQ(r.value, R"(HTTP 429: {"error":{"message":"slow down"}})");
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

TEST_F(HttpRequestTest, CertificateFailureIsFatalAndNamesTheHost) {
  job_.argv = {"https://api.example.test:8443/v1/chat/completions"};
  HttpResponse response;
  response.curl_code = CURLE_PEER_FAILED_VERIFICATION;
  response.curl_error = "SSL certificate problem: unable to get local issuer certificate";
  Result r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_TRUE(r.fatal);
  EXPECT_EQ(r.value,
            "TLS: the certificate of api.example.test:8443 is not trusted: SSL certificate "
            "problem: unable to get local issuer certificate (a private CA? give its "
            "certificate with --cacert FILE)");
  // A handshake cut short is worth another attempt, and says nothing of the job.
  response.curl_code = CURLE_SSL_CONNECT_ERROR;
  r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  EXPECT_TRUE(r.retryable);
  EXPECT_FALSE(r.fatal);
}

TEST_F(HttpRequestTest, ChatRecordSaysFinishReasonModelIdAndLatency) {
  Chat();
  HttpResponse response;
  response.status = 200;
  response.latency_ms = 123;
  response.body = R"({"id":"chatcmpl-9","model":"m1-2024","choices":[{"index":0,
      "message":{"role":"assistant","content":"echo: a"},"finish_reason":"length"}]})";
  Result r = ClassifyResponse(Parse(), Task{1, 0, ""}, response);
  ASSERT_TRUE(r.ok) << r.value;
  EXPECT_EQ(r.value, "echo: a");
  EXPECT_EQ(std::get<std::string>(r.extra["finish_reason"]), "length");
  EXPECT_EQ(std::get<std::string>(r.extra["model"]), "m1-2024");
  EXPECT_EQ(std::get<std::string>(r.extra["id"]), "chatcmpl-9");
  EXPECT_EQ(ExtraInt(r, "latency_ms"), 123);
}

// Tool calls and refusals come with content null: the record keeps the whole
// message, so nothing the model said is lost.
TEST_F(HttpRequestTest, ChatReplyWithoutTextIsTheMessageObject) {
  Chat();
  Result r = Classify(200, R"({"choices":[{"message":{"role":"assistant","content":null,
      "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},
      "finish_reason":"tool_calls"}]})");
  ASSERT_TRUE(r.ok) << r.value;
  EXPECT_TRUE(r.value_is_json);
  nlohmann::json message = nlohmann::json::parse(r.value);
  EXPECT_EQ(message["tool_calls"][0]["function"]["name"], "f");
  EXPECT_TRUE(message["content"].is_null());
  EXPECT_EQ(r.value.find('\n'), std::string::npos);
  EXPECT_EQ(std::get<std::string>(r.extra["finish_reason"]), "tool_calls");

  r = Classify(200, R"({"choices":[{"message":{"role":"assistant","refusal":"I can't."}}]})");
  ASSERT_TRUE(r.ok) << r.value;
  EXPECT_TRUE(r.value_is_json);
  EXPECT_EQ(nlohmann::json::parse(r.value)["refusal"], "I can't.");
}

// vLLM and Ollama send tool calls with "content":"" (or text beside them):
// the record held "" and the tool calls were gone. Content as a list of parts
// was an error record, the paid answer left in an excerpt.
TEST_F(HttpRequestTest, ToolCallsBesideTextAndContentInPartsKeepTheWholeMessage) {
  Chat();
  for (const char* content : {R"("")", R"("Let me look.")"}) {
    Result r =
        Classify(200, std::string(R"({"choices":[{"message":{"role":"assistant","content":)") +
                          content + R"(,"tool_calls":[{"id":"c","type":"function",
        "function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]})");
    ASSERT_TRUE(r.ok) << r.value;
    EXPECT_TRUE(r.value_is_json);
    EXPECT_EQ(nlohmann::json::parse(r.value)["tool_calls"][0]["function"]["name"], "f");
  }
  Result r = Classify(
      200,
      R"({"choices":[{"message":{"role":"assistant","content":[{"type":"text","text":"hi"}]}}]})");
  ASSERT_TRUE(r.ok) << r.value;
  EXPECT_TRUE(r.value_is_json);
  EXPECT_EQ(nlohmann::json::parse(r.value)["content"][0]["text"], "hi");
  // Plain text stays plain text, with the empty fields vLLM sends beside it.
  r = Classify(200, R"({"choices":[{"message":{"role":"assistant","content":"hi"}}]})");
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.value_is_json);
  EXPECT_EQ(r.value, "hi");
  r = Classify(200, R"({"choices":[{"message":{"role":"assistant","content":"hi",
      "tool_calls":[],"refusal":null,"function_call":null}}]})");
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.value_is_json);
  EXPECT_EQ(r.value, "hi");
}

TEST_F(HttpRequestTest, CustomIdAndMetadataStayOutOfTheRequestAndGoToTheRecord) {
  Chat("jsonl");
  std::string body;
  Result::Extra fields;
  Status status = BuildRequestBody(
      Parse(),
      R"({"custom_id":"req-7","metadata":{"user":"u1","n":[1,2]},"messages":[{"role":"user","content":"hi"}]})",
      &body, &fields);
  ASSERT_TRUE(status.ok()) << status.message();
  nlohmann::json request = nlohmann::json::parse(body);
  EXPECT_FALSE(request.contains("custom_id"));
  EXPECT_FALSE(request.contains("metadata"));
  EXPECT_EQ(request["messages"][0]["content"], "hi");
  EXPECT_EQ(std::get<std::string>(fields["custom_id"]), "req-7");
  EXPECT_EQ(std::get<std::string>(fields["metadata:json"]), R"({"user":"u1","n":[1,2]})");
  // A custom_id that is not a string is kept as the JSON it is.
  fields.clear();
  ASSERT_TRUE(BuildRequestBody(Parse(), R"({"custom_id":12,"messages":[]})", &body, &fields).ok());
  EXPECT_EQ(std::get<std::string>(fields["custom_id:json"]), "12");
}

}  // namespace
}  // namespace fanmap
