#include "worker/pipe_answer.h"

#include <gtest/gtest.h>

#include <string>

#include "common/json_text.h"

namespace fanmap {
namespace {

Result Read(const std::string& line) {
  Result r;
  r.index = 7;
  r.attempt = 2;
  ReadJsonAnswer(line, &r);
  EXPECT_EQ(r.index, 7u);
  EXPECT_EQ(r.attempt, 2u);
  return r;
}

std::string Extra(const Result& r, const std::string& key) {
  auto it = r.extra.find(key);
  if (it == r.extra.end() || !std::holds_alternative<std::string>(it->second)) return "<absent>";
  return std::get<std::string>(it->second);
}

// A malformed answer: a non-retryable error that names `reason`.
void ExpectBad(const std::string& line, const std::string& reason) {
  Result r = Read(line);
  EXPECT_FALSE(r.ok) << line;
  EXPECT_FALSE(r.retryable) << line;
  EXPECT_FALSE(r.value_is_json) << line;
  EXPECT_TRUE(r.extra.empty()) << line;
  EXPECT_EQ(r.value.rfind("co-process answer is not a --pipe-answers json object: ", 0), 0u)
      << r.value;
  EXPECT_NE(r.value.find(reason), std::string::npos) << line << " -> " << r.value;
}

TEST(PipeAnswerFormatTest, NamesRoundTrip) {
  PipeAnswerFormat format = PipeAnswerFormat::kJson;
  ASSERT_TRUE(ParsePipeAnswerFormat("lines", &format));
  EXPECT_EQ(format, PipeAnswerFormat::kLines);
  EXPECT_STREQ(PipeAnswerFormatName(format), "lines");
  ASSERT_TRUE(ParsePipeAnswerFormat("json", &format));
  EXPECT_EQ(format, PipeAnswerFormat::kJson);
  EXPECT_STREQ(PipeAnswerFormatName(format), "json");
  EXPECT_FALSE(ParsePipeAnswerFormat("JSON", &format));
  EXPECT_FALSE(ParsePipeAnswerFormat("", &format));
  EXPECT_EQ(format, PipeAnswerFormat::kJson);
}

TEST(ReadJsonAnswerTest, StringResultIsTheResultText) {
  Result r = Read(R"({"ok":true,"result":"héllo \"x\" \u00e9"})");
  EXPECT_TRUE(r.ok);
  EXPECT_FALSE(r.value_is_json);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.value, "héllo \"x\" é");
}

TEST(ReadJsonAnswerTest, EscapedLineBreaksComeBackAsLineBreaks) {
  Result r = Read(R"({"ok":true,"result":"a\nb\r\nc"})");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value, "a\nb\r\nc");
  r = Read(R"({"ok":false,"error":"line 1\nline 2","traceback":"T\n  at f\n"})");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.value, "line 1\nline 2");
  EXPECT_EQ(Extra(r, "traceback"), "T\n  at f\n");
}

TEST(ReadJsonAnswerTest, OtherResultsAreJsonAsWritten) {
  for (const std::string value :
       {"0", "-1.5e3", "true", "null", "[1, [2, {\"a\": \"]\"}]]", "{\"k\":\"v\",\"n\":{}}"}) {
    Result r = Read("{\"ok\":true,\"result\":" + value + "}");
    EXPECT_TRUE(r.ok) << value << ": " << r.value;
    EXPECT_TRUE(r.value_is_json) << value;
    EXPECT_EQ(r.value, value);
  }
  // Members in any order, whitespace anywhere JSON allows it.
  Result r = Read(" { \"result\" : { \"a\" : [ 1 ] } , \"ok\" : true } ");
  EXPECT_TRUE(r.ok) << r.value;
  EXPECT_EQ(r.value, "{ \"a\" : [ 1 ] }");
}

TEST(ReadJsonAnswerTest, ErrorAnswers) {
  Result r = Read(R"({"ok":false,"error":"ZeroDivisionError: division by zero"})");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.value, "ZeroDivisionError: division by zero");
  EXPECT_TRUE(r.extra.empty());
  r = Read(R"({"ok":false,"error":"busy","retryable":true})");
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.value, "busy");
  r = Read(R"({"retryable":false,"traceback":"Traceback...","error":"e","ok":false})");
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.value, "e");
  EXPECT_EQ(Extra(r, "traceback"), "Traceback...");
}

