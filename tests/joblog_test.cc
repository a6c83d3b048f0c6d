// Joblog: parallel's TSV lines from results, no processes.
#include "coordinator/joblog.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace fanmap {
namespace {

TEST(JoblogTest, HeaderIsParallels) {
  EXPECT_STREQ(Joblog::kHeader,
               "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n");
}

TEST(JoblogTest, OkLine) {
  Result r;
  r.ok = true;
  r.value = "0\n";
  r.elapsed_us = 9000;
  r.extra["start_us"] = int64_t{1796102048220123};
  r.extra["command"] = std::string("echo 0");
  EXPECT_EQ(Joblog::FormatLine(0, r), "1\t:\t1796102048.220\t     0.009\t0\t2\t0\t0\techo 0\n");
}

TEST(JoblogTest, CommandStaysOneRow) {
  Result r;
  r.ok = true;
  r.extra["command"] = std::string("echo 'a\tb\nc'");
  std::string line = Joblog::FormatLine(0, r);
  EXPECT_EQ(line.substr(line.rfind('\t') + 1), "echo 'a\\tb\\nc'\n");
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
  EXPECT_EQ(std::count(line.begin(), line.end(), '\t'), 8);
}

TEST(JoblogTest, ExitCodeSignalAndCommandThatNeverRan) {
  Result failed;
  failed.extra["exit_code"] = int64_t{3};
  failed.extra["stdout"] = std::string("3\n");
  EXPECT_EQ(Joblog::FormatLine(1, failed), "2\t:\t0.000\t     0.000\t0\t2\t3\t0\t\n");
  Result killed;
  killed.extra["signal"] = int64_t{9};
  EXPECT_EQ(Joblog::FormatLine(2, killed), "3\t:\t0.000\t     0.000\t0\t0\t0\t9\t\n");
  Result not_started;
  not_started.value = "cannot run 'nosuch': No such file or directory";
  EXPECT_EQ(Joblog::FormatLine(3, not_started), "4\t:\t0.000\t     0.000\t0\t0\t-1\t0\t\n");
}

}  // namespace
}  // namespace fanmap
