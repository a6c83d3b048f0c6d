#include "coordinator/halt_policy.h"

#include <gtest/gtest.h>

namespace fanmap {
namespace {

HaltSpec Parse(const std::string& text) {
  HaltSpec spec;
  Status status = ParseHalt(text, &spec);
  EXPECT_TRUE(status.ok()) << text << ": " << status.message();
  return spec;
}

TEST(HaltPolicyTest, ParsesGnuParallelsSpellings) {
  EXPECT_EQ(Parse("never").when, HaltWhen::kNever);
  HaltSpec now = Parse("now,fail=3");
  EXPECT_EQ(now.when, HaltWhen::kNow);
  EXPECT_EQ(now.count, 3u);
  EXPECT_EQ(now.on, HaltOn::kFail);
  HaltSpec soon = Parse("soon,fail=10%");
  EXPECT_EQ(soon.when, HaltWhen::kSoon);
  EXPECT_DOUBLE_EQ(soon.percent, 10);
  EXPECT_EQ(Parse("now,success=1").on, HaltOn::kSuccess);
  HaltSpec done = Parse("soon,done=4");
  EXPECT_EQ(done.on, HaltOn::kDone);
  EXPECT_EQ(done.count, 4u);
  EXPECT_DOUBLE_EQ(Parse("now,done=50%").percent, 50);
  for (const char* bad :
       {"", "now", "later,fail=1", "now,fail=", "now,fail=0", "now,fail=1.5", "now,fail=101%",
        "now,oops=1", "now,fail=x", "3", "-3", "1,fail=1", "%", "0%", "now,done=0"}) {
    HaltSpec spec;
    EXPECT_FALSE(ParseHalt(bad, &spec).ok()) << bad;
  }
  // The error names every form that is accepted.
  HaltSpec spec;
  EXPECT_EQ(ParseHalt("later,fail=1", &spec).message(),
            "--halt 'later,fail=1' is not never or WHEN,fail=N|P%, WHEN,success=N|P% or "
            "WHEN,done=N|P% (WHEN: now or soon), or 0, 1, 2, -1, -2 or P%");
  EXPECT_TRUE(ParseHalt("soon,success=50%", &spec).ok());
}

// GNU parallel takes these too; they were usage errors.
TEST(HaltPolicyTest, ParsesGnuParallelsOldForms) {
  struct Form {
    const char* text;
    HaltWhen when;
    HaltOn on;
    uint64_t count;
    double percent;
  };
  for (const Form& f : {Form{"1", HaltWhen::kSoon, HaltOn::kFail, 1, -1},
                        Form{"2", HaltWhen::kNow, HaltOn::kFail, 1, -1},
                        Form{"-1", HaltWhen::kSoon, HaltOn::kSuccess, 1, -1},
                        Form{"-2", HaltWhen::kNow, HaltOn::kSuccess, 1, -1},
                        Form{"25%", HaltWhen::kSoon, HaltOn::kFail, 0, 25}}) {
    HaltSpec spec = Parse(f.text);
    EXPECT_EQ(spec.when, f.when) << f.text;
    EXPECT_EQ(spec.on, f.on) << f.text;
    EXPECT_EQ(spec.count, f.count) << f.text;
    EXPECT_DOUBLE_EQ(spec.percent, f.percent) << f.text;
  }
  EXPECT_EQ(Parse("0").when, HaltWhen::kNever);
}

TEST(HaltPolicyTest, DoneCountsEveryFinishedItem) {
  HaltPolicy policy(Parse("soon,done=3"));
  EXPECT_EQ(policy.OnFinished(true, false, ""), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(false, false, "x"), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(true, false, ""), HaltDecision::kStopSoon);
  EXPECT_EQ(policy.failed(), 1u);
  // A task that was running finishes after the stop: it counts.
  EXPECT_EQ(policy.OnFinished(false, false, "y"), HaltDecision::kStopSoon);
  EXPECT_EQ(policy.failed(), 2u);
  EXPECT_EQ(policy.counts(), "--halt: 3 item(s) finished of 3 finished (of 3 read so far)");
}

TEST(HaltPolicyTest, NeverStopsOnOrdinaryFailures) {
  HaltPolicy policy;
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kGoOn);
}

TEST(HaltPolicyTest, FailsFastWhenTheFirstItemsAllFailFatally) {
  HaltPolicy policy;
  for (uint64_t i = 1; i < HaltPolicy::kFailFastItems; ++i) {
    EXPECT_EQ(policy.OnFinished(false, true, "cannot run '/x'"), HaltDecision::kGoOn);
  }
  EXPECT_EQ(policy.OnFinished(false, true, "cannot run '/x'"), HaltDecision::kStopNow);
  EXPECT_NE(policy.reason().find("cannot run '/x'"), std::string::npos) << policy.reason();
  EXPECT_EQ(policy.OnFinished(true, false, ""), HaltDecision::kStopNow) << "it stays decided";
}

TEST(HaltPolicyTest, NoFailFastOnceAnItemSucceeded) {
  HaltPolicy policy;
  policy.OnFinished(true, false, "");
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(policy.OnFinished(false, true, "401"), HaltDecision::kGoOn);
}

TEST(HaltPolicyTest, FailFastCountsOnlyAnUnbrokenRunOfFatalFailures) {
  HaltPolicy policy;
  for (int i = 0; i < 3; ++i) policy.OnFinished(false, true, "401");
  policy.OnFinished(false, false, "exit code 1");  // an ordinary failure: no verdict on the job
  EXPECT_EQ(policy.OnFinished(false, true, "401"), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(false, true, "401"), HaltDecision::kStopNow);
}

TEST(HaltPolicyTest, StopsNowAtTheNthFailure) {
  HaltPolicy policy(Parse("now,fail=2"));
  policy.OnFinished(true, false, "");
  EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kGoOn);
  policy.OnFinished(true, false, "");
  EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kStopNow);
}

