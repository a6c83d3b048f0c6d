#include "coordinator/retry_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

namespace fanmap {
namespace {

constexpr int kSamples = 2000;

class RetryPolicyTest : public ::testing::Test {
 protected:
  // `n` delays after `attempts` attempts from `policy`.
  static std::vector<int64_t> Delays(RetryPolicy* policy, uint32_t attempts, int64_t retry_after_ms,
                                     int n = kSamples) {
    std::vector<int64_t> delays;
    for (int i = 0; i < n; ++i) delays.push_back(policy->DelayMillis(attempts, retry_after_ms));
    return delays;
  }

  // `n` delays from a fresh policy seeded with `seed`.
  static std::vector<int64_t> DelaysWithSeed(uint64_t seed, uint32_t attempts,
                                             int64_t retry_after_ms, int n = kSamples) {
    RetryPolicy policy(3, seed);
    return Delays(&policy, attempts, retry_after_ms, n);
  }

  // The upper end of the jitter range after `attempts` attempts.
  static int64_t Ceiling(uint32_t attempts) {
    int64_t ceiling = RetryPolicy::kBaseMillis;
    for (uint32_t i = 1; i < attempts && ceiling < RetryPolicy::kCapMillis; ++i) ceiling *= 2;
    return std::min(ceiling, RetryPolicy::kCapMillis);
  }

