#include "coordinator/run_summary.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace fanmap {
namespace {

Result Answer(bool ok, uint64_t elapsed_ms, FailureCause cause = FailureCause::kNone) {
  Result r;
  r.ok = ok;
  r.retryable = !ok;
  r.cause = cause;
  r.elapsed_us = elapsed_ms * 1000;
  return r;
}

TEST(RunSummaryTest, CountsRetriesByCause) {
  RunSummary summary;
  summary.OnAnswer(Answer(false, 1, FailureCause::kThrottled));
  summary.OnAnswer(Answer(false, 1, FailureCause::kThrottled));
  summary.OnAnswer(Answer(false, 1, FailureCause::kServerError));
  summary.OnAnswer(Answer(false, 1, FailureCause::kTimeout));
  summary.OnAnswer(Answer(false, 1, FailureCause::kConnection));
  summary.OnAnswer(Answer(false, 1, FailureCause::kNone));
  Result final_error = Answer(false, 1, FailureCause::kOther);
  final_error.retryable = false;  // not retried: not a retry
  summary.OnAnswer(final_error);
  summary.OnAnswer(Answer(true, 1));
  SummaryFigures f = summary.Figures(2);
  EXPECT_EQ(f.requests, 8u);
  EXPECT_EQ(f.retried_429, 2u);
  EXPECT_EQ(f.retried_5xx, 1u);
  EXPECT_EQ(f.retried_timeout, 1u);
  EXPECT_EQ(f.retried_connection, 1u);
  EXPECT_EQ(f.retried_other, 1u);
  EXPECT_EQ(summary.throttled(), 2u);
}

TEST(RunSummaryTest, LatencyPercentilesWithinTheBucketWidth) {
  RunSummary summary;
  for (uint64_t ms = 1; ms <= 1000; ++ms) summary.OnAnswer(Answer(true, ms));
  SummaryFigures f = summary.Figures(1);
  EXPECT_NEAR(f.p50_ms, 500, 500 * 0.02);
  EXPECT_NEAR(f.p90_ms, 900, 900 * 0.02);
  EXPECT_NEAR(f.p99_ms, 990, 990 * 0.02);
  EXPECT_DOUBLE_EQ(f.max_ms, 1000);
}

TEST(RunSummaryTest, NoAnswersGiveZeroes) {
  RunSummary summary;
  SummaryFigures f = summary.Figures(0);
  EXPECT_EQ(f.requests, 0u);
  EXPECT_EQ(f.p50_ms, 0);
  EXPECT_EQ(f.max_ms, 0);
  EXPECT_FALSE(summary.chat());
  EXPECT_NE(FormatSummary(f, SummaryKind::kHttp).find("0 ok, 0 failed"), std::string::npos);
}

TEST(RunSummaryTest, SumsTokensOfSuccessfulAnswers) {
  RunSummary summary;
  Result r = Answer(true, 5);
  r.extra["prompt_tokens"] = int64_t{10};
  r.extra["completion_tokens"] = int64_t{20};
  summary.OnAnswer(r);
  summary.OnAnswer(r);
  Result failed = Answer(false, 5, FailureCause::kServerError);
  failed.extra["prompt_tokens"] = int64_t{1000};  // not a completion: not counted
  summary.OnAnswer(failed);
  EXPECT_TRUE(summary.chat());
  EXPECT_EQ(summary.tokens(), 60u);
  summary.SetItems(2, 0);
  SummaryFigures f = summary.Figures(2);
  EXPECT_EQ(f.prompt_tokens, 20u);
  EXPECT_EQ(f.completion_tokens, 40u);
  std::string text = FormatSummary(f, SummaryKind::kChat);
  EXPECT_NE(text.find("2 ok, 0 failed in 2.0 s"), std::string::npos) << text;
  EXPECT_NE(text.find("20 prompt + 40 completion (30/s)"), std::string::npos) << text;
  EXPECT_NE(text.find("1 5xx"), std::string::npos) << text;
}

TEST(RunSummaryTest, ARunOfCommandsSpeaksOfAttemptsNotRequests) {
  RunSummary summary;
  summary.OnAnswer(Answer(false, 3, FailureCause::kTimeout));
  summary.OnAnswer(Answer(true, 7));
  summary.SetItems(1, 0);
  std::string text = FormatSummary(summary.Figures(1), SummaryKind::kTasks);
  EXPECT_NE(text.find("1 ok, 0 failed in 1.0 s (1.0 items/s); 2 attempts, 1 failed and retried "
                      "(1 timeout)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\ntask time p50 "), std::string::npos) << text;
  EXPECT_EQ(text.find("429"), std::string::npos) << text;
  EXPECT_EQ(text.find("requests"), std::string::npos) << text;
}

TEST(RunSummaryTest, JsonHoldsEveryFigure) {
  RunSummary summary;
  summary.OnAnswer(Answer(false, 3, FailureCause::kThrottled));
  summary.OnAnswer(Answer(true, 7));
  summary.SetItems(1, 0);
  summary.SetOutagePauses(2);
  nlohmann::json j = nlohmann::json::parse(SummaryJson(summary.Figures(0.5)));
  EXPECT_EQ(j["items"]["ok"], 1);
  EXPECT_EQ(j["items"]["failed"], 0);
  EXPECT_EQ(j["requests"], 2);
  EXPECT_DOUBLE_EQ(j["requests_per_s"].get<double>(), 4);
  EXPECT_EQ(j["retries"]["429"], 1);
  EXPECT_EQ(j["retries"]["5xx"], 0);
  EXPECT_EQ(j["retries"]["timeout"], 0);
  EXPECT_EQ(j["retries"]["connection"], 0);
  EXPECT_EQ(j["outage_pauses"], 2);
  EXPECT_DOUBLE_EQ(j["latency_ms"]["max"].get<double>(), 7);
  EXPECT_TRUE(j["latency_ms"].contains("p50"));
  EXPECT_EQ(j["tokens"]["prompt"], 0);
  EXPECT_TRUE(j["tokens"].contains("per_s"));
}

}  // namespace
}  // namespace fanmap
