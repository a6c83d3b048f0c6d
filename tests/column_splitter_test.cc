// ColumnSplitter: --colsep splits as Perl's split (GNU parallel's), and a
// long record or a pathological pattern is a result or an error, never a
// crash of the coordinator.
#include "coordinator/column_splitter.h"

#include <gtest/gtest.h>

namespace fanmap {
namespace {

ArgRow SplitOk(const std::string& pattern, const std::string& record) {
  std::unique_ptr<ColumnSplitter> splitter;
  Status s = ColumnSplitter::Create(pattern, &splitter);
  EXPECT_TRUE(s.ok()) << s.message();
  ArgRow row;
  if (splitter == nullptr) return row;
  s = splitter->Split(record, &row);
  EXPECT_TRUE(s.ok()) << s.message();
  return row;
}

// Each expectation is what `perl -e 'print join "|", split /P/, "R", -1'`
// prints (an unset group: "").
TEST(ColumnSplitterTest, SplitsAsPerl) {
  EXPECT_EQ(SplitOk(",", "a,b,,"), (ArgRow{"a", "b", "", ""}));
  EXPECT_EQ(SplitOk(",", ",a"), (ArgRow{"", "a"}));
  EXPECT_EQ(SplitOk(",+", "a,,b"), (ArgRow{"a", "b"}));
  EXPECT_EQ(SplitOk(",", "abc"), (ArgRow{"abc"}));
  EXPECT_EQ(SplitOk(",", ""), (ArgRow{""}));
  // Captured groups are fields of their own.
  EXPECT_EQ(SplitOk("(,)", "a,b"), (ArgRow{"a", ",", "b"}));
  EXPECT_EQ(SplitOk("(x)|,", "a,b"), (ArgRow{"a", "", "b"}));
  // An empty match never makes an empty first field.
  EXPECT_EQ(SplitOk("x*", "abc"), (ArgRow{"a", "b", "c", ""}));
  EXPECT_EQ(SplitOk("\\s*", "a b"), (ArgRow{"a", "b", ""}));
  EXPECT_EQ(SplitOk(",*", "a,,b"), (ArgRow{"a", "b", ""}));
  // Perl syntax: \d, lookahead, non-greedy.
  EXPECT_EQ(SplitOk("\\d+", "a12b3c"), (ArgRow{"a", "b", "c"}));
  EXPECT_EQ(SplitOk("(?=b)", "abab"), (ArgRow{"a", "ba", "b"}));
}

TEST(ColumnSplitterTest, TrimsEveryFieldAsParallelDoes) {
  // parallel --colsep , echo '[{1}]' '[{2}]' on " a , b " prints "[a] [b]".
  EXPECT_EQ(SplitOk(",", " a , b \t"), (ArgRow{"a", "b"}));
  EXPECT_EQ(SplitOk(",", "  ,x y"), (ArgRow{"", "x y"}));
}

TEST(ColumnSplitterTest, LongRunsOfAOneMegabyteRecordDoNotCrash) {
  // std::regex recursed once per character here and overflowed the stack.
  std::string record = "a" + std::string(1 << 20, ' ') + "b";
  EXPECT_EQ(SplitOk(" +", record), (ArgRow{"a", "b"}));
  std::string no_comma(1 << 20, 'x');
  EXPECT_EQ(SplitOk(".*,", no_comma), (ArgRow{no_comma}));
  std::string fields;
  for (int i = 0; i < 100000; ++i) fields += "ab,";
  ArgRow row = SplitOk(",", fields);
  ASSERT_EQ(row.size(), 100001u);
  EXPECT_EQ(row.front(), "ab");
  EXPECT_EQ(row.back(), "");
}

TEST(ColumnSplitterTest, APatternThatBacktracksWithoutEndIsAnErrorForTheRecord) {
  std::unique_ptr<ColumnSplitter> splitter;
  ASSERT_TRUE(ColumnSplitter::Create("(a|aa)*[bc]", &splitter).ok());
  ArgRow row;
  Status s = splitter->Split(std::string(60, 'a'), &row);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--colsep '(a|aa)*[bc]'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("limit"), std::string::npos) << s.message();
  // The same splitter still splits other records.
  ASSERT_TRUE(splitter->Split("aab", &row).ok());
  EXPECT_EQ(row, (ArgRow{"", "a", ""}));
}

TEST(ColumnSplitterTest, ABadPatternIsAnErrorNamingIt) {
  std::unique_ptr<ColumnSplitter> splitter;
  Status s = ColumnSplitter::Create("a(", &splitter);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--colsep 'a('"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("offset"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace fanmap
