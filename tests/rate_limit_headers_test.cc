#include "worker/rate_limit_headers.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

namespace fanmap {
namespace {

std::optional<uint64_t> Ms(const char* text) { return ParseRateLimitDuration(text); }

TEST(RateLimitDurationTest, ParsesOpenAiDurations) {
  EXPECT_EQ(Ms("1s"), 1000u);
  EXPECT_EQ(Ms("6m0s"), 360000u);
  EXPECT_EQ(Ms("20ms"), 20u);
  EXPECT_EQ(Ms("1m30.5s"), 90500u);
  EXPECT_EQ(Ms("0s"), 0u);
  EXPECT_EQ(Ms("2h"), 7200000u);
  EXPECT_EQ(Ms("1h2m3s"), 3723000u);
  EXPECT_EQ(Ms("7.66s"), 7660u);
  EXPECT_EQ(Ms(" 1s "), 1000u);
}

TEST(RateLimitDurationTest, RoundsUpBelowAMillisecond) {
  EXPECT_EQ(Ms("1500us"), 2u);
  EXPECT_EQ(Ms("1\u00b5s"), 1u);
  EXPECT_EQ(Ms("1\u03bcs"), 1u);
  EXPECT_EQ(Ms("999ns"), 1u);
  EXPECT_EQ(Ms("1s500us"), 1001u);
  EXPECT_EQ(Ms("0.001s"), 1u);
}

TEST(RateLimitDurationTest, TakesABareNumberAsSeconds) {
  EXPECT_EQ(Ms("1"), 1000u);
  EXPECT_EQ(Ms("0.5"), 500u);
}

TEST(RateLimitDurationTest, RejectsAnythingElse) {
  for (const char* bad :
       {"",     " ",    "s",     "-1s", "+1s",   "1",     "1x",          "1sec",
        "1s1s", "1s1m", "1ms1s", "1.s", ".5s",   "1..5s", "1 s",         "1s 2ms",
        "abc",  "1e3s", "NaN",   "inf", "1m-1s", "25h",   "1000000000s", "99999999999999999999s"}) {
    if (std::string(bad) == "1") continue;  // a bare number is valid (seconds)
    EXPECT_FALSE(Ms(bad).has_value()) << "'" << bad << "' gave " << Ms(bad).value_or(0);
  }
  EXPECT_EQ(Ms("24h"), kMaxLimitResetMs);
}

class ServerLimitsTest : public ::testing::Test {
 protected:
  HeaderLookup Lookup() {
    return [this](const char* name) -> std::optional<std::string> {
      auto it = headers_.find(name);
      if (it == headers_.end()) return std::nullopt;
      return it->second;
    };
  }
  std::map<std::string, std::string> headers_;
};

TEST_F(ServerLimitsTest, ReadsAllSixHeaders) {
  headers_ = {{"x-ratelimit-limit-requests", "500"},      {"x-ratelimit-remaining-requests", "499"},
              {"x-ratelimit-reset-requests", "120ms"},    {"x-ratelimit-limit-tokens", "150000"},
              {"x-ratelimit-remaining-tokens", "149984"}, {"x-ratelimit-reset-tokens", "6m0s"}};
  ServerLimits limits = ReadServerLimits(Lookup());
  EXPECT_EQ(limits.limit_requests, 500u);
  EXPECT_EQ(limits.remaining_requests, 499u);
  EXPECT_EQ(limits.reset_requests_ms, 120u);
  EXPECT_EQ(limits.limit_tokens, 150000u);
  EXPECT_EQ(limits.remaining_tokens, 149984u);
  EXPECT_EQ(limits.reset_tokens_ms, 360000u);
  EXPECT_TRUE(limits.Valid());
}

TEST_F(ServerLimitsTest, NoHeadersIsEmpty) { EXPECT_TRUE(ReadServerLimits(Lookup()).empty()); }

TEST_F(ServerLimitsTest, IgnoresMalformedValuesOneByOne) {
  headers_ = {{"x-ratelimit-limit-requests", "5e2"},     {"x-ratelimit-remaining-requests", "-1"},
              {"x-ratelimit-reset-requests", "soon"},    {"x-ratelimit-limit-tokens", "1000"},
              {"x-ratelimit-remaining-tokens", "12 34"}, {"x-ratelimit-reset-tokens", "1s"}};
  ServerLimits limits = ReadServerLimits(Lookup());
  EXPECT_FALSE(limits.limit_requests);
  EXPECT_FALSE(limits.remaining_requests);
  EXPECT_FALSE(limits.reset_requests_ms);
  EXPECT_EQ(limits.limit_tokens, 1000u);
  EXPECT_FALSE(limits.remaining_tokens);
  EXPECT_EQ(limits.reset_tokens_ms, 1000u);
}

TEST_F(ServerLimitsTest, DropsARemainingCountAboveItsLimit) {
  headers_ = {{"x-ratelimit-limit-requests", "10"}, {"x-ratelimit-remaining-requests", "11"}};
  ServerLimits limits = ReadServerLimits(Lookup());
  EXPECT_TRUE(limits.empty());
}

TEST_F(ServerLimitsTest, DropsCountsBeyondTheProtocolBound) {
  headers_ = {{"x-ratelimit-limit-tokens", "999999999999999999"}};
  EXPECT_FALSE(ReadServerLimits(Lookup()).limit_tokens);
  EXPECT_TRUE(ReadServerLimits(Lookup()).Valid());
}

TEST_F(ServerLimitsTest, RetryAfterMsWinsOverRetryAfter) {
  headers_ = {{"retry-after-ms", "250"}, {"retry-after", "3"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 3, 600000), 250u);
  headers_ = {{"retry-after-ms", "0.5"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 0, 600000), 1u);
}

TEST_F(ServerLimitsTest, ARetryAfterTooLargeToReadIsTheLongestWaitNotNow) {
  // libcurl reads an overflowing Retry-After as 0.
  headers_ = {{"retry-after", "99999999999999999999"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 0, 600000), 600000u);
  headers_ = {{"retry-after-ms", "99999999999999999999"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 0, 600000), 600000u);
  headers_ = {{"retry-after-ms", " 99999999999999999999.5 "}, {"retry-after", "1"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 1, 600000), 600000u);
  headers_ = {{"retry-after", "+99999999999999999999"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 0, 600000), 600000u);
  // What libcurl reads but does not fit in milliseconds does not wrap.
  headers_ = {{"retry-after", "18446744073709552"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 18446744073709552, 600000), 600000u);
  // Leading zeros are no size: 5 ms; and zeros are "now", however many.
  headers_ = {{"retry-after-ms", "000000000000000000005"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 0, 600000), 5u);
  headers_ = {{"retry-after", "000000000000000000000"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 0, 600000), 0u);
}

TEST_F(ServerLimitsTest, FallsBackToRetryAfterWhenRetryAfterMsIsBad) {
  headers_ = {{"retry-after-ms", "later"}, {"retry-after", "2"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 2, 600000), 2000u);
  headers_ = {{"retry-after", "0"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 0, 600000), 0u);
  headers_.clear();
  EXPECT_FALSE(ReadRetryAfterMs(Lookup(), 0, 600000));
}

TEST_F(ServerLimitsTest, ASignedRetryAfterMsIsBadHoweverLarge) {
  // Regression: "+5" was ignored (the Retry-After was used) while a "+"
  // before a huge count made it the longest wait.
  headers_ = {{"retry-after-ms", "+5"}, {"retry-after", "2"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 2, 600000), 2000u);
  headers_ = {{"retry-after-ms", "+99999999999999999999"}, {"retry-after", "2"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 2, 600000), 2000u);
}

TEST_F(ServerLimitsTest, ClampsRetryDelays) {
  headers_ = {{"retry-after-ms", "99999999999"}};
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 0, 600000), 600000u);
  headers_.clear();
  EXPECT_EQ(ReadRetryAfterMs(Lookup(), 86400, 600000), 600000u);
}

}  // namespace
}  // namespace fanmap