TEST(HaltPolicyTest, StopsSoonAtTheNthSuccess) {
  HaltPolicy policy(Parse("soon,success=2"));
  EXPECT_EQ(policy.OnFinished(true, false, ""), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(true, false, ""), HaltDecision::kStopSoon);
}

TEST(HaltPolicyTest, CountsAreTheReasonWithoutWhatTheRunDoes) {
  HaltSpec spec;
  ASSERT_TRUE(ParseHalt("now,success=50%", &spec).ok());
  HaltPolicy policy(spec);
  EXPECT_EQ(policy.OnFinished(true, false, ""), HaltDecision::kGoOn);  // 1 of at least 10
  EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kGoOn);
  EXPECT_EQ(policy.SetItems(2, /*all=*/true), HaltDecision::kStopNow);
  EXPECT_EQ(policy.counts(), "--halt: 1 item(s) succeeded of 2 finished (of 2)");
  EXPECT_EQ(policy.reason(), policy.counts() + "; stopping now");
}

TEST(HaltPolicyTest, PercentOfTheItemsReadSoFarAndOfNoFewerThanTen) {
  HaltPolicy policy(Parse("now,fail=50%"));
  EXPECT_EQ(policy.SetItems(4, false), HaltDecision::kGoOn);
  // 4 of the 4 read, but a stream's first failures must not stop it: of 10.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kGoOn);
  EXPECT_EQ(policy.SetItems(30, false), HaltDecision::kGoOn);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kStopNow);  // 15 of 30
  EXPECT_NE(policy.reason().find("15 item(s) failed of 15 finished (of 30 read so far)"),
            std::string::npos)
      << policy.reason();
}

TEST(HaltPolicyTest, PercentOfAllItemsOnceTheirNumberIsKnown) {
  // As GNU parallel: 20% of 9 items is 1.8, so the second failure stops it.
  HaltPolicy policy(Parse("now,fail=20%"));
  EXPECT_EQ(policy.SetItems(9, true), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kStopNow);
  EXPECT_NE(policy.reason().find("2 item(s) failed of 2 finished (of 9)"), std::string::npos)
      << policy.reason();
}

TEST(HaltPolicyTest, PercentOfAllItemsCountsFailuresBeforeTheTotalWasKnown) {
  // A short stream: 1 failure of the 3 items read is under 20% of 10; once
  // the input ends with 5 items, it is 20% of them.
  HaltPolicy policy(Parse("soon,fail=20%"));
  EXPECT_EQ(policy.SetItems(3, false), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kGoOn);
  EXPECT_EQ(policy.SetItems(5, true), HaltDecision::kStopSoon);
}

TEST(HaltPolicyTest, PercentOfAllItemsOfSuccesses) {
  HaltPolicy policy(Parse("now,success=50%"));
  policy.SetItems(4, true);
  EXPECT_EQ(policy.OnFinished(true, false, ""), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(false, false, "e"), HaltDecision::kGoOn);
  EXPECT_EQ(policy.OnFinished(true, false, ""), HaltDecision::kStopNow);
}

}  // namespace
}  // namespace fanmap
