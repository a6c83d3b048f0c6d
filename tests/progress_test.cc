#include "coordinator/progress.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"

namespace fanmap {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr int64_t kMillisecond = 1000;

ProgressCounts Counts(uint64_t done, uint64_t total, uint64_t failed = 0, size_t workers = 8,
                      size_t hosts = 1, size_t slots = 8) {
  ProgressCounts c;
  c.done = done;
  c.total = total;
  c.failed = failed;
  c.workers = workers;
  c.hosts = hosts;
  c.slots = slots;
  return c;
}

bool IsPrintableAscii(const std::string& s) {
  for (char ch : s) {
    if (ch < 0x20 || ch > 0x7e) return false;
  }
  return true;
}

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- FormatProgressLine ----

TEST(FormatProgressLineTest, ShowsEveryFieldWhenWide) {
  std::string line = FormatProgressLine(Counts(250, 1000, 3, 8, 2, 16), 10, 200);
  EXPECT_EQ(line,
            "[######..................] 250/1000  25.0% 25/s ETA 0:30 failed 3 workers 8 "
            "(16 slots on 2 hosts)");
}

TEST(FormatProgressLineTest, ShowsDoneCountWhenTotalIsUnknown) {
  EXPECT_EQ(FormatProgressLine(Counts(42, 0, 0, 1, 1, 1), 2, 200),
            "42 done 21/s in 0:02 failed 0 workers 1");
}

TEST(FormatProgressLineTest, NeverReachesTheLastColumn) {
  const std::vector<ProgressCounts> counts = {
      Counts(0, 0, 0, 0, 0, 0),
      Counts(0, 100),
      Counts(1234, 10000, 0, 8, 1, 8),
      Counts(1234, 10000, 17, 64, 9, 512),
      Counts(5000, 10000, 5000, 1, 1, 1),
      Counts(20000, 10000),  // more done than the (stale) total
      Counts(kMax, kMax, kMax, SIZE_MAX, SIZE_MAX, SIZE_MAX),
      Counts(kMax - 1, kMax, 0, 3, 2, 100),
      Counts(kMax, 0, kMax, 2, 2, 4),
      Counts(1, kMax),  // an ETA too far to say
  };
  const std::vector<double> elapsed = {0, 1e-9, 0.5, 61, 3600 * 30, 1e12};
  for (const ProgressCounts& c : counts) {
    for (double e : elapsed) {
      for (size_t width = 10; width <= 200; ++width) {
        std::string line = FormatProgressLine(c, e, width);
        ASSERT_LE(line.size(), width - 1) << "width " << width << ": " << line;
        ASSERT_FALSE(line.empty()) << "width " << width;
        ASSERT_TRUE(IsPrintableAscii(line)) << line;
      }
    }
  }
}

TEST(FormatProgressLineTest, IsEmptyWithoutRoom) {
  EXPECT_EQ(FormatProgressLine(Counts(1, 2), 1, 0), "");
  EXPECT_EQ(FormatProgressLine(Counts(1, 2), 1, 1), "");
  EXPECT_EQ(FormatProgressLine(Counts(1, 2), 1, 2).size(), 1u);
}

TEST(FormatProgressLineTest, UsesTheWholeWidthWhenTheFullLineFitsExactly) {
  ProgressCounts c = Counts(250, 1000, 3, 8, 2, 16);
  std::string full = FormatProgressLine(c, 10, 1000);
  EXPECT_EQ(FormatProgressLine(c, 10, full.size() + 1), full);
  EXPECT_NE(FormatProgressLine(c, 10, full.size()), full);
}

TEST(FormatProgressLineTest, DropsSlotsAndHostsFirst) {
  ProgressCounts c = Counts(250, 1000, 3, 8, 2, 16);
  std::string full = FormatProgressLine(c, 10, 1000);
  std::string line = FormatProgressLine(c, 10, full.size());
  EXPECT_FALSE(Contains(line, "slots"));
  EXPECT_TRUE(Contains(line, "[######..................]"));
  EXPECT_TRUE(Contains(line, "workers 8"));
}

TEST(FormatProgressLineTest, ShrinksTheBarBeforeDroppingIt) {
  ProgressCounts c = Counts(500, 1000, 0, 8, 1, 8);
  std::string full = FormatProgressLine(c, 10, 1000);  // 26-column bar, no slots
  std::string line = FormatProgressLine(c, 10, full.size() + 1 - 10);
  EXPECT_EQ(line.size(), full.size() - 10);
  EXPECT_EQ(line.substr(0, 17), "[#######.......] ");
  EXPECT_TRUE(Contains(line, "workers 8"));
}

TEST(FormatProgressLineTest, KeepsDoneTotalAndRateIn40Columns) {
  std::string line = FormatProgressLine(Counts(1234, 10000, 0, 8, 3, 24), 5, 40);
  EXPECT_LE(line.size(), 39u);
  EXPECT_TRUE(Contains(line, "1234/10000")) << line;
  EXPECT_TRUE(Contains(line, "247/s")) << line;
  EXPECT_FALSE(Contains(line, "slots")) << line;
  EXPECT_FALSE(Contains(line, "[")) << line;
}

TEST(FormatProgressLineTest, KeepsFailuresLongerThanWorkersWhenThereAreSome) {
  std::string with = FormatProgressLine(Counts(1234, 10000, 7, 8), 5, 50);
  EXPECT_TRUE(Contains(with, "failed 7")) << with;
  EXPECT_FALSE(Contains(with, "workers")) << with;
  std::string without = FormatProgressLine(Counts(1234, 10000, 0, 8), 5, 50);
  EXPECT_FALSE(Contains(without, "failed")) << without;
}

TEST(FormatProgressLineTest, DropsTheTotalBeforeCuttingDone) {
  EXPECT_EQ(FormatProgressLine(Counts(1234, 10000), 5, 10), "1234");
  EXPECT_EQ(FormatProgressLine(Counts(1234, 0), 5, 10), "1234 done");
  EXPECT_EQ(FormatProgressLine(Counts(1234, 0), 5, 9), "1234");
  EXPECT_EQ(FormatProgressLine(Counts(123456789, 0), 5, 5), "1234");
  EXPECT_EQ(FormatProgressLine(Counts(1234, 10000), 5, 11), "1234/10000");
}

TEST(FormatProgressLineTest, SaysWhenTheEtaIsTooFar) {
  std::string line = FormatProgressLine(Counts(1, kMax), 1e6, 200);
  EXPECT_TRUE(Contains(line, "ETA >9999h")) << line;
}

// ---- TerminalColumns ----

class ColumnsEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* old = getenv("COLUMNS");
    had_ = old != nullptr;
    if (had_) old_ = old;
    ASSERT_EQ(pipe(fds_), 0);
  }
  void TearDown() override {
    if (had_) {
      setenv("COLUMNS", old_.c_str(), 1);
    } else {
      unsetenv("COLUMNS");
    }
    close(fds_[0]);
    close(fds_[1]);
  }

  bool had_ = false;
  std::string old_;
  int fds_[2];
};

