#include "coordinator/log_limiter.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace fanmap {
namespace {

constexpr int64_t kSecond = 1000;

class LogLimiterTest : public ::testing::Test {
 protected:
  // The clock starts far from zero, as a monotonic clock does.
  static constexpr int64_t kStartMs = 1000000000;

  void Advance(int64_t ms) { now_ms_ += ms; }
  bool Allow() { return limiter_.Allow(now_ms_); }

  // Offers `n` events at the current instant; returns how many were allowed.
  int Offer(int n) {
    int allowed = 0;
    for (int i = 0; i < n; ++i) allowed += Allow() ? 1 : 0;
    return allowed;
  }

  int64_t now_ms_ = kStartMs;
  LogLimiter limiter_{5, 10 * kSecond};
};

TEST_F(LogLimiterTest, AllowsTheFirstBurst) {
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Allow()) << i;
  EXPECT_EQ(limiter_.suppressed(), 0u);
  EXPECT_EQ(limiter_.total(), 5u);
}

TEST_F(LogLimiterTest, SuppressesAfterTheBurstAndCountsIt) {
  EXPECT_EQ(Offer(10000), 5);
  EXPECT_EQ(limiter_.total(), 10000u);
  EXPECT_EQ(limiter_.suppressed(), 9995u);
  EXPECT_EQ(limiter_.TakeSuppressed(), 9995u);
  EXPECT_EQ(limiter_.TakeSuppressed(), 0u);
  EXPECT_EQ(limiter_.suppressed(), 0u);
  EXPECT_EQ(limiter_.total(), 10000u);
}

TEST_F(LogLimiterTest, AllowsOneLinePerIntervalAfterTheBurst) {
  EXPECT_EQ(Offer(5), 5);
  Advance(10 * kSecond - 1);
  EXPECT_FALSE(Allow());
  Advance(1);
  EXPECT_TRUE(Allow());
  EXPECT_FALSE(Allow());
  Advance(10 * kSecond);
  EXPECT_TRUE(Allow());
  EXPECT_EQ(Offer(100), 0);
  EXPECT_EQ(limiter_.TakeSuppressed(), 102u);
}

TEST_F(LogLimiterTest, AFloodOfFramesGivesAFewLinesAMinute) {
  // 10,000 frames a second for a minute: the burst, then one per 10 s.
  int allowed = 0;
  for (int s = 0; s < 60; ++s) {
    allowed += Offer(10000);
    Advance(kSecond);
  }
  EXPECT_EQ(allowed, 5 + 5);  // at 10, 20, 30, 40, 50 s
  EXPECT_EQ(limiter_.total(), 600000u);
  EXPECT_EQ(limiter_.TakeSuppressed(), 600000u - 10);
}

TEST_F(LogLimiterTest, TakeSuppressedReportsOnlyWhatCameSinceTheLastTake) {
  Offer(8);  // 5 allowed, 3 suppressed
  Advance(10 * kSecond);
  ASSERT_TRUE(Allow());
  EXPECT_EQ(limiter_.TakeSuppressed(), 3u);
  Offer(2);
  Advance(10 * kSecond);
  ASSERT_TRUE(Allow());
  EXPECT_EQ(limiter_.TakeSuppressed(), 2u);
  EXPECT_EQ(limiter_.total(), 8u + 1 + 2 + 1);
}

TEST_F(LogLimiterTest, RefillsTheWholeBurstAfterAQuietSpell) {
  EXPECT_EQ(Offer(5), 5);
  Advance(2 * 10 * kSecond);
  EXPECT_EQ(Offer(5), 2);
  Advance(60 * 60 * kSecond);  // far longer than needed: never above the burst
  EXPECT_EQ(Offer(10), 5);
}

TEST_F(LogLimiterTest, QuietTimeWhileFullDoesNotBankExtraLines) {
  EXPECT_TRUE(Allow());
  // Full again after 10 s; the 55 s more (not a whole number of intervals)
  // must not bring the next line closer.
  Advance(65 * kSecond);
  EXPECT_EQ(Offer(6), 5);
  // The next line is one interval after the burst, not earlier.
  Advance(10 * kSecond - 1);
  EXPECT_FALSE(Allow());
  Advance(1);
  EXPECT_TRUE(Allow());
}

TEST_F(LogLimiterTest, TimeGoingBackwardsGainsNothing) {
  EXPECT_EQ(Offer(5), 5);
  Advance(-60 * kSecond);
  EXPECT_FALSE(Allow());
  Advance(60 * kSecond + 10 * kSecond);
  EXPECT_TRUE(Allow());
  EXPECT_FALSE(Allow());
}

TEST_F(LogLimiterTest, TakesOutOfRangeSettingsAsTheSmallestValid) {
  LogLimiter limiter(0, 0);  // burst 1, interval 1 ms
  EXPECT_TRUE(limiter.Allow(100));
  EXPECT_FALSE(limiter.Allow(100));
  EXPECT_TRUE(limiter.Allow(101));
  EXPECT_EQ(limiter.TakeSuppressed(), 1u);
}

TEST_F(LogLimiterTest, DefaultsAreFiveThenOnePerTenSeconds) {
  LogLimiter limiter;
  int allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += limiter.Allow(kStartMs) ? 1 : 0;
  EXPECT_EQ(allowed, LogLimiter::kDefaultBurst);
  EXPECT_EQ(LogLimiter::kDefaultBurst, 5);
  EXPECT_EQ(LogLimiter::kDefaultIntervalMs, 10 * kSecond);
  EXPECT_FALSE(limiter.Allow(kStartMs + 10 * kSecond - 1));
  EXPECT_TRUE(limiter.Allow(kStartMs + 10 * kSecond));
}

}  // namespace
}  // namespace fanmap
