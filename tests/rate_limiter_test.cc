#include "coordinator/rate_limiter.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace fanmap {
namespace {

constexpr int64_t kMillisecond = 1000;
constexpr int64_t kSecond = 1000000;

class RateLimiterTest : public ::testing::Test {
 protected:
  // The clock starts far from zero, as a monotonic clock does.
  static constexpr int64_t kStartUs = 1000000000000;

  void Configure(double requests_per_s, double tokens_per_min) {
    limiter_ = RateLimiter(requests_per_s, tokens_per_min);
  }

  void Advance(int64_t us) { now_us_ += us; }
  bool Acquire(double tokens = 0) { return limiter_.TryAcquire(now_us_, tokens); }
  int64_t Wait(double tokens = 0) { return limiter_.WaitMicros(now_us_, tokens); }

  // Acquires at the current instant until refused; returns how many went.
  int Drain(double tokens = 0) {
    int n = 0;
    while (n < 1000000 && Acquire(tokens)) ++n;
    return n;
  }

  // Tries to acquire every `step_us` for `duration_us`; returns how many went.
  int AcquireEvery(int64_t step_us, int64_t duration_us, double tokens = 0) {
    int n = 0;
    for (int64_t t = 0; t < duration_us; t += step_us) {
      if (Acquire(tokens)) ++n;
      Advance(step_us);
    }
    return n;
  }

  // The request rate limit as of now.
  double Rate() {
    limiter_.WaitMicros(now_us_, 0);
    return limiter_.request_rate();
  }