TEST_F(ColumnsEnvTest, UsesColumnsWhenNotATerminal) {
  setenv("COLUMNS", "57", 1);
  EXPECT_EQ(TerminalColumns(fds_[1]), 57u);
}

TEST_F(ColumnsEnvTest, FallsBackTo80) {
  unsetenv("COLUMNS");
  EXPECT_EQ(TerminalColumns(fds_[1]), 80u);
  for (const char* bad : {"", "abc", "0", "-5", "40x", "99999999999999999999", "10001"}) {
    setenv("COLUMNS", bad, 1);
    EXPECT_EQ(TerminalColumns(fds_[1]), 80u) << "COLUMNS=" << bad;
  }
}

// ---- Progress, drawing into a pipe ----

class ProgressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(pipe(fds_), 0);
    ASSERT_EQ(pipe(other_), 0);
    ASSERT_EQ(fcntl(fds_[0], F_SETFL, O_NONBLOCK), 0);
    now_us_ = NowMicros();
  }
  void TearDown() override {
    for (int fd : {fds_[0], fds_[1], other_[0], other_[1]}) close(fd);
  }

  std::unique_ptr<Progress> Make(bool enabled = true) {
    auto p = std::make_unique<Progress>(enabled, fds_[1]);
    p->set_columns(60);
    return p;
  }

  // Everything drawn since the last call.
  std::string Drawn() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds_[0], buf, sizeof buf)) > 0) out.append(buf, n);
    return out;
  }

  void Advance(int64_t us) { now_us_ += us; }

  int fds_[2];
  int other_[2];
  int64_t now_us_ = 0;
  ProgressCounts counts_ = Counts(1234, 10000, 2, 8, 3, 24);
};

TEST_F(ProgressTest, DrawsAFittedLineOnFirstUpdate) {
  auto p = Make();
  p->Update(counts_, now_us_);
  std::string drawn = Drawn();
  ASSERT_GE(drawn.size(), 4u);
  EXPECT_EQ(drawn.front(), '\r');
  EXPECT_EQ(drawn.substr(drawn.size() - 3), "\x1b[K");
  std::string line = drawn.substr(1, drawn.size() - 4);
  EXPECT_LE(line.size(), 59u);
  EXPECT_TRUE(Contains(line, "1234/10000")) << line;
  EXPECT_TRUE(p->shown());
}

