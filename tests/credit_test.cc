#include "coordinator/credit.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>

namespace fanmap {
namespace {

class WorkerCreditTest : public ::testing::Test {
 protected:
  // Reports `batches` batches of `tasks` results that took `micros_each`.
  void Finish(WorkerCredit* credit, uint64_t micros_each, size_t tasks = 1, int batches = 20) {
    for (int i = 0; i < batches; ++i) credit->OnResults(tasks, micros_each * tasks);
  }

  size_t Prefetch(const WorkerCredit& credit) { return credit.target() - credit.slots(); }
};

TEST_F(WorkerCreditTest, TargetIsSlotsBeforeAnyResult) {
  WorkerCredit credit(4);
  EXPECT_EQ(credit.slots(), 4u);
  EXPECT_EQ(credit.target(), 4u);
  EXPECT_EQ(credit.available(), 4u);
  EXPECT_EQ(credit.mean_task_micros(), 0.0);
}

TEST_F(WorkerCreditTest, LongTasksGetOneTaskOfPrefetch) {
  WorkerCredit credit(4);
  Finish(&credit, 1000000);
  EXPECT_EQ(credit.target(), 5u);
}

TEST_F(WorkerCreditTest, OnceTheInputIsDoneLongTasksGetNoPrefetchShortOnesKeepIt) {
  WorkerCredit slow(500);
  Finish(&slow, 100000, 500);  // 100 ms requests
  EXPECT_EQ(slow.target(), 550u);
  EXPECT_EQ(slow.target(/*input_done=*/true), 500u);
  EXPECT_EQ(slow.available(/*input_done=*/true), 500u);
  WorkerCredit fast(2);
  Finish(&fast, 1000, 100);  // 1 ms tasks: the round trip matters
  EXPECT_EQ(fast.target(/*input_done=*/true), fast.target());
  EXPECT_GT(fast.target(/*input_done=*/true), 2u);
}

TEST_F(WorkerCreditTest, VeryShortTasksGetPrefetchCappedAtMax) {
  WorkerCredit credit(2);
  Finish(&credit, 1, 100);
  EXPECT_EQ(Prefetch(credit), WorkerCredit::kMaxPrefetch);
}

TEST_F(WorkerCreditTest, TasksReportedAsZeroTimeAreCapped) {
  WorkerCredit credit(1);
  Finish(&credit, 0, 100);
  EXPECT_GT(credit.mean_task_micros(), 0.0);
  EXPECT_EQ(Prefetch(credit), WorkerCredit::kMaxPrefetch);
}

TEST_F(WorkerCreditTest, MillisecondTasksPrefetchOneHorizon) {
  WorkerCredit credit(1);
  credit.OnResults(4, 4000);
  EXPECT_DOUBLE_EQ(credit.mean_task_micros(), 1000.0);
  // 10 ms of horizon / 1 ms per task.
  EXPECT_EQ(Prefetch(credit), 10u);
  EXPECT_EQ(credit.target(), 11u);
}

TEST_F(WorkerCreditTest, PrefetchScalesWithSlots) {
  WorkerCredit one(1);
  WorkerCredit four(4);
  one.OnResults(1, 1000);
  four.OnResults(1, 1000);
  EXPECT_EQ(Prefetch(one), 10u);
  EXPECT_EQ(Prefetch(four), 40u);
}

TEST_F(WorkerCreditTest, PrefetchFollowsChangingTaskTimes) {
  WorkerCredit credit(1);
  Finish(&credit, 1000000);
  EXPECT_EQ(Prefetch(credit), 1u);
  Finish(&credit, 1000, 1, 100);
  EXPECT_NEAR(static_cast<double>(Prefetch(credit)), 10.0, 1.0);
}

TEST_F(WorkerCreditTest, OneSlowBatchIsForgottenWithinAFewBatches) {
  // A co-process's start-up (tens of ms) paid by the first answer must not
  // hold the prefetch of microsecond tasks down for dozens of batches.
  WorkerCredit credit(1);
  credit.OnResults(1, 50000);
  EXPECT_EQ(Prefetch(credit), 1u);
  Finish(&credit, 1, 100, 6);
  EXPECT_EQ(Prefetch(credit), WorkerCredit::kMaxPrefetch);
}

TEST_F(WorkerCreditTest, ABurstOfInstantFailuresRaisesThePrefetchOnlyForAFewBatches) {
  WorkerCredit credit(1);
  Finish(&credit, 100000, 1, 20);
  EXPECT_EQ(Prefetch(credit), 1u);
  credit.OnResults(100, 100);  // a burst of instant failures
  EXPECT_EQ(Prefetch(credit), 3u) << "10 ms / (100 ms^0.7 * 1 us^0.3)";
  Finish(&credit, 100000, 1, 3);
  EXPECT_EQ(Prefetch(credit), 1u);
}

TEST_F(WorkerCreditTest, ABurstOfInstantFailuresBarelyMovesTheMeanTaskTime) {
  // The mean bounds a worker's silence: an honest worker whose slow tasks
  // were interrupted by a few instant failures is still allowed their time.
  WorkerCredit credit(1);
  Finish(&credit, 100000, 1, 20);
  credit.OnResults(100, 100);
  EXPECT_DOUBLE_EQ(credit.mean_task_micros(), 0.7 * 100000 + 0.3 * 1);
  EXPECT_LT(credit.typical_task_micros(), 4000.0);
}

TEST_F(WorkerCreditTest, AvailableDecreasesWithSentAndRecoversWithResults) {
  WorkerCredit credit(3);
  credit.OnSent(2);
  EXPECT_EQ(credit.outstanding(), 2u);
  EXPECT_EQ(credit.available(), 1u);
  credit.OnSent(1);
  EXPECT_EQ(credit.available(), 0u);
  credit.OnResults(2, 2000000);  // slow tasks: one task of prefetch
  EXPECT_EQ(credit.outstanding(), 1u);
  EXPECT_EQ(credit.available(), 3u);
}

TEST_F(WorkerCreditTest, AvailableIsZeroWhenOverTarget) {
  WorkerCredit credit(1);
  credit.OnSent(5);
  EXPECT_EQ(credit.available(), 0u);
}

TEST_F(WorkerCreditTest, OutstandingNeverUnderflows) {
  WorkerCredit credit(2);
  credit.OnSent(1);
  credit.OnResults(3, 3000000);
  EXPECT_EQ(credit.outstanding(), 0u);
  EXPECT_EQ(credit.available(), 3u);  // two slots and one task of prefetch
}

TEST_F(WorkerCreditTest, ResetForgetsOutstanding) {
  WorkerCredit credit(2);
  credit.OnSent(2);
  EXPECT_EQ(credit.available(), 0u);
  credit.Reset();
  EXPECT_EQ(credit.outstanding(), 0u);
  EXPECT_EQ(credit.available(), 2u);
}

TEST_F(WorkerCreditTest, AnEarningWorkerStartsWithTheInitialCreditWhateverItClaims) {
  WorkerCredit credit(0xffffffffu, Trust::kEarned);
  EXPECT_EQ(credit.target(), WorkerCredit::kInitialCredit);
  WorkerCredit small(4, Trust::kEarned);
  EXPECT_EQ(small.target(), 4u) << "never more than its slots before a result";
}

TEST_F(WorkerCreditTest, EarnedCreditGrowsByOneForEachResult) {
  WorkerCredit credit(1000, Trust::kEarned);
  credit.OnSent(WorkerCredit::kInitialCredit);
  EXPECT_EQ(credit.available(), 0u);
  credit.OnResults(WorkerCredit::kInitialCredit, 100 * 1000000);  // 1 s tasks: prefetch 1
  EXPECT_EQ(credit.target(), 2 * WorkerCredit::kInitialCredit);
}

TEST_F(WorkerCreditTest, TasksFinishedElsewhereCostAnEarningWorkerItsCredit) {
  WorkerCredit credit(1000, Trust::kEarned);
  credit.OnSent(WorkerCredit::kInitialCredit);
  credit.OnTakenOver(WorkerCredit::kInitialCredit);
  EXPECT_EQ(credit.outstanding(), 0u);
  EXPECT_EQ(credit.available(), 0u);
}

TEST_F(WorkerCreditTest, ASpawnedWorkerKeepsItsCreditWhenATaskIsTakenOver) {
  WorkerCredit credit(4, Trust::kSpawned);
  credit.OnSent(4);
  credit.OnTakenOver(1);
  EXPECT_EQ(credit.available(), 1u);
}

}  // namespace
}  // namespace fanmap
