#include "coordinator/circuit_breaker.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstdint>

namespace fanmap {
namespace {

class CircuitBreakerTest : public ::testing::Test {
 protected:
  // `n` outage-like answers to requests sent at `sent_ms`, at now_.
  void Down(int n, int64_t sent_ms = 0) {
    for (int i = 0; i < n; ++i) breaker_.OnAnswer(now_, sent_ms, ServerHealth::kDown);
  }
  bool Up(int64_t sent_ms = 0) { return breaker_.OnAnswer(now_, sent_ms, ServerHealth::kUp); }
  // Dispatches as many requests as the breaker lets through now.
  int DispatchAll() {
    int n = 0;
    while (n < 1000 && breaker_.TryDispatch(now_)) ++n;
    return n;
  }

  CircuitBreaker breaker_;
  int64_t now_ = 1000000;
};

TEST_F(CircuitBreakerTest, LetsEverythingThroughWhileClosed) {
  EXPECT_EQ(DispatchAll(), 1000);
  Down(CircuitBreaker::kTripAfter - 1);
  EXPECT_FALSE(breaker_.tripped());
  EXPECT_EQ(breaker_.NextDispatchMs(now_), now_);
}

TEST_F(CircuitBreakerTest, AStreakOfFailuresIsSuspectBeforeItTrips) {
  Down(CircuitBreaker::kSuspectAfter - 1);
  EXPECT_FALSE(breaker_.suspect());
  Down(1);
  EXPECT_TRUE(breaker_.suspect());
  EXPECT_FALSE(breaker_.tripped());
  Up();
  EXPECT_FALSE(breaker_.suspect());
}

TEST_F(CircuitBreakerTest, ASuccessResetsTheCount) {
  Down(CircuitBreaker::kTripAfter - 1);
  EXPECT_FALSE(Up());
  Down(CircuitBreaker::kTripAfter - 1);
  EXPECT_FALSE(breaker_.tripped());
}

TEST_F(CircuitBreakerTest, ThrottlesAndOtherAnswersSayNothing) {
  Down(CircuitBreaker::kTripAfter - 1);
  for (int i = 0; i < 100; ++i) breaker_.OnAnswer(now_, 0, ServerHealth::kNeutral);
  EXPECT_FALSE(breaker_.tripped());
  Down(1);
  EXPECT_TRUE(breaker_.tripped());
}

TEST_F(CircuitBreakerTest, RemembersWhenTheOutageBeganThroughFailedProbes) {
  Down(CircuitBreaker::kTripAfter);
  ASSERT_TRUE(breaker_.tripped());
  int64_t began = now_;
  now_ += CircuitBreaker::kFirstPauseMs;
  ASSERT_EQ(DispatchAll(), CircuitBreaker::kProbes);
  Down(CircuitBreaker::kProbes, now_);  // the probes fail: open again
  now_ += 10;
  EXPECT_TRUE(breaker_.tripped());
  EXPECT_EQ(breaker_.tripped_since_ms(), began);
  // Over, and a new outage later: it began then.
  EXPECT_TRUE(Up(now_));
  now_ += 60000;
  Down(CircuitBreaker::kTripAfter);
  EXPECT_EQ(breaker_.tripped_since_ms(), now_);
}

TEST_F(CircuitBreakerTest, TripsAndPausesThenProbes) {
  Down(CircuitBreaker::kTripAfter);
  ASSERT_TRUE(breaker_.tripped());
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  EXPECT_EQ(breaker_.openings(), 1u);
  EXPECT_EQ(DispatchAll(), 0);
  EXPECT_EQ(breaker_.NextDispatchMs(now_), now_ + CircuitBreaker::kFirstPauseMs);
  now_ += CircuitBreaker::kFirstPauseMs;
  EXPECT_EQ(DispatchAll(), CircuitBreaker::kProbes);
  EXPECT_EQ(breaker_.state(), BreakerState::kProbing);
  EXPECT_EQ(breaker_.NextDispatchMs(now_), INT64_MAX);
}

TEST_F(CircuitBreakerTest, OneSuccessfulProbeClosesIt) {
  Down(CircuitBreaker::kTripAfter);
  now_ += CircuitBreaker::kFirstPauseMs;
  DispatchAll();
  Down(CircuitBreaker::kProbes - 1, now_);
  EXPECT_TRUE(Up(now_));
  EXPECT_FALSE(breaker_.tripped());
  EXPECT_EQ(DispatchAll(), 1000);
}

TEST_F(CircuitBreakerTest, FailedProbesReopenForLongerUpToTheCap) {
  Down(CircuitBreaker::kTripAfter);
  int64_t pause = CircuitBreaker::kFirstPauseMs;
  for (int round = 0; round < 10; ++round) {
    ASSERT_EQ(breaker_.NextDispatchMs(now_), now_ + pause) << "round " << round;
    now_ += pause;
    ASSERT_EQ(DispatchAll(), CircuitBreaker::kProbes);
    Down(CircuitBreaker::kProbes, now_);
    ASSERT_EQ(breaker_.state(), BreakerState::kOpen);
    pause = std::min(pause * 2, CircuitBreaker::kMaxPauseMs);
  }
  EXPECT_EQ(pause, CircuitBreaker::kMaxPauseMs);
  EXPECT_EQ(breaker_.openings(), 11u);
}

TEST_F(CircuitBreakerTest, LateFailuresOfOldRequestsAreNotProbes) {
  Down(CircuitBreaker::kTripAfter);
  int64_t before = now_;
  now_ += CircuitBreaker::kFirstPauseMs;
  DispatchAll();
  // Requests sent before the trip keep failing: the probes are still out.
  Down(50, before);
  EXPECT_EQ(breaker_.state(), BreakerState::kProbing);
}

TEST_F(CircuitBreakerTest, AfterRecoveryTheFirstPauseIsShortAgain) {
  Down(CircuitBreaker::kTripAfter);
  now_ += CircuitBreaker::kFirstPauseMs;
  DispatchAll();
  Down(CircuitBreaker::kProbes, now_);  // pause now doubled
  now_ += 2 * CircuitBreaker::kFirstPauseMs;
  DispatchAll();
  EXPECT_TRUE(Up(now_));
  Down(CircuitBreaker::kTripAfter);
  EXPECT_EQ(breaker_.NextDispatchMs(now_), now_ + CircuitBreaker::kFirstPauseMs);
}

TEST(HealthOfTest, ReadsTheCauseOfAFailure) {
  Result r;
  r.ok = true;
  EXPECT_EQ(HealthOf(r), ServerHealth::kUp);
  r.ok = false;
  r.retryable = true;
  for (FailureCause down :
       {FailureCause::kServerError, FailureCause::kTimeout, FailureCause::kConnection}) {
    r.cause = down;
    EXPECT_EQ(HealthOf(r), ServerHealth::kDown);
  }
  r.cause = FailureCause::kThrottled;
  EXPECT_EQ(HealthOf(r), ServerHealth::kNeutral);
  r.cause = FailureCause::kNone;  // e.g. a command that crashed
  EXPECT_EQ(HealthOf(r), ServerHealth::kNeutral);
  r.retryable = false;
  r.cause = FailureCause::kOther;
  r.extra["status"] = int64_t{400};
  EXPECT_EQ(HealthOf(r), ServerHealth::kUp) << "a 400 comes from a working server";
  r.extra.clear();
  EXPECT_EQ(HealthOf(r), ServerHealth::kNeutral);
}

}  // namespace
}  // namespace fanmap