TEST_F(ProgressTest, RedrawsAtMostTenTimesASecond) {
  auto p = Make();
  p->Update(counts_, now_us_);
  EXPECT_NE(Drawn(), "");
  Advance(99 * kMillisecond);
  p->Update(counts_, now_us_);
  EXPECT_EQ(Drawn(), "");
  Advance(1 * kMillisecond);
  p->Update(counts_, now_us_);
  EXPECT_NE(Drawn(), "");
}

TEST_F(ProgressTest, DisabledDrawsNothing) {
  auto p = Make(false);
  p->set_shares_terminal_with(fds_[1]);
  p->Update(counts_, now_us_);
  p->BeforeOutput();
  p->Clear();
  p->Finish(counts_, now_us_);
  EXPECT_EQ(Drawn(), "");
  EXPECT_FALSE(p->shown());
}

TEST_F(ProgressTest, SharesOnlyWithTheSameOutput) {
  auto p = Make();
  EXPECT_FALSE(p->shares_terminal());
  p->set_shares_terminal_with(other_[1]);
  EXPECT_FALSE(p->shares_terminal());
  p->set_shares_terminal_with(fds_[1]);
  EXPECT_TRUE(p->shares_terminal());
  int dup_fd = dup(fds_[1]);
  p->set_shares_terminal_with(dup_fd);
  EXPECT_TRUE(p->shares_terminal());
  close(dup_fd);
  p->set_shares_terminal_with(-1);
  EXPECT_FALSE(p->shares_terminal());
}

TEST_F(ProgressTest, BeforeOutputErasesTheShownLineWhenSharing) {
  auto p = Make();
  p->set_shares_terminal_with(fds_[1]);
  p->Update(counts_, now_us_);
  Drawn();
  p->BeforeOutput();
  EXPECT_EQ(Drawn(), "\r\x1b[K");
  EXPECT_FALSE(p->shown());
}

TEST_F(ProgressTest, BeforeOutputDoesNothingWhenNothingIsShown) {
  auto p = Make();
  p->set_shares_terminal_with(fds_[1]);
  p->BeforeOutput();
  EXPECT_EQ(Drawn(), "");
  p->Update(counts_, now_us_);
  p->BeforeOutput();
  Drawn();
  p->BeforeOutput();  // already erased
  EXPECT_EQ(Drawn(), "");
}

TEST_F(ProgressTest, BeforeOutputDoesNothingWhenNotSharing) {
  auto p = Make();
  p->set_shares_terminal_with(other_[1]);
  p->Update(counts_, now_us_);
  Drawn();
  p->BeforeOutput();
  EXPECT_EQ(Drawn(), "");
  EXPECT_TRUE(p->shown());
}

TEST_F(ProgressTest, NextUpdateAfterBeforeOutputRedrawsAtOnce) {
  auto p = Make();
  p->set_shares_terminal_with(fds_[1]);
  p->Update(counts_, now_us_);
  p->BeforeOutput();
  Drawn();
  Advance(1 * kMillisecond);  // well within the redraw interval
  counts_.done = 1300;
  p->Update(counts_, now_us_);
  std::string drawn = Drawn();
  EXPECT_EQ(drawn.front(), '\r');
  EXPECT_TRUE(Contains(drawn, "1300/10000")) << drawn;
  EXPECT_TRUE(p->shown());
  // And then the interval applies again.
  Advance(1 * kMillisecond);
  p->Update(counts_, now_us_);
  EXPECT_EQ(Drawn(), "");
}

TEST_F(ProgressTest, ClearErasesForALogLineWhetherSharingOrNot) {
  auto p = Make();
  p->Clear();
  EXPECT_EQ(Drawn(), "");
  p->Update(counts_, now_us_);
  Drawn();
  p->Clear();
  EXPECT_EQ(Drawn(), "\r\x1b[K");
  Advance(1 * kMillisecond);
  p->Update(counts_, now_us_);
  EXPECT_NE(Drawn(), "");
}

TEST_F(ProgressTest, FinishLeavesAFinalLine) {
  auto p = Make();
  p->set_shares_terminal_with(fds_[1]);
  p->Update(counts_, now_us_);
  Drawn();
  Advance(1 * kMillisecond);  // Finish draws regardless of the interval
  counts_.done = 10000;
  p->Finish(counts_, now_us_);
  std::string drawn = Drawn();
  ASSERT_GE(drawn.size(), 5u);
  EXPECT_EQ(drawn.front(), '\r');
  EXPECT_EQ(drawn.substr(drawn.size() - 4), "\x1b[K\n");
  EXPECT_TRUE(Contains(drawn, "10000/10000")) << drawn;
  EXPECT_FALSE(p->shown());
  p->BeforeOutput();  // the final line stays
  p->Clear();
  EXPECT_EQ(Drawn(), "");
}

