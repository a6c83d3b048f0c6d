#include "common/record_fields.h"

#include <gtest/gtest.h>

namespace fanmap {
namespace {

TEST(RecordFieldsTest, SuffixMarksJsonFields) {
  bool is_json = false;
  EXPECT_EQ(RecordFieldName("metadata:json", &is_json), "metadata");
  EXPECT_TRUE(is_json);
  EXPECT_EQ(RecordFieldName("status", &is_json), "status");
  EXPECT_FALSE(is_json);
  EXPECT_EQ(RecordFieldName(":json", &is_json), ":json");  // no name left: a plain key
  EXPECT_FALSE(is_json);
  EXPECT_EQ(JsonFieldKey("custom_id"), "custom_id:json");
}

TEST(RecordFieldsTest, SanitizeKeepsOneLineJsonAndDemotesTheRest) {
  Result::Extra extra;
  extra["good:json"] = std::string(R"({"a":[1,2]})");
  extra["two:json"] = std::string("1 2");
  extra["lines:json"] = std::string("{\n}");
  extra["number:json"] = int64_t{5};
  extra["plain"] = std::string("{not json");
  SanitizeJsonFields(&extra);
  EXPECT_EQ(std::get<std::string>(extra.at("good:json")), R"({"a":[1,2]})");
  EXPECT_EQ(std::get<std::string>(extra.at("two")), "1 2");
  EXPECT_EQ(std::get<std::string>(extra.at("lines")), "{\n}");
  EXPECT_EQ(std::get<std::string>(extra.at("number")), "5");
  EXPECT_EQ(std::get<std::string>(extra.at("plain")), "{not json");
  EXPECT_EQ(extra.size(), 5u);
}

}  // namespace
}  // namespace fanmap