TEST(ReadJsonAnswerTest, ClearsWhatAnEarlierUseLeft) {
  Result r;
  r.value_is_json = true;
  r.retryable = true;
  r.extra["traceback"] = "old";
  ReadJsonAnswer(R"({"ok":true,"result":"x"})", &r);
  EXPECT_TRUE(r.ok);
  EXPECT_FALSE(r.value_is_json);
  EXPECT_FALSE(r.retryable);
  EXPECT_TRUE(r.extra.empty());
}

TEST(ReadJsonAnswerTest, NotJson) {
  ExpectBad("", "an empty line");
  ExpectBad("   ", "an empty line");
  ExpectBad("hello", "not JSON (");
  ExpectBad(R"({"ok":true,"result":1)", "not JSON (");
  ExpectBad(R"({"ok":true,"result":1} {})", "not JSON (");
  ExpectBad(R"({"ok":true,"result":NaN})", "not JSON (");
  ExpectBad("{\"ok\":true,\"result\":\"\xff\"}", "not JSON (");
  // A raw line break inside a string is not JSON: the payload splits lines
  // there, and each half fails its own item.
  ExpectBad(R"({"ok":true,"result":"a)", "not JSON (");
}

TEST(ReadJsonAnswerTest, NotAnObject) {
  ExpectBad("[1,2]", "an array, not an object");
  ExpectBad(R"("ok")", "a string, not an object");
  ExpectBad("42", "a number, not an object");
  ExpectBad("true", "a boolean, not an object");
  ExpectBad("null", "null, not an object");
}

TEST(ReadJsonAnswerTest, WrongMembers) {
  ExpectBad("{}", "no \"ok\"");
  ExpectBad(R"({"result":1})", "no \"ok\"");
  ExpectBad(R"({"ok":"true","result":1})", "\"ok\" is not true or false");
  ExpectBad(R"({"ok":1,"result":1})", "\"ok\" is not true or false");
  ExpectBad(R"({"ok":true})", "\"ok\":true without \"result\"");
  ExpectBad(R"({"ok":true,"result":1,"error":"e"})", "belong to \"ok\":false answers");
  ExpectBad(R"({"ok":true,"result":1,"retryable":true})", "belong to \"ok\":false answers");
  ExpectBad(R"({"ok":false})", "\"ok\":false without \"error\"");
  ExpectBad(R"({"ok":false,"error":"e","result":1})", "\"result\" belongs to \"ok\":true");
  ExpectBad(R"({"ok":false,"error":{"message":"e"}})", "\"error\" is not a string");
  ExpectBad(R"({"ok":false,"error":"e","retryable":"yes"})", "\"retryable\" is not true or false");
  ExpectBad(R"({"ok":false,"error":"e","traceback":["a"]})", "\"traceback\" is not a string");
  ExpectBad(R"({"ok":true,"value":1})", "unknown key \"value\" (expected ok, result, error");
  ExpectBad(R"({"ok":true,"result":1,"ok":true})", "\"ok\" given twice");
  ExpectBad(R"({"ok":true,"result":1,"result":2})", "\"result\" given twice");
}

TEST(ReadJsonAnswerTest, QuotesTheStartOfABadLineSafely) {
  std::string line = "\x1b[2J" + std::string(1000, 'x');
  Result r = Read(line);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.value.find("(the line: \\x1b[2Jxxx"), std::string::npos) << r.value;
  EXPECT_EQ(r.value.find('\x1b'), std::string::npos);
  EXPECT_LT(r.value.size(), 400u);
}

TEST(ReadJsonAnswerTest, HugeAndDeepAnswersAreReadWithoutRecursion) {
  std::string big(16 << 20, 'a');
  Result r = Read("{\"ok\":true,\"result\":\"" + big + "\"}");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value.size(), big.size());
  // A million levels of nesting would overflow the stack of a recursive
  // parser or printer.
  const size_t depth = 1000000;
  std::string deep = std::string(depth, '[') + std::string(depth, ']');
  r = Read("{\"ok\":true,\"result\":" + deep + "}");
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.value_is_json);
  EXPECT_EQ(r.value.size(), deep.size());
  EXPECT_TRUE(IsJsonValue(r.value, nullptr));
  r = Read("{\"ok\":true,\"result\":" + std::string(depth, '[') + "}");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.value.find("not JSON ("), std::string::npos);
}

TEST(ReadJsonAnswerTest, AByteOrderMarkIsSkipped) {
  Result r = Read("\xEF\xBB\xBF{\"ok\":true,\"result\":\"x\"}");
  EXPECT_TRUE(r.ok) << r.value;
  EXPECT_EQ(r.value, "x");
}

}  // namespace
}  // namespace fanmap
