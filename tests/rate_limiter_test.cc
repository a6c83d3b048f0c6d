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
  void Throttle() { limiter_.OnThrottled(now_us_); }

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

TEST_F(RateLimiterTest, HalvesConfiguredRateWhenThrottled) {
  Configure(10, 0);
  Drain();
  Throttle();
  EXPECT_DOUBLE_EQ(limiter_.request_rate(), 5);
  EXPECT_TRUE(limiter_.limited());
  // The next request waits one interval at the halved rate.
  EXPECT_NEAR(Wait(), kSecond / 5, 1);
}

TEST_F(RateLimiterTest, DoesNotSpendFullBucketAfterThrottle) {
  Configure(10, 0);
  Throttle();
  // At the halved rate the bucket holds at most 5 requests.
  int burst = Drain();
  EXPECT_GE(burst, 1);
  EXPECT_LE(burst, 5);
}

TEST_F(RateLimiterTest, HalvesRateAtMostOncePerSecond) {
  Configure(10, 0);
  Throttle();
  Advance(10 * kMillisecond);
  Throttle();
  EXPECT_NEAR(Rate(), 5, 0.1);
  Advance(980 * kMillisecond);
  Throttle();
  EXPECT_GT(Rate(), 5);
  Advance(11 * kMillisecond);
  double before = Rate();
  Throttle();
  EXPECT_NEAR(limiter_.request_rate(), before / 2, 1e-9);
}

TEST_F(RateLimiterTest, RecoversUpToConfiguredRate) {
  Configure(10, 0);
  Throttle();
  ASSERT_DOUBLE_EQ(limiter_.request_rate(), 5);
  double previous = 5;
  for (int i = 1; i <= 100; ++i) {
    Advance(100 * kMillisecond);
    double rate = Rate();
    ASSERT_GE(rate, previous) << "after " << i * 100 << " ms";
    ASSERT_LE(rate, 10) << "after " << i * 100 << " ms";
    // Grows back by about half its value per second.
    if (i == 10) {
      EXPECT_GE(rate, 7.4);
      EXPECT_LE(rate, 8.3);
    }
    previous = rate;
  }
  EXPECT_DOUBLE_EQ(previous, 10);
  EXPECT_TRUE(limiter_.limited());
}

TEST_F(RateLimiterTest, RecoveredRateIsPacedAgainAtConfiguredRate) {
  Configure(10, 0);
  Throttle();
  Advance(30 * kSecond);
  Drain();
  Advance(kMillisecond);
  int sent = AcquireEvery(kMillisecond, 10 * kSecond);
  EXPECT_GE(sent, 98);
  EXPECT_LE(sent, 102);
}

TEST_F(RateLimiterTest, LimitsToHalfOfSentRateWhenThrottledWithoutConfiguredRate) {
  ASSERT_EQ(AcquireEvery(10 * kMillisecond, 3 * kSecond), 300);  // 100/s, all sent
  Throttle();
  EXPECT_TRUE(limiter_.limited());
  EXPECT_NEAR(limiter_.request_rate(), 50, 5);
  // Now paced: a steady stream no longer all goes through.
  Advance(kMillisecond);
  int sent = AcquireEvery(kMillisecond, 100 * kMillisecond);
  EXPECT_GE(sent, 4);
  EXPECT_LE(sent, 8);
}

TEST_F(RateLimiterTest, LiftsLimitAfterRecoveryWithoutConfiguredRate) {
  AcquireEvery(10 * kMillisecond, 3 * kSecond);
  Throttle();
  ASSERT_TRUE(limiter_.limited());
  double previous = limiter_.request_rate();
  int i = 0;
  for (; i < 600 && limiter_.limited(); ++i) {
    Advance(100 * kMillisecond);
    double rate = Rate();
    if (rate > 0) {
      EXPECT_GE(rate, previous);
      previous = rate;
    }
  }
  EXPECT_FALSE(limiter_.limited()) << "still limited to " << limiter_.request_rate() << "/s";
  EXPECT_EQ(limiter_.request_rate(), 0);
  EXPECT_EQ(Wait(), -1);
  for (int n = 0; n < 1000; ++n) ASSERT_TRUE(Acquire());
}

TEST_F(RateLimiterTest, OneThrottleAmongManyAnswersBarelySlows) {
  Configure(100, 0);
  for (int i = 0; i < 99; ++i) limiter_.OnAccepted(now_us_);
  limiter_.OnThrottled(now_us_);
  // 1 of 100 answers was throttled: 99% of the rate remains, not half.
  EXPECT_NEAR(limiter_.request_rate(), 99, 1e-6);
}

TEST_F(RateLimiterTest, MostlyThrottledAnswersHalveTheRate) {
  Configure(100, 0);
  for (int i = 0; i < 10; ++i) limiter_.OnAccepted(now_us_);
  for (int i = 0; i < 90; ++i) limiter_.OnThrottled(now_us_);
  // The first throttle of the next second decides from the last one: 90%
  // refused, so the rate is cut by the most allowed, half.
  Advance(kSecond + kMillisecond);
  double before = Rate();
  limiter_.OnThrottled(now_us_);
  EXPECT_NEAR(limiter_.request_rate(), before / 2, 1e-6);
}

TEST_F(RateLimiterTest, SteadyShareOfThrottlesDoesNotCollapseTheRate) {
  Configure(100, 0);
  // Every second: 80 accepted, 20 throttled, as from a server that turns a
  // random fifth of requests away whatever the rate.
  for (int second = 0; second < 30; ++second) {
    for (int i = 0; i < 100; ++i) {
      Advance(10 * kMillisecond);
      if (i % 5 == 0) {
        limiter_.OnThrottled(now_us_);
      } else {
        limiter_.OnAccepted(now_us_);
      }
    }
  }
  EXPECT_GT(Rate(), 50) << "the rate collapsed";
}

TEST_F(RateLimiterTest, LimitsWhenThrottledBeforeAnythingWasSent) {
  Throttle();
  EXPECT_TRUE(limiter_.limited());
  EXPECT_GT(limiter_.request_rate(), 0);
}

}  // namespace
}  // namespace fanmap