// ---- Progress on a real terminal (a pseudo-terminal) ----

class Pty {
 public:
  Pty() {
    master_ = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_ < 0 || grantpt(master_) != 0 || unlockpt(master_) != 0) return;
    const char* name = ptsname(master_);
    if (name == nullptr) return;
    name_ = name;
    slave_ = open(name, O_RDWR | O_NOCTTY);
    if (slave_ < 0) return;
    struct termios t;
    tcgetattr(slave_, &t);
    cfmakeraw(&t);  // bytes as written, no "\n" -> "\r\n"
    tcsetattr(slave_, TCSANOW, &t);
    fcntl(master_, F_SETFL, O_NONBLOCK);
  }
  ~Pty() {
    if (slave_ >= 0) close(slave_);
    if (master_ >= 0) close(master_);
  }
  bool ok() const { return slave_ >= 0; }
  int slave() const { return slave_; }
  const std::string& name() const { return name_; }

  void Resize(int columns) {
    struct winsize ws = {};
    ws.ws_row = 24;
    ws.ws_col = static_cast<unsigned short>(columns);
    ioctl(slave_, TIOCSWINSZ, &ws);
  }

  std::string Read() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(master_, buf, sizeof buf)) > 0) out.append(buf, n);
    return out;
  }

 private:
  int master_ = -1;
  int slave_ = -1;
  std::string name_;
};

TEST(ProgressTerminalTest, SharesWithAnotherOpenOfTheSameTerminalOnly) {
  Pty a, b;
  if (!a.ok() || !b.ok()) GTEST_SKIP() << "no pseudo-terminals here";
  int again = open(a.name().c_str(), O_WRONLY | O_NOCTTY);
  ASSERT_GE(again, 0);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);

  Progress p(true, a.slave());
  p.set_shares_terminal_with(again);
  EXPECT_TRUE(p.shares_terminal());
  p.set_shares_terminal_with(b.slave());
  EXPECT_FALSE(p.shares_terminal());
  p.set_shares_terminal_with(fds[1]);
  EXPECT_FALSE(p.shares_terminal());

  for (int fd : {again, fds[0], fds[1]}) close(fd);
}

TEST(ProgressTerminalTest, FollowsTheTerminalWidth) {
  Pty pty;
  if (!pty.ok()) GTEST_SKIP() << "no pseudo-terminals here";
  pty.Resize(40);
  EXPECT_EQ(TerminalColumns(pty.slave()), 40u);

  Progress p(true, pty.slave());
  ProgressCounts c = Counts(1234, 10000, 2, 8, 3, 24);
  int64_t now = NowMicros();
  p.Update(c, now);
  std::string narrow = pty.Read();
  ASSERT_GE(narrow.size(), 4u);
  EXPECT_LE(narrow.size() - 4, 39u) << narrow;

  pty.Resize(150);  // what SIGWINCH announces
  p.Update(c, now + 100 * kMillisecond);
  std::string wide = pty.Read();
  ASSERT_GE(wide.size(), 4u);
  EXPECT_LE(wide.size() - 4, 149u) << wide;
  EXPECT_GT(wide.size(), 40u) << wide;
  EXPECT_TRUE(Contains(wide, "slots")) << wide;
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

TEST(ProgressLineTest, ChatRunShowsTokensPerSecondAnd429s) {
  ProgressCounts c;
  c.done = 50;
  c.total = 100;
  c.workers = 2;
  c.chat = true;
  c.tokens = 2000;
  c.throttled = 7;
  std::string line = FormatProgressLine(c, 2.0, 200);
  EXPECT_NE(line.find("1000 tok/s"), std::string::npos) << line;
  EXPECT_NE(line.find("429s 7"), std::string::npos) << line;
  c.chat = false;
  line = FormatProgressLine(c, 2.0, 200);
  EXPECT_EQ(line.find("tok/s"), std::string::npos) << line;
  EXPECT_EQ(line.find("429s"), std::string::npos) << line;
}

TEST(ProgressLineTest, The429CountGoesBeforeTokensOnANarrowTerminal) {
  ProgressCounts c;
  c.done = 50;
  c.total = 100;
  c.workers = 2;
  c.chat = true;
  c.tokens = 2000;
  c.throttled = 7;
  std::string wide = FormatProgressLine(c, 2.0, 200);
  // Just too narrow for everything: the 429 count goes first.
  std::string line = FormatProgressLine(c, 2.0, wide.size());
  EXPECT_EQ(line.find("429s"), std::string::npos) << line;
  EXPECT_NE(line.find("tok/s"), std::string::npos) << line;
}

}  // namespace
}  // namespace fanmap
