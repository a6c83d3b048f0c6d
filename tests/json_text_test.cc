#include "common/json_text.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace fanmap {
namespace {

class AppendJsonStringTest : public ::testing::Test {
 protected:
  static std::string Quote(std::string_view text) {
    std::string out;
    AppendJsonString(text, &out);
    return out;
  }
};

TEST_F(AppendJsonStringTest, QuotesPlainAscii) {
  EXPECT_EQ(Quote("hello, world 123"), "\"hello, world 123\"");
}

TEST_F(AppendJsonStringTest, QuotesEmptyString) { EXPECT_EQ(Quote(""), "\"\""); }

TEST_F(AppendJsonStringTest, AppendsAfterExistingText) {
  std::string out = "x=";
  AppendJsonString("y", &out);
  EXPECT_EQ(out, "x=\"y\"");
}

TEST_F(AppendJsonStringTest, EscapesQuoteAndBackslash) {
  EXPECT_EQ(Quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
}

TEST_F(AppendJsonStringTest, EscapesNewlineAndTab) {
  EXPECT_EQ(Quote("a\nb\tc\rd"), "\"a\\nb\\tc\\rd\"");
}

TEST_F(AppendJsonStringTest, EscapesOtherControlCharactersAsUnicode) {
  EXPECT_EQ(Quote("\x01"), "\"\\u0001\"");
  EXPECT_EQ(Quote("\x1f"), "\"\\u001f\"");
  EXPECT_EQ(Quote(std::string_view("a\0b", 3)), "\"a\\u0000b\"");
}

TEST_F(AppendJsonStringTest, KeepsValidMultiByteUtf8) {
  EXPECT_EQ(Quote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");                    // é
  EXPECT_EQ(Quote("\xe2\x82\xac"), "\"\xe2\x82\xac\"");                  // €
  EXPECT_EQ(Quote("hi \xf0\x9f\x98\x80!"), "\"hi \xf0\x9f\x98\x80!\"");  // 😀
}

TEST_F(AppendJsonStringTest, ReplacesInvalidByte) {
  EXPECT_EQ(Quote("a\xff"
                  "b"),
            "\"a\\ufffdb\"");
}

TEST_F(AppendJsonStringTest, ReplacesLoneContinuationByte) {
  EXPECT_EQ(Quote("\x80"), "\"\\ufffd\"");
}

TEST_F(AppendJsonStringTest, ReplacesTruncatedSequence) {
  EXPECT_EQ(Quote("a\xc3"), "\"a\\ufffd\"");
  EXPECT_EQ(Quote("\xe2\x82"
                  "x"),
            "\"\\ufffd\\ufffdx\"");
  EXPECT_EQ(Quote("\xf0\x9f\x98"), "\"\\ufffd\\ufffd\\ufffd\"");
}

TEST_F(AppendJsonStringTest, ReplacesOverlongEncoding) {
  EXPECT_EQ(Quote("\xc0\x80"), "\"\\ufffd\\ufffd\"");
  EXPECT_EQ(Quote("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"");
}

TEST_F(AppendJsonStringTest, ReplacesSurrogate) {
  EXPECT_EQ(Quote("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
}

TEST_F(AppendJsonStringTest, ReplacesCodePointAboveUnicodeRange) {
  EXPECT_EQ(Quote("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

TEST_F(AppendJsonStringTest, OutputIsAlwaysValidJson) {
  std::string all_bytes;
  for (int c = 0; c < 256; ++c) all_bytes.push_back(static_cast<char>(c));
  std::string error;
  EXPECT_TRUE(IsJsonValue(Quote(all_bytes), &error)) << error;
}

class IsJsonValueTest : public ::testing::Test {
 protected:
  // Returns "" if `text` is accepted, else the error (or "<no error>").
  static std::string Reject(std::string_view text) {
    std::string error;
    if (IsJsonValue(text, &error)) return "";
    return error.empty() ? "<no error>" : error;
  }
  static bool Accepts(std::string_view text) { return IsJsonValue(text, nullptr); }
};

TEST_F(IsJsonValueTest, AcceptsObjectsAndArrays) {
  EXPECT_TRUE(Accepts("{}"));
  EXPECT_TRUE(Accepts("{\"a\":1,\"b\":[true,null,{\"c\":\"d\"}]}"));
  EXPECT_TRUE(Accepts("[]"));
  EXPECT_TRUE(Accepts("[1,\"two\",3.5]"));
}

TEST_F(IsJsonValueTest, AcceptsScalars) {
  EXPECT_TRUE(Accepts("\"text\""));
  EXPECT_TRUE(Accepts("42"));
  EXPECT_TRUE(Accepts("-1.5e3"));
  EXPECT_TRUE(Accepts("true"));
  EXPECT_TRUE(Accepts("null"));
}

TEST_F(IsJsonValueTest, AcceptsSurroundingWhitespace) { EXPECT_TRUE(Accepts("  {\"a\": 1}\n")); }

TEST_F(IsJsonValueTest, RejectsGarbageWithReason) {
  std::string error = Reject("not json");
  EXPECT_FALSE(error.empty());
  EXPECT_NE(error, "<no error>");
}

TEST_F(IsJsonValueTest, RejectsTrailingGarbage) {
  std::string error = Reject("{\"a\":1} x");
  EXPECT_FALSE(error.empty());
  EXPECT_NE(error, "<no error>");
}

TEST_F(IsJsonValueTest, RejectsTwoValues) { EXPECT_FALSE(Accepts("1 2")); }

TEST_F(IsJsonValueTest, RejectsEmptyString) {
  std::string error = Reject("");
  EXPECT_FALSE(error.empty());
  EXPECT_NE(error, "<no error>");
}

TEST_F(IsJsonValueTest, RejectsUnterminatedStructures) {
  EXPECT_FALSE(Accepts("{\"a\":1"));
  EXPECT_FALSE(Accepts("[1,2"));
  EXPECT_FALSE(Accepts("\"abc"));
}

TEST_F(IsJsonValueTest, RejectsBareWord) { EXPECT_FALSE(Accepts("hello")); }

}  // namespace
}  // namespace fanmap
