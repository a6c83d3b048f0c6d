// ArgAssembler and ArgTable: parallel's sources, columns and groups, as items.
#include "coordinator/arg_assembler.h"

#include <gtest/gtest.h>

namespace fanmap {
namespace {

class ArgAssemblerTest : public ::testing::Test {
 protected:
  // Feeds `first` to an assembler and returns every table it makes.
  std::vector<ArgTable> Run(const std::vector<std::string>& first,
                            const std::vector<std::vector<std::string>>& others = {}) {
    std::unique_ptr<ArgAssembler> a;
    Status s = ArgAssembler::Create(options_, others, &a);
    EXPECT_TRUE(s.ok()) << s.message();
    std::vector<ArgTable> tables;
    std::string item;
    auto drain = [&] {
      while (a->Next(&item)) {
        ArgTable t;
        Status d = DecodeArgTable(item, &t);
        EXPECT_TRUE(d.ok()) << d.message();
        tables.push_back(t);
      }
    };
    for (const std::string& record : first) {
      a->Add(record);
      drain();
    }
    EXPECT_FALSE(a->drained());
    a->Finish();
    drain();
    EXPECT_TRUE(a->drained());
    return tables;
  }
  ArgAssemblerOptions options_;
};

TEST(ArgTableTest, RoundTripsAndCannotBeForged) {
  ArgTable t = {{"a b", "x\x1f"}, {"", "\n"}};
  ArgTable back;
  ASSERT_TRUE(DecodeArgTable(EncodeArgTable(t), &back).ok());
  EXPECT_EQ(back, t);
  // An item that looks like an encoded table is still one field.
  ArgTable forged = {{EncodeArgTable({{"x"}, {"y"}})}};
  ASSERT_TRUE(DecodeArgTable(EncodeArgTable(forged), &back).ok());
  EXPECT_EQ(back, forged);
}

TEST(ArgTableTest, RejectsWhatIsNotATable) {
  ArgTable t;
  EXPECT_FALSE(DecodeArgTable("", &t).ok());
  EXPECT_FALSE(DecodeArgTable("plain text", &t).ok());
  EXPECT_FALSE(DecodeArgTable(EncodeArgTable({}), &t).ok());
  EXPECT_FALSE(DecodeArgTable(EncodeArgTable({{"a"}}) + "x", &t).ok());
  EXPECT_FALSE(DecodeArgTable(std::string("\x91\x91\x01", 3), &t).ok());  // [[1]]
  EXPECT_FALSE(DecodeArgTable(std::string("\xdd\xff\xff\xff\xff", 5), &t).ok());
}

TEST_F(ArgAssemblerTest, CombinesSourcesFirstOutermost) {
  EXPECT_EQ(Run({"a", "b"}, {{"1", "2"}}),
            (std::vector<ArgTable>{{{"a", "1"}}, {{"a", "2"}}, {{"b", "1"}}, {{"b", "2"}}}));
  EXPECT_EQ(Run({"a"}, {{"1", "2"}, {"x", "y"}}),
            (std::vector<ArgTable>{
                {{"a", "1", "x"}}, {{"a", "1", "y"}}, {{"a", "2", "x"}}, {{"a", "2", "y"}}}));
  // An empty source among several is one empty value, as in parallel.
  EXPECT_EQ(Run({"a", "b"}, {{}}), (std::vector<ArgTable>{{{"a", ""}}, {{"b", ""}}}));
  EXPECT_EQ(Run({}, {{"1", "2"}}), (std::vector<ArgTable>{{{"", "1"}}, {{"", "2"}}}));
  EXPECT_TRUE(Run({}).empty());
}

TEST_F(ArgAssemblerTest, LinkPairsAndWrapsTheShorterSources) {
  options_.link = true;
  EXPECT_EQ(Run({"a", "b", "c"}, {{"1", "2"}}),
            (std::vector<ArgTable>{{{"a", "1"}}, {{"b", "2"}}, {{"c", "1"}}}));
  EXPECT_EQ(Run({"a"}, {{"1", "2"}}), (std::vector<ArgTable>{{{"a", "1"}}, {{"a", "2"}}}));
  EXPECT_EQ(Run({"a", "b"}, {{}}), (std::vector<ArgTable>{{{"a", ""}}, {{"b", ""}}}));
}

TEST_F(ArgAssemblerTest, ColsepSplitsEveryRecordOfEverySource) {
  options_.colsep = ",+";
  EXPECT_EQ(Run({"a,,b", "c"}, {{"1,2"}}),
            (std::vector<ArgTable>{{{"a", "b", "1", "2"}}, {{"c", "1", "2"}}}));
}

TEST_F(ArgAssemblerTest, BadColsepIsAnError) {
  options_.colsep = "(";
  std::unique_ptr<ArgAssembler> a;
  Status s = ArgAssembler::Create(options_, {}, &a);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--colsep"), std::string::npos);
}

TEST_F(ArgAssemblerTest, MaxArgsGroupsRowsAndKeepsTheRemainder) {
  options_.max_args = 3;
  EXPECT_EQ(Run({"a", "b", "c", "d"}), (std::vector<ArgTable>{{{"a"}, {"b"}, {"c"}}, {{"d"}}}));
}

TEST_F(ArgAssemblerTest, FillGroupsUpToMaxChars) {
  options_.fill = true;
  options_.max_chars = 6;  // each record "ab" takes 3
  EXPECT_EQ(Run({"ab", "cd", "ef", "gh", "ij"}),
            (std::vector<ArgTable>{{{"ab"}, {"cd"}}, {{"ef"}, {"gh"}}, {{"ij"}}}));
}

TEST(ArgInputTest, CountsRowsForAnyFirstSourceLength) {
  ArgInput input;
  input.others = {{"1", "2"}, {"x", "y", "z"}};
  EXPECT_EQ(input.Rows(0), 0u);
  EXPECT_EQ(input.Rows(4), 24u);
  input.options.link = true;
  EXPECT_EQ(input.Rows(2), 3u);
}

TEST(ArgInputTest, KnowsHowManyItemsWhenEverySourceIsGiven) {
  ArgInput input;
  input.assemble = true;
  input.first_values = {"a", "b", "c"};
  input.others = {{"1", "2"}};
  EXPECT_EQ(input.KnownItems(), 6u);
  input.options.max_args = 4;
  EXPECT_EQ(input.KnownItems(), 2u);
  input.options.link = true;
  input.options.max_args = 0;
  EXPECT_EQ(input.KnownItems(), 3u);
  input.options.fill = true;
  EXPECT_EQ(input.KnownItems(), 0u);  // depends on the bytes
  input.options.fill = false;
  input.first_values.clear();  // streamed from a file: unknown
  EXPECT_EQ(input.KnownItems(), 0u);
}

}  // namespace
}  // namespace fanmap