  int64_t now_us_ = kStartUs;
  RateLimiter limiter_{0, 0};
};

TEST_F(RateLimiterTest, DoesNotLimitWithoutLimits) {
  EXPECT_FALSE(limiter_.limited());
  EXPECT_EQ(limiter_.request_rate(), 0);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(Acquire(1000));
  EXPECT_EQ(Wait(), -1);
  EXPECT_EQ(Wait(1e9), -1);
  EXPECT_FALSE(limiter_.limited());
}

TEST_F(RateLimiterTest, PacesRequestsToConfiguredRate) {
  Configure(10, 0);
  EXPECT_TRUE(limiter_.limited());
  EXPECT_EQ(limiter_.request_rate(), 10);
  const double bucket = 10;  // one second's worth
  int sent = 0;
  for (int64_t t = 0; t < 10 * kSecond; t += kMillisecond) {
    if (Acquire()) ++sent;
    ASSERT_LE(sent, 10 * (t / 1e6) + bucket) << "at " << t << " us";
    Advance(kMillisecond);
  }
  EXPECT_GE(sent, 100);
  EXPECT_LE(sent, 100 + bucket);
}

TEST_F(RateLimiterTest, KeepsConfiguredRateOnceBucketIsEmpty) {
  Configure(10, 0);
  Drain();
  Advance(kMillisecond);
  int sent = AcquireEvery(kMillisecond, 10 * kSecond);
  EXPECT_GE(sent, 98);
  EXPECT_LE(sent, 102);
}

TEST_F(RateLimiterTest, StartsWithAtMostOneSecondOfRequests) {
  Configure(10, 0);
  int burst = Drain();
  EXPECT_GE(burst, 1);
  EXPECT_LE(burst, 10);
}

// A configured --rate opens with a share of a second at once, as it always
// did; only later pauses are followed by one request and a few ms. (Against
// a server down from the start, the first answers then come back together
// and the circuit breaker stops charging them before an item's quick retry
// has failed too.) Kept while a dynamic limit above it changes.
TEST_F(RateLimiterTest, AConfiguredRateOpensWithAShareOfASecond) {
  Configure(100, 0);
  limiter_.SetDynamicLimits(now_us_, 2000, 0);
  limiter_.SetDynamicLimits(now_us_, 3000, 0);
  EXPECT_EQ(Drain(), static_cast<int>(100 * RateLimiter::kStartSeconds));
  AcquireEvery(kMillisecond, kSecond);
  Advance(kSecond);
  EXPECT_LE(Drain(), 1 + 100 * RateLimiter::kLatenessSeconds);
}

TEST_F(RateLimiterTest, DoesNotBurstAfterPause) {
  Configure(10, 0);
  AcquireEvery(kMillisecond, 2 * kSecond);
  Advance(60 * kSecond);
  int burst = Drain();
  EXPECT_GE(burst, 1);
  EXPECT_LE(burst, 10);
}

TEST_F(RateLimiterTest, WaitMicrosIsZeroExactlyWhenAcquireWouldSucceed) {
  Configure(7, 0);
  int sent = 0;
  for (int i = 0; i < 1000; ++i) {
    int64_t wait = Wait();
    RateLimiter probe = limiter_;
    bool would_go = probe.TryAcquire(now_us_, 0);
    ASSERT_EQ(wait == 0, would_go) << "step " << i << ", wait " << wait;
    if (Acquire()) ++sent;
    Advance(13777);  // not a multiple of the request interval
  }
  EXPECT_GT(sent, 0);
}

TEST_F(RateLimiterTest, AcquiresWhenWaitMicrosSaysSo) {
  Configure(7, 0);
  Drain();
  for (int i = 0; i < 100; ++i) {
    Advance(1 + i * 3 * kMillisecond % 100000);
    if (Acquire()) continue;
    int64_t wait = Wait();
    ASSERT_GT(wait, 0);
    ASSERT_LE(wait, kSecond / 7 + 1);
    // WaitMicros rounds up, so one microsecond less may be enough; two is not.
    if (wait > 2) {
      RateLimiter early = limiter_;
      EXPECT_FALSE(early.TryAcquire(now_us_ + wait - 2, 0)) << "wait " << wait;
    }
    Advance(wait);
    ASSERT_TRUE(Acquire()) << "wait " << wait;
  }
}

TEST_F(RateLimiterTest, PacesRequestsByEstimatedTokens) {
  Configure(0, 600);  // 10 tokens/s
  EXPECT_TRUE(limiter_.limited());
  EXPECT_EQ(limiter_.request_rate(), 0);
  int sent = AcquireEvery(kMillisecond, 10 * kSecond, 5);
  // 2 requests a second, plus at most a full bucket (10 tokens) at the start.
  EXPECT_GE(sent, 20);
  EXPECT_LE(sent, 22);
}

TEST_F(RateLimiterTest, WaitsLongerForLargerRequests) {
  Configure(0, 600);
  Drain(10);
  EXPECT_NEAR(Wait(5), kSecond / 2, 1);
  EXPECT_NEAR(Wait(10), kSecond, 1);
  EXPECT_EQ(Wait(0), 0);
}

TEST_F(RateLimiterTest, SendsRequestLargerThanBucketOnceBucketIsFull) {
  Configure(0, 600);  // bucket of 10 tokens
  ASSERT_TRUE(Acquire(10));
  EXPECT_FALSE(Acquire(50));
  EXPECT_NEAR(Wait(50), kSecond, 1);
  Advance(kSecond - 2);
  EXPECT_FALSE(Acquire(50));
  Advance(2);
  EXPECT_TRUE(Acquire(50));
  // The 40 tokens beyond the bucket are charged: the next request waits for
  // them and its own.
  EXPECT_NEAR(Wait(1), 4100 * kMillisecond, 1);
}

TEST_F(RateLimiterTest, ChargesUsageAboveEstimate) {
  Configure(0, 600);
  ASSERT_TRUE(Acquire(10));
  limiter_.OnUsage(10, 15);
  EXPECT_NEAR(Wait(10), 1500 * kMillisecond, 1);
  Advance(1400 * kMillisecond);
  EXPECT_FALSE(Acquire(10));
}

TEST_F(RateLimiterTest, RefundsUsageBelowEstimate) {
  Configure(0, 600);
  ASSERT_TRUE(Acquire(10));
  limiter_.OnUsage(10, 5);
  EXPECT_NEAR(Wait(10), 500 * kMillisecond, 1);
  EXPECT_TRUE(Acquire(5));
}

TEST_F(RateLimiterTest, IgnoresUsageWithoutTokenLimit) {
  Configure(10, 0);
  limiter_.OnUsage(1, 1e9);
  EXPECT_EQ(Wait(), 0);
  EXPECT_TRUE(Acquire());
}

TEST_F(RateLimiterTest, DynamicLimitPacesWithoutConfiguredRate) {
  limiter_.SetDynamicLimits(now_us_, 100, 0);
  EXPECT_TRUE(limiter_.limited());
  EXPECT_EQ(limiter_.request_rate(), 100);
  int sent = AcquireEvery(kMillisecond, kSecond);
  EXPECT_GE(sent, 99);
  EXPECT_LE(sent, 101);
  limiter_.SetDynamicLimits(now_us_, 0, 0);
  EXPECT_FALSE(limiter_.limited());
  EXPECT_EQ(Wait(), -1);
}

TEST_F(RateLimiterTest, TighterOfConfiguredAndDynamicLimitApplies) {
  Configure(10, 0);
  limiter_.SetDynamicLimits(now_us_, 5, 0);
  EXPECT_EQ(limiter_.request_rate(), 5);
  limiter_.SetDynamicLimits(now_us_, 50, 0);
  EXPECT_EQ(limiter_.request_rate(), 10);
  limiter_.SetDynamicLimits(now_us_, 0, 0);
  EXPECT_EQ(limiter_.request_rate(), 10);
}

TEST_F(RateLimiterTest, BurstIsOneRequestAndAFewMilliseconds) {
  limiter_.SetDynamicLimits(now_us_, 1000, 0);
  Advance(10 * kSecond);
  int burst = Drain();
  EXPECT_LE(burst, 1 + 1000 * RateLimiter::kLatenessSeconds);
  EXPECT_GE(burst, 1);
}

// At a high rate a bucket of a fixed share of a second was hundreds of
// requests: a slow start at 16,000/s sent 800 at once after any pause, the
// whole budget of a server limiting at 500/s with a bucket of a second.
TEST_F(RateLimiterTest, AHighRateSendsNoBurstAfterAPause) {
  limiter_.SetDynamicLimits(now_us_, 16000, 0);
  AcquireEvery(kMillisecond, kSecond);
  Advance(100 * kMillisecond);
  EXPECT_LE(Drain(), 1 + 16000 * RateLimiter::kLatenessSeconds);
}

// A caller that polls a little late, here every 1.5 ms at 500/s (a request
// every 2 ms), still gets the whole rate: the bucket keeps the fraction it
// gained while waiting. A bucket of exactly one request dropped it: 333/s.
TEST_F(RateLimiterTest, PollingLateStillGetsTheWholeRate) {
  limiter_.SetDynamicLimits(now_us_, 500, 0);
  int sent = AcquireEvery(1500, 10 * kSecond);
  EXPECT_GE(sent, 4990);
  EXPECT_LE(sent, 5002);
}

TEST_F(RateLimiterTest, ShrinkingLimitKeepsNoLargerBurst) {
  limiter_.SetDynamicLimits(now_us_, 1000, 0);
  Advance(kSecond);
  limiter_.SetDynamicLimits(now_us_, 20, 0);
  EXPECT_LE(Drain(), 1);
  // The bucket may keep a few milliseconds' worth of a request.
  EXPECT_LE(Wait(), kSecond / 20 + 1);
  EXPECT_GE(Wait(), kSecond / 20 - kSecond * RateLimiter::kLatenessSeconds - 1);
}

TEST_F(RateLimiterTest, DynamicTokenLimitPacesByTokens) {
  limiter_.SetDynamicLimits(now_us_, 0, 100);  // 100 tokens/s
  int sent = AcquireEvery(kMillisecond, 10 * kSecond, 10);
  // 10 requests a second, and the small starting bucket.
  EXPECT_GE(sent, 99);
  EXPECT_LE(sent, 101);
}

}  // namespace
}  // namespace fanmap
