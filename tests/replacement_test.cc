// CommandTemplate: parallel's replacement strings and quoting, no processes.
#include "worker/replacement.h"

#include <gtest/gtest.h>

namespace fanmap {
namespace {

using Words = std::vector<std::string>;

ExpandedCommand Expand(const Words& words, const ArgTable& args, uint64_t seq = 1,
                       unsigned slot = 1, CommandTemplate::Options options = {}) {
  return CommandTemplate(words, options).Expand(args, seq, slot);
}

TEST(ShellQuoteTest, QuotesAsParallelDoes) {
  EXPECT_EQ(ShellQuote("a-b_c.d+e/f"), "a-b_c.d+e/f");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("a b"), "'a b'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\"'\"'s'");
  EXPECT_EQ(ShellQuote("'x'"), "\"'\"'x'\"'\"");
  EXPECT_EQ(ShellQuote("x:y"), "'x:y'");
  EXPECT_EQ(ShellQuote("a; rm -rf ~"), "'a; rm -rf ~'");
}

TEST(CommandTemplateTest, PathReplacementStringsMatchParallel) {
  // Expected values are what GNU parallel 20221122 prints.
  struct Case {
    std::string in, noext, base, dir, basenoext;
  };
  for (const Case& c : std::vector<Case>{{"a.b/c", "a.b/c", "c", "a.b", "c"},
                                         {"a.", "a", "a.", ".", "a"},
                                         {".bashrc", "", ".bashrc", ".", ""},
                                         {"dir/.x", "dir/", ".x", "dir", ""},
                                         {"a.tar.gz", "a.tar", "a.tar.gz", ".", "a.tar"},
                                         {"/", "/", "", "/", ""},
                                         {"a/", "a/", "", ".", ""},
                                         {"/a", "/a", "a", "/", "a"},
                                         {"a//b", "a//b", "b", "a", "b"},
                                         {"", "", "", ".", ""},
                                         {"x/y.z/", "x/y.z/", "", "x", ""}}) {
    ExpandedCommand e = Expand({"echo", "{}", "{.}", "{/}", "{//}", "{/.}"}, {{c.in}});
    EXPECT_EQ(e.argv, (Words{"echo", c.in, c.noext, c.base, c.dir, c.basenoext})) << c.in;
  }
}

TEST(CommandTemplateTest, SeqSlotAndPositionalFields) {
  ExpandedCommand e =
      Expand({"x{#}", "{%}", "{2}", "{1.}", "{2/}", "{3}x"}, {{"a.txt", "d/b.c"}}, 7, 3);
  EXPECT_EQ(e.argv, (Words{"x7", "3", "d/b.c", "a", "b.c", "x"}));
}

TEST(CommandTemplateTest, AppendsTheItemsOnlyWithoutAnyReplacementString) {
  EXPECT_EQ(Expand({"wc", "-c"}, {{"f.txt"}}).argv, (Words{"wc", "-c", "f.txt"}));
  EXPECT_EQ(Expand({"echo", "{#}"}, {{"f"}}, 4).argv, (Words{"echo", "4"}));
  EXPECT_EQ(Expand({"echo"}, {{"a", "b c"}}).argv, (Words{"echo", "a", "b c"}));
}

TEST(CommandTemplateTest, ItemIsNotReexpanded) {
  EXPECT_EQ(Expand({"echo", "{}"}, {{"{}{.}{#}"}}).argv, (Words{"echo", "{}{.}{#}"}));
}

TEST(CommandTemplateTest, UnknownBracesStayLiteral) {
  EXPECT_EQ(Expand({"awk", "{print $1}", "{0}", "{x", "{}"}, {{"f"}}).argv,
            (Words{"awk", "{print $1}", "{0}", "{x", "f"}));
}

TEST(CommandTemplateTest, SeveralItemsSplitTheWordAsTheShellWould) {
  ArgTable three = {{"a"}, {"b c"}, {"d"}};
  ExpandedCommand e = Expand({"echo", "pre{}post"}, three);
  EXPECT_EQ(e.argv, (Words{"echo", "prea", "b c", "dpost"}));
  EXPECT_EQ(e.line, "echo prea 'b c' dpost");
  // A missing positional field vanishes, as parallel's unquoted nothing does.
  EXPECT_EQ(Expand({"echo", "{2}", "{1}"}, {{"c"}}).argv, (Words{"echo", "c"}));
}

TEST(CommandTemplateTest, ContextReplaceRepeatsTheWordPerItem) {
  CommandTemplate::Options x;
  x.context_replace = true;
  ExpandedCommand e = Expand({"echo", "pre{}post", "{#}"}, {{"a"}, {"b"}}, 5, 1, x);
  EXPECT_EQ(e.argv, (Words{"echo", "preapost", "prebpost", "5"}));
}

TEST(CommandTemplateTest, ReplaceStrTakesThePlaceOfBraces) {
  CommandTemplate::Options i;
  i.replace_str = ",,";
  EXPECT_EQ(Expand({"echo", ",,", "{}", "{.}"}, {{"a.b"}}, 1, 1, i).argv,
            (Words{"echo", "a.b", "{}", "a"}));
}

TEST(CommandTemplateTest, OneWordWithShellSyntaxRunsInShWithQuotedItems) {
  CommandTemplate t({"echo {} | tr a-z A-Z"}, {});
  EXPECT_TRUE(t.uses_shell());
  ExpandedCommand e = t.Expand({{"a; rm -rf ~"}}, 1, 1);
  EXPECT_EQ(e.argv, (Words{"/bin/sh", "-c", "echo 'a; rm -rf ~' | tr a-z A-Z"}));
  EXPECT_EQ(e.line, "echo 'a; rm -rf ~' | tr a-z A-Z");
  // Without a replacement string the items are appended, quoted.
  EXPECT_EQ(CommandTemplate({"echo x;echo"}, {}).Expand({{"$y"}}, 1, 1).line, "echo x;echo '$y'");
  // Several words never go through a shell, whatever they hold.
  EXPECT_FALSE(CommandTemplate({"sh", "-c", "echo \"$1\"", "_", "{}"}, {}).uses_shell());
  EXPECT_FALSE(CommandTemplate({"gzip"}, {}).uses_shell());
}

TEST(CommandTemplateTest, LineIsWhatParallelsDryRunPrints) {
  EXPECT_EQ(Expand({"echo", "{}"}, {{"it's"}}).line, "echo 'it'\"'\"'s'");
  EXPECT_EQ(Expand({"echo"}, {{"plain"}, {""}}).line, "echo plain ''");
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

// -X measures a table row by row: FixedCost + the RowCosts bound the real
// command (the one sh -c argument in the shell; every argument, its NUL and
// pointer without), and exceed it by no more than {#}/{%}'s widest digits.
TEST(CommandCostTest, RowCostsAddUpToTheExpandedCommand) {
  CommandTemplate::Options options;
  options.context_replace = true;
  ArgTable table = {{"1 x"}, {"it's"}, {"plain"}};
  CommandTemplate shell({"echo {} {#} | wc -w"}, options);
  ASSERT_TRUE(shell.uses_shell());
  size_t cost = shell.FixedCost();
  for (const ArgRow& row : table) cost += shell.RowCost(row);
  ExpandedCommand c = shell.Expand(table, 7, 1);
  ASSERT_EQ(c.argv.size(), 3u);
  EXPECT_GE(cost, c.argv[2].size() + 1);
  EXPECT_LE(cost, c.argv[2].size() + 1 + 64);
  // Quoting counts: "1 x" costs its quotes in the shell.
  EXPECT_EQ(shell.RowCost({"1 x"}), std::string(" '1 x'").size());

  CommandTemplate argv({"echo", "pre{}", "{#}"}, options);
  cost = argv.FixedCost();
  for (const ArgRow& row : table) cost += argv.RowCost(row);
  c = argv.Expand(table, 7, 1);
  size_t real = sizeof(char*);
  for (const std::string& w : c.argv) real += w.size() + 1 + sizeof(char*);
  EXPECT_GE(cost, real);
  EXPECT_LE(cost, real + 32);
  // The context word is paid for every row.
  EXPECT_EQ(argv.RowCost({"a"}), std::string("prea").size() + 1 + sizeof(char*));
}

}  // namespace
}  // namespace fanmap