  static int64_t Min(const std::vector<int64_t>& v) {
    return *std::min_element(v.begin(), v.end());
  }
  static int64_t Max(const std::vector<int64_t>& v) {
    return *std::max_element(v.begin(), v.end());
  }
};

TEST_F(RetryPolicyTest, MayRetryUpToConfiguredRetries) {
  RetryPolicy policy(2, 1);
  EXPECT_TRUE(policy.MayRetry(1));
  EXPECT_TRUE(policy.MayRetry(2));
  EXPECT_FALSE(policy.MayRetry(3));
  EXPECT_FALSE(policy.MayRetry(100));
  EXPECT_EQ(policy.retries(), 2);
}

TEST_F(RetryPolicyTest, NeverRetriesWithZeroRetries) {
  RetryPolicy policy(0, 1);
  EXPECT_FALSE(policy.MayRetry(1));
  EXPECT_FALSE(policy.MayRetry(2));
  EXPECT_FALSE(policy.MayRetry(std::numeric_limits<uint32_t>::max()));
}

TEST_F(RetryPolicyTest, DelayStaysWithinExponentialCeiling) {
  RetryPolicy policy(10, 42);
  for (uint32_t attempts = 1; attempts <= 12; ++attempts) {
    std::vector<int64_t> delays = Delays(&policy, attempts, 0);
    EXPECT_GE(Min(delays), 0) << "attempts " << attempts;
    EXPECT_LE(Max(delays), Ceiling(attempts)) << "attempts " << attempts;
  }
}

TEST_F(RetryPolicyTest, CeilingDoublesWithEachAttempt) {
  EXPECT_EQ(Ceiling(1), 100);
  EXPECT_EQ(Ceiling(2), 200);
  EXPECT_EQ(Ceiling(3), 400);
  RetryPolicy policy(10, 7);
  // Past the first attempt the larger samples exceed the previous ceiling.
  for (uint32_t attempts = 2; attempts <= 9; ++attempts) {
    EXPECT_GT(Max(Delays(&policy, attempts, 0)), Ceiling(attempts - 1)) << "attempts " << attempts;
  }
}

TEST_F(RetryPolicyTest, DelaySpreadsOverWholeRange) {
  RetryPolicy policy(10, 1234);
  for (uint32_t attempts : {1u, 3u, 8u}) {
    std::vector<int64_t> delays = Delays(&policy, attempts, 0);
    int64_t ceiling = Ceiling(attempts);
    std::set<int64_t> distinct(delays.begin(), delays.end());
    EXPECT_GT(distinct.size(), 50u) << "attempts " << attempts;
    EXPECT_GE(Max(delays), ceiling * 9 / 10) << "attempts " << attempts;
    EXPECT_LE(Min(delays), ceiling / 10) << "attempts " << attempts;
  }
}

TEST_F(RetryPolicyTest, DelayIsNeverBelowRetryAfter) {
  RetryPolicy policy(10, 5);
  // Retry-After above the jitter ceiling: it alone decides.
  for (int64_t delay : Delays(&policy, 1, 5000)) EXPECT_EQ(delay, 5000);
  // Retry-After inside the jitter range: the delay is at least Retry-After.
  std::vector<int64_t> delays = Delays(&policy, 10, 5000);
  EXPECT_EQ(Min(delays), 5000);
  EXPECT_LE(Max(delays), RetryPolicy::kCapMillis);
  EXPECT_GT(Max(delays), 5000);
}

TEST_F(RetryPolicyTest, ClampsRetryAfterToMaximum) {
  RetryPolicy policy(10, 5);
  EXPECT_EQ(policy.DelayMillis(1, RetryPolicy::kMaxRetryAfterMillis + 1),
            RetryPolicy::kMaxRetryAfterMillis);
  EXPECT_EQ(policy.DelayMillis(20, std::numeric_limits<int64_t>::max()),
            RetryPolicy::kMaxRetryAfterMillis);
  EXPECT_EQ(policy.DelayMillis(1, RetryPolicy::kMaxRetryAfterMillis),
            RetryPolicy::kMaxRetryAfterMillis);
}

TEST_F(RetryPolicyTest, TreatsNegativeRetryAfterAsNone) {
  std::vector<int64_t> negative = DelaysWithSeed(99, 4, -5000);
  EXPECT_EQ(negative, DelaysWithSeed(99, 4, 0));
  EXPECT_GE(Min(negative), 0);
  EXPECT_LE(Max(negative), Ceiling(4));
  EXPECT_GE(Min(DelaysWithSeed(99, 1, std::numeric_limits<int64_t>::min())), 0);
}

TEST_F(RetryPolicyTest, CapsDelayOfManyAttempts) {
  RetryPolicy policy(10, 8);
  for (uint32_t attempts :
       {16u, 21u, 22u, 63u, 64u, 65u, 1000u, std::numeric_limits<uint32_t>::max()}) {
    std::vector<int64_t> delays = Delays(&policy, attempts, 0);
    EXPECT_GE(Min(delays), 0) << "attempts " << attempts;
    EXPECT_LE(Max(delays), RetryPolicy::kCapMillis) << "attempts " << attempts;
    EXPECT_GE(Max(delays), RetryPolicy::kCapMillis * 9 / 10) << "attempts " << attempts;
  }
}

TEST_F(RetryPolicyTest, SameSeedGivesSameDelays) {
  EXPECT_EQ(DelaysWithSeed(17, 5, 0, 100), DelaysWithSeed(17, 5, 0, 100));
  EXPECT_NE(DelaysWithSeed(17, 5, 0, 100), DelaysWithSeed(18, 5, 0, 100));
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

TEST(ParseRetryForTest, ReadsDurationsWithUnitsAndBareMinutes) {
  int64_t ms = -1;
  ASSERT_TRUE(ParseRetryFor("10m", &ms));
  EXPECT_EQ(ms, 600000);
  ASSERT_TRUE(ParseRetryFor("90s", &ms));
  EXPECT_EQ(ms, 90000);
  ASSERT_TRUE(ParseRetryFor("1.5h", &ms));
  EXPECT_EQ(ms, 5400000);
  ASSERT_TRUE(ParseRetryFor("10", &ms));
  EXPECT_EQ(ms, 600000);
  ASSERT_TRUE(ParseRetryFor("0", &ms));
  EXPECT_EQ(ms, 0);
  ASSERT_TRUE(ParseRetryFor("0.5s", &ms));
  EXPECT_EQ(ms, 500);
}

TEST(ParseRetryForTest, RejectsAnythingElse) {
  int64_t ms = 7;
  for (const char* bad :
       {"", "m", "-1m", "+1m", "1x", "1 m", "1mm", "nan", "inf", "1e400", "9999999h", " 1m"}) {
    EXPECT_FALSE(ParseRetryFor(bad, &ms)) << bad;
  }
  EXPECT_EQ(ms, 7);
}

}  // namespace
}  // namespace fanmap
