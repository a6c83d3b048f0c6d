#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace fanmap {
namespace {

constexpr char kRun[] = "0123456789abcdef0123456789abcdef";

class SchedulerTest : public ::testing::Test {
 protected:
  explicit SchedulerTest(SchedulerOptions options = Options()) : scheduler_(std::move(options)) {
    scheduler_.set_on_complete([this](uint64_t index) { completed_.push_back(index); });
  }

  static SchedulerOptions Options() {
    SchedulerOptions options;
    options.run_id = kRun;
    options.liveness_ms = 1000;
    options.speculate = true;
    options.retries = 2;
    options.seed = 1;
    return options;
  }

  void AddItems(int n) {
    for (int i = 0; i < n; ++i) scheduler_.AddItem("item-" + std::to_string(i));
  }

  // A worker that this coordinator spawned (spawned) or a remote peer.
  Worker& Join(const std::string& routing_id, uint32_t slots, bool spawned) {
    Hello hello;
    hello.name = routing_id;
    return scheduler_.AddWorker(routing_id, hello, slots, spawned ? 4242 : 0, now_ms_);
  }

  // Sends `worker` as many tasks as its credit allows (at most `max`);
  // returns the (index, attempt) pairs sent.
  std::vector<std::pair<uint64_t, uint32_t>> Send(Worker& worker, size_t max = SIZE_MAX) {
    std::vector<std::pair<uint64_t, uint32_t>> sent;
    uint64_t index;
    while (sent.size() < max && worker.credit.available() > 0 && scheduler_.NextTask(&index)) {
      sent.emplace_back(index, scheduler_.Assign(index, worker, now_ms_ * 1000, now_ms_));
    }
    return sent;
  }

  static Result Answer(uint64_t index, uint32_t attempt, bool ok = true, bool retryable = false) {
    Result r;
    r.index = index;
    r.attempt = attempt;
    r.ok = ok;
    r.retryable = retryable;
    r.value = ok ? "good-" + std::to_string(index) : "failed";
    r.elapsed_us = 1000;
    return r;
  }

  FrameVerdict Deliver(Worker* from, Result result, const std::string& run = kRun) {
    std::vector<Result> results{std::move(result)};
    return scheduler_.OnResults(from, run, &results, now_ms_);
  }

  const Slot& SlotOf(uint64_t index) { return *scheduler_.window().Find(index); }

  // A scheduler with 1000 retries and 5 s of --retry-for that records the
  // items it completes in `completed`.
  std::unique_ptr<Scheduler> RetryForScheduler(std::vector<uint64_t>* completed) {
    SchedulerOptions options = Options();
    options.retries = 1000;
    options.retry_for_ms = 5000;
    auto scheduler = std::make_unique<Scheduler>(options);
    scheduler->set_on_complete([completed](uint64_t index) { completed->push_back(index); });
    return scheduler;
  }

  // One item refused (429) with `retry_after_ms` under 5 s of --retry-for:
  // its record's error, or "" if it is not finished.
  std::string FailedAfterRetryAfter(uint32_t retry_after_ms) {
    std::vector<uint64_t> completed;
    std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
    Scheduler& scheduler = *owned;
    scheduler.AddItem("x");
    Hello hello;
    Worker& w = scheduler.AddWorker("w", hello, 1, 4242, now_ms_);
    uint64_t index;
    if (!scheduler.NextTask(&index)) return "";
    uint32_t attempt = scheduler.Assign(index, w, now_ms_ * 1000, now_ms_);
    Result refused = Answer(index, attempt, false, true);
    refused.value = "HTTP 429: slow down";
    refused.retry_after_ms = retry_after_ms;
    std::vector<Result> results{refused};
    scheduler.OnResults(&w, kRun, &results, now_ms_ + 10);
    const Slot* slot = scheduler.window().Find(index);
    if (completed.size() != 1 || slot == nullptr || slot->result.ok) return "";
    return slot->result.value;
  }

  // Adds items 0 and 1 and sends both, now, to a new one-slot worker "w":
  // item 1 waits behind item 0. Returns the worker.
  Worker& SendTwoItemsToOneSlot(Scheduler& scheduler) {
    scheduler.AddItem("x");
    scheduler.AddItem("y");
    Hello hello;
    hello.name = "w";
    Worker& w = scheduler.AddWorker("w", hello, 1, 4242, now_ms_);
    uint64_t index;
    for (uint64_t expected = 0; expected < 2; ++expected) {
      EXPECT_TRUE(scheduler.NextTask(&index));
      EXPECT_EQ(index, expected);
      scheduler.Assign(index, w, now_ms_ * 1000, now_ms_);
    }
    return w;
  }

  // Item 0 runs long at *primary while *helper finishes item 1 and is free:
  // returns the backup copy of item 0 that goes to *helper.
  Backup Straggle(Worker** primary, Worker** helper, uint32_t* primary_attempt) {
    AddItems(2);
    *primary = &Join("p", 1, true);
    *helper = &Join("h", 1, true);
    auto to_primary = Send(**primary);
    auto to_helper = Send(**helper);
    EXPECT_EQ(to_primary.size(), 1u);
    EXPECT_EQ(to_helper.size(), 1u);
    *primary_attempt = to_primary[0].second;
    Deliver(*helper, Answer(to_helper[0].first, to_helper[0].second));
    now_ms_ += 10000;  // far longer than tasks usually take
    std::vector<Backup> backups = scheduler_.PlanBackups(now_ms_ * 1000, now_ms_, false);
    EXPECT_EQ(backups.size(), 1u);
    if (backups.empty()) return Backup{};
    EXPECT_EQ(backups[0].index, 0u);
    EXPECT_EQ(backups[0].worker, (*helper)->id);
    EXPECT_NE(backups[0].attempt, *primary_attempt);
    return backups[0];
  }

  int64_t now_ms_ = 1000000;
  Scheduler scheduler_;
  std::vector<uint64_t> completed_;
};

TEST_F(SchedulerTest, ResultFromTheWorkerThatWasSentTheAttemptCompletesTheItem) {
  AddItems(1);
  Worker& w = Join("w", 1, true);
  auto sent = Send(w);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(Deliver(&w, Answer(0, sent[0].second)), FrameVerdict::kCounted);
  EXPECT_EQ(completed_, std::vector<uint64_t>{0});
  EXPECT_EQ(SlotOf(0).result.value, "good-0");
  EXPECT_EQ(w.credit.outstanding(), 0u);
  EXPECT_EQ(scheduler_.drops().total(), 0u);
}

TEST_F(SchedulerTest, ResultFromAnotherWorkerIsDroppedAndTheAttemptStaysOpen) {
  AddItems(2);
  Worker& a = Join("a", 1, true);
  Worker& b = Join("b", 1, true);
  auto to_a = Send(a);
  ASSERT_EQ(to_a.size(), 1u);
  // b was never sent item 0: whatever it says about it does not count.
  Result forged = Answer(0, to_a[0].second);
  forged.value = "FORGED";
  EXPECT_EQ(Deliver(&b, forged), FrameVerdict::kCounted);
  EXPECT_TRUE(completed_.empty());
  EXPECT_EQ(scheduler_.drops().unsolicited, 1u);
  EXPECT_EQ(SlotOf(0).state, SlotState::kInFlight);
  EXPECT_EQ(b.credit.outstanding(), 0u) << "a forged result frees no credit";
  // a's own answer still counts.
  Deliver(&a, Answer(0, to_a[0].second));
  EXPECT_EQ(SlotOf(0).result.value, "good-0");
}

TEST_F(SchedulerTest, ResultForAnIndexNeverSentIsDropped) {
  AddItems(3);
  Worker& w = Join("w", 1, true);
  auto sent = Send(w);
  ASSERT_EQ(sent.size(), 1u);
  Deliver(&w, Answer(1, 0));       // in the window, never sent
  Deliver(&w, Answer(999999, 0));  // beyond the window
  Deliver(&w, Answer(0, 7));       // an attempt that was never made
  EXPECT_TRUE(completed_.empty());
  EXPECT_EQ(scheduler_.drops().unsolicited, 3u);
  EXPECT_EQ(SlotOf(1).state, SlotState::kPending);
}

TEST_F(SchedulerTest, ResultsFromAPeerThatNeverSaidHelloAreDropped) {
  AddItems(1);
  Worker& w = Join("w", 1, true);
  auto sent = Send(w);
  EXPECT_EQ(Deliver(nullptr, Answer(0, sent[0].second)), FrameVerdict::kUnknownPeer);
  EXPECT_TRUE(completed_.empty());
  EXPECT_EQ(scheduler_.drops().unknown_peer, 1u);
}

TEST_F(SchedulerTest, ResultsOfAnotherRunAreDroppedEvenFromAWorkerOfThisRun) {
  AddItems(1);
  Worker& w = Join("w", 1, true);
  auto sent = Send(w);
  EXPECT_EQ(Deliver(&w, Answer(0, sent[0].second), "ffffffffffffffffffffffffffffffff"),
            FrameVerdict::kOtherRun);
  EXPECT_TRUE(completed_.empty());
  EXPECT_EQ(scheduler_.drops().other_run, 1u);
  EXPECT_EQ(SlotOf(0).state, SlotState::kInFlight);
}

TEST_F(SchedulerTest, ASecondResultForTheSameAttemptIsLate) {
  AddItems(1);
  Worker& w = Join("w", 1, true);
  auto sent = Send(w);
  Deliver(&w, Answer(0, sent[0].second));
  Result again = Answer(0, sent[0].second);
  again.value = "second";
  Deliver(&w, again);
  EXPECT_EQ(completed_.size(), 1u);
  EXPECT_EQ(SlotOf(0).result.value, "good-0");
  EXPECT_EQ(scheduler_.drops().late, 1u);
}

TEST_F(SchedulerTest, BackupRacingItsPrimaryFirstResultWinsAndTheLoserIsLate) {
  Worker* primary;
  Worker* helper;
  uint32_t primary_attempt;
  Backup backup = Straggle(&primary, &helper, &primary_attempt);
  // The backup answers first and wins; the primary's answer comes late.
  Result from_backup = Answer(0, backup.attempt);
  from_backup.value = "from backup";
  Deliver(helper, from_backup);
  EXPECT_EQ(SlotOf(0).result.value, "from backup");
  EXPECT_EQ(primary->credit.outstanding(), 0u) << "the loser's copy is no longer its to finish";
  Deliver(primary, Answer(0, primary_attempt));
  EXPECT_EQ(SlotOf(0).result.value, "from backup");
  EXPECT_EQ(completed_, (std::vector<uint64_t>{1, 0}));
  EXPECT_EQ(scheduler_.drops().late, 1u);
}

TEST_F(SchedulerTest, PrimaryWinningItsRaceMakesTheBackupLate) {
  Worker* primary;
  Worker* helper;
  uint32_t primary_attempt;
  Backup backup = Straggle(&primary, &helper, &primary_attempt);
  Deliver(primary, Answer(0, primary_attempt));
  EXPECT_EQ(SlotOf(0).result.value, "good-0");
  EXPECT_EQ(helper->credit.outstanding(), 0u);
  Result from_backup = Answer(0, backup.attempt);
  from_backup.value = "from backup";
  Deliver(helper, from_backup);
  EXPECT_EQ(SlotOf(0).result.value, "good-0");
  EXPECT_EQ(scheduler_.drops().late, 1u);
}

TEST_F(SchedulerTest, FailedBackupLeavesThePrimaryRunning) {
  Worker* primary;
  Worker* helper;
  uint32_t primary_attempt;
  Backup backup = Straggle(&primary, &helper, &primary_attempt);
  Deliver(helper, Answer(0, backup.attempt, false, true));
  EXPECT_EQ(SlotOf(0).state, SlotState::kInFlight);
  Deliver(primary, Answer(0, primary_attempt));
  EXPECT_EQ(SlotOf(0).result.value, "good-0");
}

TEST_F(SchedulerTest, RetryableFailuresRetryUntilTheRetriesAreUsedUp) {
  AddItems(1);
  Worker& w = Join("w", 1, true);
  for (int attempt = 0; attempt < 3; ++attempt) {
    now_ms_ += 60000;  // past any backoff
    scheduler_.ReleaseDueRetries(now_ms_);
    auto sent = Send(w);
    ASSERT_EQ(sent.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(sent[0].second, static_cast<uint32_t>(attempt));
    Deliver(&w, Answer(0, sent[0].second, false, true));
  }
  ASSERT_EQ(completed_.size(), 1u);
  EXPECT_FALSE(SlotOf(0).result.ok);
  EXPECT_EQ(scheduler_.retried(), 2u);
}

TEST_F(SchedulerTest, UnchargedFailuresDoNotUseUpTheRetries) {
  AddItems(1);
  Worker& w = Join("w", 1, true);
  // Every failure is a throttle the caller does not charge: 20 failures,
  // far more than --retries 2, and the item is still retried.
  scheduler_.set_charges([](const Result&) { return false; });
  for (int attempt = 0; attempt < 20; ++attempt) {
    now_ms_ += 1000;  // past any backoff
    scheduler_.ReleaseDueRetries(now_ms_);
    auto sent = Send(w);
    ASSERT_EQ(sent.size(), 1u) << "attempt " << attempt;
    Deliver(&w, Answer(0, sent[0].second, false, true));
  }
  EXPECT_TRUE(completed_.empty());
  // Charged failures count again.
  scheduler_.set_charges([](const Result&) { return true; });
  for (int attempt = 0; attempt < 3; ++attempt) {
    now_ms_ += 60000;
    scheduler_.ReleaseDueRetries(now_ms_);
    auto sent = Send(w);
    ASSERT_EQ(sent.size(), 1u);
    Deliver(&w, Answer(0, sent[0].second, false, true));
  }
  ASSERT_EQ(completed_.size(), 1u);
  EXPECT_FALSE(SlotOf(0).result.ok);
}

TEST_F(SchedulerTest, NoRetryPastRetryForAfterTheFirstAttempt) {
  std::vector<uint64_t> completed;
  std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
  Scheduler& scheduler = *owned;
  scheduler.AddItem("x");
  Hello hello;
  Worker& w = scheduler.AddWorker("w", hello, 1, 4242, now_ms_);
  int64_t first = now_ms_;
  int attempts = 0;
  while (completed.empty() && attempts < 1000) {
    scheduler.ReleaseDueRetries(now_ms_);
    uint64_t index;
    if (scheduler.NextTask(&index)) {
      uint32_t attempt = scheduler.Assign(index, w, now_ms_ * 1000, now_ms_);
      ++attempts;
      std::vector<Result> results{Answer(index, attempt, false, true)};
      scheduler.OnResults(&w, kRun, &results, now_ms_);
    }
    now_ms_ += 100;
  }
  ASSERT_EQ(completed.size(), 1u);
  const Slot* slot = scheduler.window().Find(0);
  ASSERT_NE(slot, nullptr);
  EXPECT_NE(slot->result.value.find("(not retried: its next attempt would start later than "
                                    "--retry-for allows)"),
            std::string::npos)
      << slot->result.value;
  // Given up at the first failure whose retry would go out past 5 s, long
  // before 1000 retries.
  EXPECT_GE(attempts, 2);
  EXPECT_LE(now_ms_ - first, 5000 + 100);
  EXPECT_LT(attempts, 1000);
}

TEST_F(SchedulerTest, AnItemWhoseWorkerDiesPastRetryForFailsInsteadOfGoingAgain) {
  // Its worker dies 6 s after its first attempt, with 5 s of --retry-for:
  // going again would be a retry past its time. Attempts are not the limit.
  std::vector<uint64_t> completed;
  std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
  Scheduler& scheduler = *owned;
  // The second task never runs (one slot): it keeps its attempt and goes again.
  Worker& w = SendTwoItemsToOneSlot(scheduler);
  WorkerLoss loss = scheduler.RemoveWorker(w.id, "killed", now_ms_ + 6000);
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0], 0u);
  const Slot* slot = scheduler.window().Find(0);
  ASSERT_NE(slot, nullptr);
  EXPECT_FALSE(slot->result.ok);
  EXPECT_NE(slot->result.value.find("worker lost while running this item"), std::string::npos)
      << slot->result.value;
  EXPECT_NE(slot->result.value.find("later than --retry-for allows"), std::string::npos)
      << slot->result.value;
  EXPECT_EQ(loss.failed, std::vector<uint64_t>{0});
  EXPECT_TRUE(scheduler.HasUnsent()) << "the task that never ran goes again";
}

// Item 0 fails at once and is sent again at 4 s, queued behind item 1 at a
// one-slot worker (5 s of --retry-for from item 0's first attempt, now_ms_).
// Returns the worker.
Worker& QueueARetryBehindAnotherItem(Scheduler& scheduler, int64_t first) {
  scheduler.AddItem("x");
  scheduler.AddItem("y");
  Hello hello;
  hello.name = "w";
  Worker& w = scheduler.AddWorker("w", hello, 1, 4242, first);
  uint64_t index;
  EXPECT_TRUE(scheduler.NextTask(&index));
  uint32_t attempt = scheduler.Assign(index, w, first * 1000, first);
  Result failed;
  failed.index = index;
  failed.attempt = attempt;
  failed.ok = false;
  failed.retryable = true;
  failed.value = "HTTP 503: down";
  std::vector<Result> results{failed};
  scheduler.OnResults(&w, kRun, &results, first);
  EXPECT_TRUE(scheduler.NextTask(&index));
  EXPECT_EQ(index, 1u);
  scheduler.Assign(index, w, first * 1000, first);  // runs in the one slot
  scheduler.ReleaseDueRetries(first + 4000);
  EXPECT_TRUE(scheduler.NextTask(&index));
  EXPECT_EQ(index, 0u);
  scheduler.Assign(index, w, (first + 4000) * 1000, first + 4000);  // waits behind item 1
  return w;
}

// Item 0's --retry-for runs out while its retry waits at the worker; the
// worker is lost at 6 s. The attempt that never started is not charged, but
// the item is a retry all the same, and too late for another: it fails.
void ExpectAQueuedRetryFailsWithItsWorkerPastRetryFor(Scheduler& scheduler,
                                                      const std::vector<uint64_t>& completed,
                                                      int64_t first) {
  Worker& w = QueueARetryBehindAnotherItem(scheduler, first);
  EXPECT_EQ(scheduler.ExpireRetries(first + 5000), 0u) << "in flight";
  WorkerLoss loss = scheduler.RemoveWorker(w.id, "killed", first + 6000);
  EXPECT_EQ(loss.resent, 0u);
  ASSERT_EQ(completed.size(), 2u);
  const Slot* slot = scheduler.window().Find(0);
  ASSERT_NE(slot, nullptr);
  EXPECT_EQ(slot->state, SlotState::kDone);
  EXPECT_EQ(slot->result.value,
            "HTTP 503: down (not retried: its next attempt would start later than --retry-for "
            "allows)");
  EXPECT_FALSE(scheduler.HasUnsent()) << "nothing goes again past --retry-for";
}

TEST_F(SchedulerTest, ARetryQueuedAtAWorkerLostPastRetryForFails) {
  std::vector<uint64_t> completed;
  std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
  ExpectAQueuedRetryFailsWithItsWorkerPastRetryFor(*owned, completed, now_ms_);
}

TEST_F(SchedulerTest, ARetryAfterAnUnchargedFailureQueuedAtAWorkerLostPastRetryForFails) {
  // Regression: the same when item 0's failure was not charged (a 429, or
  // an outage's): it was judged by its charged attempts, none once the lost
  // attempt was taken back, and went out again past --retry-for.
  std::vector<uint64_t> completed;
  std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
  owned->set_charges([](const Result&) { return false; });
  ExpectAQueuedRetryFailsWithItsWorkerPastRetryFor(*owned, completed, now_ms_);
}

TEST_F(SchedulerTest, RetryForCountsFromTheFirstAttemptThatStarted) {
  // Regression: an item sent to a worker that was lost before it started
  // it had its --retry-for counted from that send. Item 1 waits behind
  // item 0 at a one-slot worker lost at 4.5 s; sent again at 6 s, it fails
  // and, 0.1 s into its first real attempt, is retried.
  std::vector<uint64_t> completed;
  std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
  Scheduler& scheduler = *owned;
  Worker& lost = SendTwoItemsToOneSlot(scheduler);
  WorkerLoss loss = scheduler.RemoveWorker(lost.id, "killed", now_ms_ + 4500);
  EXPECT_EQ(loss.resent, 2u);
  EXPECT_EQ(scheduler.window().Find(1)->first_sent_ms, -1) << "its attempt never started";
  // Both go out again at 6 s: item 0 (a retry, past its own --retry-for,
  // which only ExpireRetries would act on while it waits) just fills the
  // queue ahead of item 1, whose answer is the one looked at.
  Hello hello;
  Worker& w = scheduler.AddWorker("w2", hello, 2, 4243, now_ms_ + 6000);
  uint64_t index;
  uint32_t attempt = 0;
  for (uint64_t expected = 0; expected < 2; ++expected) {
    ASSERT_TRUE(scheduler.NextTask(&index));
    ASSERT_EQ(index, expected);
    attempt = scheduler.Assign(index, w, (now_ms_ + 6000) * 1000, now_ms_ + 6000);
  }
  Result failed = Answer(1, attempt, false, true);
  failed.value = "HTTP 503: down";
  std::vector<Result> results{failed};
  scheduler.OnResults(&w, kRun, &results, now_ms_ + 6100);
  EXPECT_EQ(scheduler.window().Find(1)->state, SlotState::kPending) << "waits for its retry";
  EXPECT_TRUE(completed.empty());
}

TEST_F(SchedulerTest, ATaskTakenBackUnsentKeepsItsFirstAttemptOnlyIfItIsARetry) {
  // A frame that never left (Unassign): item 1 was never sent, so its
  // --retry-for has not begun; item 0 failed before and keeps counting from
  // its first attempt, as any retry does.
  std::vector<uint64_t> completed;
  std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
  Scheduler& scheduler = *owned;
  Worker& w = QueueARetryBehindAnotherItem(scheduler, now_ms_);
  scheduler.Unassign({0, 1}, w);
  EXPECT_EQ(w.credit.outstanding(), 0u);
  EXPECT_EQ(scheduler.window().Find(0)->first_sent_ms, now_ms_);
  EXPECT_EQ(scheduler.window().Find(1)->first_sent_ms, -1);
  EXPECT_EQ(scheduler.ExpireRetries(now_ms_ + 6000), 1u);
  EXPECT_EQ(completed, std::vector<uint64_t>{0});
  EXPECT_EQ(scheduler.window().Find(1)->state, SlotState::kPending);
}

// A scheduler that copies stragglers (Straggle: 10 s) under 60 s of
// --retry-for.
class RetryForBackupTest : public SchedulerTest {
 protected:
  RetryForBackupTest() : SchedulerTest(RetryForOptions()) {}
  static SchedulerOptions RetryForOptions() {
    SchedulerOptions options = Options();
    options.retries = 1000;
    options.retry_for_ms = 60000;
    return options;
  }
  // Item 0 is the one copy left, 70 s after its first attempt, at a worker
  // that now leaves (BYE: nothing charged, as if it never started item 0).
  // It ran before, so it is a retry past its time: it fails.
  void ExpectTheLastCopyLeftPastRetryForFails(Worker* holder) {
    now_ms_ += 60000;
    WorkerLoss loss =
        scheduler_.RemoveWorker(holder->id, "left", now_ms_, Scheduler::LossCharge::kChargeNone);
    EXPECT_EQ(loss.failed, std::vector<uint64_t>{0});
    EXPECT_EQ(SlotOf(0).state, SlotState::kDone);
    EXPECT_NE(SlotOf(0).result.value.find("later than --retry-for allows"), std::string::npos)
        << SlotOf(0).result.value;
    EXPECT_FALSE(scheduler_.HasUnsent()) << "nothing goes again past --retry-for";
  }
};

TEST_F(RetryForBackupTest, APrimaryWhoseBackupFailedIsARetryWhenItsWorkerLeaves) {
  Worker* primary;
  Worker* helper;
  uint32_t primary_attempt;
  Backup backup = Straggle(&primary, &helper, &primary_attempt);
  Deliver(helper, Answer(0, backup.attempt, false, true));  // that copy closes
  ExpectTheLastCopyLeftPastRetryForFails(primary);
}

TEST_F(RetryForBackupTest, ABackupLeftAloneByItsLostPrimaryIsARetryWhenItsWorkerLeaves) {
  Worker* primary;
  Worker* helper;
  uint32_t primary_attempt;
  Straggle(&primary, &helper, &primary_attempt);
  WorkerLoss loss = scheduler_.RemoveWorker(primary->id, "killed", now_ms_);
  EXPECT_EQ(loss.resent, 1u) << "the backup runs on";
  ExpectTheLastCopyLeftPastRetryForFails(helper);
}

TEST_F(SchedulerTest, ItemsRequeuedAfterAWorkerLossStillExpireWithRetryFor) {
  // The worker is lost at 4.5 s, in time: both items go back to wait, and
  // then nothing can take them before 5 s. Item 1's first attempt died with
  // the worker, item 0 is a retry: both fail once --retry-for has run out,
  // each saying why.
  std::vector<uint64_t> completed;
  std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
  Scheduler& scheduler = *owned;
  Worker& w = QueueARetryBehindAnotherItem(scheduler, now_ms_);
  WorkerLoss loss = scheduler.RemoveWorker(w.id, "killed", now_ms_ + 4500);
  EXPECT_EQ(loss.resent, 2u);
  EXPECT_TRUE(completed.empty());
  EXPECT_EQ(scheduler.ExpireRetries(now_ms_ + 4999), 0u);
  EXPECT_EQ(scheduler.ExpireRetries(now_ms_ + 5000), 2u);
  ASSERT_EQ(completed.size(), 2u);
  EXPECT_EQ(scheduler.window().Find(0)->result.value,
            "HTTP 503: down (not retried: its next attempt would start later than --retry-for "
            "allows)");
  EXPECT_EQ(scheduler.window().Find(1)->result.value,
            "worker lost while running this item (w killed) (not retried: its next attempt "
            "would start later than --retry-for allows)");
  uint64_t index;
  EXPECT_FALSE(scheduler.NextTask(&index)) << "nothing goes again past --retry-for";
}

TEST_F(SchedulerTest, NoRetryWhoseRetryAfterEndsPastRetryFor) {
  // A 30 s Retry-After with 5 s of --retry-for: the retry would go out too
  // late, so the item fails now instead of waiting 30 s to.
  EXPECT_EQ(FailedAfterRetryAfter(30000),
            "HTTP 429: slow down (not retried: after the 30 s the server asks to wait, it would "
            "start later than --retry-for allows)");
}

TEST_F(SchedulerTest, TheNotRetriedNoteSaysTheRetryAfterThatCounted) {
  // Regression: a peer may send any Retry-After; the note said "after the
  // 0 s" for one near 2^32 ms (the sum wrapped), and the raw figure above
  // the 600 s that the delay actually uses.
  EXPECT_EQ(FailedAfterRetryAfter(UINT32_MAX),
            "HTTP 429: slow down (not retried: after the 600 s the server asks to wait, it would "
            "start later than --retry-for allows)");
}

TEST_F(SchedulerTest, ARetryHeldBackPastRetryForFailsWithItsLastError) {
  // An outage's pause (or a lack of workers) keeps a due retry from going
  // out: once --retry-for has run out it fails, without another attempt.
  std::vector<uint64_t> completed;
  std::unique_ptr<Scheduler> owned = RetryForScheduler(&completed);
  Scheduler& scheduler = *owned;
  scheduler.AddItem("x");
  scheduler.AddItem("y");
  Hello hello;
  Worker& w = scheduler.AddWorker("w", hello, 2, 4242, now_ms_);
  int64_t first = now_ms_;
  for (int i = 0; i < 2; ++i) {
    uint64_t index;
    ASSERT_TRUE(scheduler.NextTask(&index));
    uint32_t attempt = scheduler.Assign(index, w, now_ms_ * 1000, now_ms_);
    Result failed = Answer(index, attempt, false, true);
    failed.value = "HTTP 503: down " + std::to_string(index);
    failed.extra["status"] = int64_t{503};
    std::vector<Result> results{failed};
    scheduler.OnResults(&w, kRun, &results, now_ms_);
  }
  EXPECT_TRUE(completed.empty());
  // Item 1 is sent again (and is in flight when the time runs out); item 0
  // is never sent again.
  scheduler.ReleaseDueRetries(first + 4000);
  EXPECT_EQ(scheduler.ExpireRetries(first + 4999), 0u);
  uint64_t index;
  ASSERT_TRUE(scheduler.NextTask(&index));
  ASSERT_EQ(index, 0u);
  scheduler.PutBack(0);
  ASSERT_TRUE(scheduler.NextTask(&index));  // 0 again, kept pending
  ASSERT_TRUE(scheduler.NextTask(&index));
  ASSERT_EQ(index, 1u);
  uint32_t attempt = scheduler.Assign(1, w, (first + 4500) * 1000, first + 4500);
  EXPECT_EQ(scheduler.ExpireRetries(first + 5000), 1u);
  ASSERT_EQ(completed, (std::vector<uint64_t>{0}));
  const Slot* slot = scheduler.window().Find(0);
  ASSERT_NE(slot, nullptr);
  EXPECT_EQ(slot->state, SlotState::kDone);
  EXPECT_FALSE(slot->result.ok);
  EXPECT_FALSE(slot->result.retryable);
  EXPECT_EQ(slot->result.value,
            "HTTP 503: down 0 (not retried: its next attempt would start later than --retry-for "
            "allows)");
  EXPECT_EQ(std::get<int64_t>(slot->result.extra.at("status")), 503);
  // Item 1's answer comes past the limit: it is not retried either.
  std::vector<Result> results{Answer(1, attempt, false, true)};
  scheduler.OnResults(&w, kRun, &results, first + 5100);
  EXPECT_EQ(completed, (std::vector<uint64_t>{0, 1}));
}

TEST_F(SchedulerTest, FailUnsentFailsWhatWaitsAndLeavesWhatRuns) {
  std::vector<uint64_t> completed;
  scheduler_.set_on_complete([&completed](uint64_t index) { completed.push_back(index); });
  for (int i = 0; i < 4; ++i) scheduler_.AddItem("x" + std::to_string(i));
  Hello hello;
  Worker& w = scheduler_.AddWorker("w", hello, 2, 4242, now_ms_);
  uint64_t index;
  ASSERT_TRUE(scheduler_.NextTask(&index));
  uint32_t a0 = scheduler_.Assign(index, w, now_ms_ * 1000, now_ms_);  // 0 runs
  ASSERT_TRUE(scheduler_.NextTask(&index));
  uint32_t a1 = scheduler_.Assign(index, w, now_ms_ * 1000, now_ms_);  // 1 fails, waits
  Deliver(&w, Answer(1, a1, false, true));
  EXPECT_EQ(scheduler_.FailUnsent("given up"), 3u);  // 1, and 2 and 3 never sent
  EXPECT_EQ(completed, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(SlotOf(2).result.value, "given up");
  EXPECT_FALSE(SlotOf(2).result.ok);
  EXPECT_EQ(SlotOf(0).state, SlotState::kInFlight);
  EXPECT_FALSE(scheduler_.NextTask(&index));
  Deliver(&w, Answer(0, a0));
  EXPECT_EQ(completed, (std::vector<uint64_t>{1, 2, 3, 0}));
  EXPECT_TRUE(SlotOf(0).result.ok);
  // Nothing stale is left to send; an item read later goes out as usual.
  EXPECT_FALSE(scheduler_.HasUnsent());
  scheduler_.AddItem("x4");
  EXPECT_TRUE(scheduler_.HasUnsent());
  ASSERT_TRUE(scheduler_.NextTask(&index));
  EXPECT_EQ(index, 4u);
}

TEST_F(SchedulerTest, AResultForAnAttemptThatWasRequeuedIsNotTheNewAttempts) {
  AddItems(1);
  Worker& a = Join("a", 1, true);
  Worker& b = Join("b", 1, true);
  auto first = Send(a);
  scheduler_.RemoveWorker(a.id, "lost", now_ms_);
  auto second = Send(b);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_NE(second[0].second, first[0].second);
  // b answers the old attempt number (as a forger would): not b's attempt.
  Deliver(&b, Answer(0, first[0].second));
  EXPECT_TRUE(completed_.empty());
  Deliver(&b, Answer(0, second[0].second));
  EXPECT_EQ(completed_.size(), 1u);
}

// As Coordinator::Dispatch fills one worker's frame: Fits decides, and
// suspects that do not fit here are passed over for the next worker.
std::vector<std::pair<uint64_t, uint32_t>> SendFitting(Scheduler& scheduler, Worker& worker,
                                                       int64_t now_ms) {
  std::vector<std::pair<uint64_t, uint32_t>> sent;
  std::vector<uint64_t> passed;
  uint64_t index;
  while (worker.credit.available() > 0 && scheduler.NextTask(&index)) {
    Scheduler::Fit fit = scheduler.Fits(index, worker, sent.size());
    if (fit == Scheduler::Fit::kWorkerBusy) {
      scheduler.PutBack(index);
      break;
    }
    if (fit == Scheduler::Fit::kNotHere) {
      passed.push_back(index);
      continue;
    }
    sent.emplace_back(index, scheduler.Assign(index, worker, now_ms * 1000, now_ms));
    if (fit == Scheduler::Fit::kTakeAlone) break;
  }
  for (auto it = passed.rbegin(); it != passed.rend(); ++it) scheduler.PutBack(*it);
  return sent;
}

TEST_F(SchedulerTest, ItemsTwoLostWorkersHeldRunAloneSoThatOnlyThePoisonIsCharged) {
  // Workers with one slot hold items 0..3 and die while running item 0. Was
  // it item 0? Or had item 0's result died in flight and item 1 killed it?
  AddItems(8);
  for (const char* name : {"a", "b"}) {
    Worker& w = Join(name, 1, true);
    w.credit.OnResults(1, 1000);  // 1 ms tasks seen: prefetch beyond its one slot
    auto held = SendFitting(scheduler_, w, now_ms_);
    ASSERT_GE(held.size(), 4u);
    // One loss alone isolates nothing: a worker killed from outside must not
    // make its tasks run one at a time.
    for (const auto& [index, attempt] : held) {
      EXPECT_FALSE(SlotOf(index).suspect) << name << " " << index;
    }
    // Only items 0..3 were in flight with both: give the rest back.
    std::vector<uint64_t> extra;
    for (const auto& [index, attempt] : held) {
      if (index >= 4) extra.push_back(index);
    }
    scheduler_.Unassign(extra, w);
    scheduler_.RemoveWorker(w.id, "killed", now_ms_);
  }
  EXPECT_EQ(SlotOf(0).charged, 2u);  // the oldest: charged each time
  EXPECT_EQ(SlotOf(1).charged, 0u);  // never started, by what the coordinator knows
  for (uint64_t i = 0; i < 4; ++i) EXPECT_TRUE(SlotOf(i).suspect) << i;

  Worker& c = Join("c", 4, true);
  Worker& d = Join("d", 4, true);
  Worker& e = Join("e", 4, true);
  auto to_c = SendFitting(scheduler_, c, now_ms_);
  ASSERT_EQ(to_c.size(), 1u);  // item 0 alone
  EXPECT_EQ(to_c[0].first, 0u);
  EXPECT_TRUE(SendFitting(scheduler_, c, now_ms_).empty());  // nothing beside it
  auto to_d = SendFitting(scheduler_, d, now_ms_);
  ASSERT_EQ(to_d.size(), 1u);
  EXPECT_EQ(to_d[0].first, 1u);
  // Item 1 is the poison: d dies running it alone, and only item 1 pays.
  scheduler_.RemoveWorker(d.id, "killed", now_ms_);
  EXPECT_EQ(SlotOf(1).charged, 1u);

  // e takes a suspect alone; a busy worker lets suspects go past to take
  // the items nobody suspects.
  auto to_e = SendFitting(scheduler_, e, now_ms_);
  ASSERT_EQ(to_e.size(), 1u);
  EXPECT_EQ(to_e[0].first, 1u);
  Worker& f = Join("f", 4, true);
  Worker& g = Join("g", 4, true);
  auto to_f = SendFitting(scheduler_, f, now_ms_);
  ASSERT_EQ(to_f.size(), 1u);  // suspect 2, alone
  EXPECT_EQ(to_f[0].first, 2u);
  auto to_g = SendFitting(scheduler_, g, now_ms_);
  ASSERT_EQ(to_g.size(), 1u);  // suspect 3, alone
  EXPECT_EQ(to_g[0].first, 3u);
  Deliver(&c, Answer(0, to_c[0].second));
  auto rest = SendFitting(scheduler_, c, now_ms_);
  EXPECT_EQ(rest.size(), 4u);  // items 4..7 together
  for (const auto& [index, attempt] : rest) EXPECT_GE(index, 4u);
}

TEST_F(SchedulerTest, APeerThatLeavesOrAnswersAnotherRunChargesNothing) {
  // A peer that takes tasks, then says BYE or answers with another run's id,
  // and joins again, over and over: no item loses an attempt to it.
  AddItems(4);
  for (int round = 0; round < 5; ++round) {
    Worker& w = Join("peer" + std::to_string(round), 1, false);
    ASSERT_FALSE(SendFitting(scheduler_, w, now_ms_).empty());
    scheduler_.RemoveWorker(w.id, "left", now_ms_, Scheduler::LossCharge::kChargeNone);
  }
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(SlotOf(i).charged, 0u) << i;
    EXPECT_FALSE(SlotOf(i).suspect) << i;
  }
  EXPECT_TRUE(completed_.empty());
}

TEST_F(SchedulerTest, ABusyWorkerTakesTheItemsBehindASuspect) {
  AddItems(6);
  for (const char* name : {"a", "b"}) {
    Worker& w = Join(name, 1, true);
    auto held = SendFitting(scheduler_, w, now_ms_);
    ASSERT_EQ(held.size(), 1u);
    EXPECT_EQ(held[0].first, 0u);
    scheduler_.RemoveWorker(w.id, "killed", now_ms_);
  }
  ASSERT_TRUE(SlotOf(0).suspect);
  Worker& busy = Join("busy", 2, true);
  auto first = SendFitting(scheduler_, busy, now_ms_);
  ASSERT_EQ(first.size(), 1u);  // the suspect, alone: busy held nothing
  EXPECT_EQ(first[0].first, 0u);
  Worker& other = Join("other", 2, true);
  auto second = SendFitting(scheduler_, other, now_ms_);
  ASSERT_EQ(second.size(), 2u);  // items 1 and 2: nothing stalls behind a suspect
  EXPECT_EQ(second[0].first, 1u);
  EXPECT_EQ(second[1].first, 2u);
}

TEST_F(SchedulerTest, HoardingPeerHoldsOnlyItsInitialCreditWhateverSlotsItClaims) {
  AddItems(2000);
  Worker& hoarder = Join("hoarder", 65536, false);
  auto held = Send(hoarder);
  EXPECT_EQ(held.size(), WorkerCredit::kInitialCredit);
  EXPECT_EQ(hoarder.credit.available(), 0u);
}

TEST_F(SchedulerTest, EarnedCreditGrowsWithResults) {
  AddItems(1000);
  Worker& peer = Join("peer", 65536, false);
  auto sent = Send(peer);
  ASSERT_EQ(sent.size(), WorkerCredit::kInitialCredit);
  std::vector<Result> results;
  for (auto [index, attempt] : sent) results.push_back(Answer(index, attempt));
  scheduler_.OnResults(&peer, kRun, &results, now_ms_);
  EXPECT_EQ(Send(peer).size(), 2 * WorkerCredit::kInitialCredit);
}

TEST_F(SchedulerTest, SilentHoardersTasksGoElsewhereAndItGetsNoMore) {
  AddItems(40);
  Worker& hoarder = Join("hoarder", 65536, false);
  auto held = Send(hoarder);
  ASSERT_EQ(held.size(), WorkerCredit::kInitialCredit);
  Worker& good = Join("good", 4, true);
  // The good worker does everything else.
  for (auto sent = Send(good); !sent.empty(); sent = Send(good)) {
    std::vector<Result> results;
    for (auto [index, attempt] : sent) results.push_back(Answer(index, attempt));
    scheduler_.OnResults(&good, kRun, &results, now_ms_);
  }
  // Before the liveness bound: the hoarder is not yet silent.
  EXPECT_FALSE(scheduler_.IsSilentHolder(hoarder, now_ms_ + 500));
  now_ms_ += 1001;
  hoarder.last_heard_ms = now_ms_;  // it heartbeats, but returns nothing
  good.last_heard_ms = now_ms_;
  EXPECT_TRUE(scheduler_.IsSilentHolder(hoarder, now_ms_));
  EXPECT_TRUE(scheduler_.SilentWorkers(now_ms_).empty()) << "it is heard from";
  size_t rescued = 0;
  for (int round = 0; round < 100 && completed_.size() < 40; ++round) {
    std::vector<Backup> backups = scheduler_.PlanBackups(now_ms_ * 1000, now_ms_, false);
    for (const Backup& b : backups) {
      ASSERT_EQ(b.worker, good.id);
      Deliver(&good, Answer(b.index, b.attempt));
      ++rescued;
    }
  }
  EXPECT_EQ(rescued, held.size());
  EXPECT_EQ(completed_.size(), 40u);
  EXPECT_EQ(hoarder.credit.outstanding(), 0u);
  EXPECT_EQ(hoarder.credit.available(), 0u) << "tasks finished elsewhere cost it its credit";
  // Its answers now come too late to count.
  Deliver(&hoarder, Answer(held[0].first, held[0].second));
  EXPECT_EQ(SlotOf(held[0].first).result.value, "good-" + std::to_string(held[0].first));
}

TEST_F(SchedulerTest, SpawnedWorkersAreNeverTreatedAsHoarders) {
  AddItems(4);
  Worker& local = Join("local", 4, true);
  EXPECT_EQ(Send(local).size(), 4u);
  now_ms_ += 100000;
  EXPECT_FALSE(scheduler_.IsSilentHolder(local, now_ms_));
}

TEST_F(SchedulerTest, LosingAnUnprovenPeerChargesAtMostOneAttempt) {
  AddItems(100);
  Worker& peer = Join("peer", 65536, false);
  auto held = Send(peer);
  ASSERT_EQ(held.size(), WorkerCredit::kInitialCredit);
  WorkerLoss loss = scheduler_.RemoveWorker(peer.id, "silent", now_ms_);
  EXPECT_EQ(loss.resent, held.size());
  EXPECT_TRUE(loss.failed.empty());
  size_t charged = 0;
  for (auto [index, attempt] : held) charged += SlotOf(index).charged;
  EXPECT_EQ(charged, 1u) << "its claimed 65536 slots are not believed";
  EXPECT_EQ(scheduler_.workers().Find(peer.id), nullptr);
}

TEST_F(SchedulerTest, AnItemLostWithItsWorkerOnEveryAttemptFails) {
  AddItems(1);
  for (int i = 0; i < 3; ++i) {
    Worker& w = Join("w" + std::to_string(i), 1, true);
    ASSERT_EQ(Send(w).size(), 1u);
    WorkerLoss loss = scheduler_.RemoveWorker(w.id, "crashed", now_ms_);
    if (i < 2) {
      EXPECT_TRUE(loss.failed.empty());
    } else {
      EXPECT_EQ(loss.failed, std::vector<uint64_t>{0});
    }
  }
  ASSERT_EQ(completed_.size(), 1u);
  EXPECT_FALSE(SlotOf(0).result.ok);
}

TEST_F(SchedulerTest, WorkersAreFoundByRoutingIdAndNotAfterRemoval) {
  Worker& a = Join("route-a", 1, true);
  Join("route-b", 1, true);
  EXPECT_EQ(scheduler_.workers().Find("route-a"), &a);
  EXPECT_EQ(scheduler_.workers().Find(a.id), &a);
  scheduler_.RemoveWorker(a.id, "gone", now_ms_);
  EXPECT_EQ(scheduler_.workers().Find("route-a"), nullptr);
  EXPECT_EQ(scheduler_.workers().size(), 1u);
}

TEST_F(SchedulerTest, NoBackupsWhileThereIsNewWorkToSend) {
  AddItems(10);
  Worker& a = Join("a", 1, true);
  Join("b", 1, true);
  Send(a);
  now_ms_ += 100000;
  EXPECT_TRUE(scheduler_.PlanBackups(now_ms_ * 1000, now_ms_, false).empty());
}

TEST_F(SchedulerTest, SilenceLimitFollowsTheWorkersOwnTaskTimeWithinItsBounds) {
  AddItems(3);
  Worker& peer = Join("peer", 4, false);
  EXPECT_EQ(scheduler_.SilenceLimitMs(peer), 1000) << "nothing known yet: the liveness bound";
  auto sent = Send(peer);
  std::vector<Result> results;
  for (auto [index, attempt] : sent) results.push_back(Answer(index, attempt));  // 1 ms tasks
  scheduler_.OnResults(&peer, kRun, &results, now_ms_);
  EXPECT_EQ(scheduler_.SilenceLimitMs(peer), Scheduler::kMinSilenceMs);
}

// Remote workers allowed a minute of silence, so that their own task time
// decides.
class PatientSchedulerTest : public SchedulerTest {
 protected:
  PatientSchedulerTest() : SchedulerTest(PatientOptions()) {}
  static SchedulerOptions PatientOptions() {
    SchedulerOptions options = Options();
    options.liveness_ms = 60000;
    return options;
  }
};

TEST_F(PatientSchedulerTest, ABurstOfInstantFailuresDoesNotMakeASlowWorkerLookSilent) {
  AddItems(40);
  Worker& peer = Join("peer", 1, false);
  for (int i = 0; i < 20; ++i) {  // 5 s tasks
    auto sent = Send(peer, 1);
    ASSERT_EQ(sent.size(), 1u);
    Result r = Answer(sent[0].first, sent[0].second);
    r.elapsed_us = 5000000;
    now_ms_ += 5000;
    Deliver(&peer, std::move(r));
  }
  std::vector<Result> failures;
  for (auto [index, attempt] : Send(peer)) {
    failures.push_back(Answer(index, attempt, /*ok=*/false));
    failures.back().elapsed_us = 1;
  }
  ASSERT_FALSE(failures.empty());
  scheduler_.OnResults(&peer, kRun, &failures, now_ms_);
  ASSERT_EQ(Send(peer, 1).size(), 1u);
  now_ms_ += 20000;  // four of its usual task times
  EXPECT_FALSE(scheduler_.IsSilentHolder(peer, now_ms_));
  EXPECT_GE(scheduler_.SilenceLimitMs(peer), 25000);
  now_ms_ += 20000;
  EXPECT_TRUE(scheduler_.IsSilentHolder(peer, now_ms_)) << "eight of them: silent";
}

TEST_F(SchedulerTest, AnHonestSlowNewcomerIsNotCopiedBeforeTheLivenessBound) {
  // Local tasks take 1 ms; a new remote worker's first task takes longer.
  AddItems(3);
  Worker& local = Join("local", 1, true);
  Worker& remote = Join("remote", 1, false);
  auto to_local = Send(local, 1);
  Deliver(&local, Answer(to_local[0].first, to_local[0].second));
  auto to_remote = Send(remote, 1);
  ASSERT_EQ(to_remote.size(), 1u);
  now_ms_ += 900;  // far longer than the local tasks, within the liveness bound
  EXPECT_TRUE(scheduler_.PlanBackups(now_ms_ * 1000, now_ms_, false).empty());
}

TEST_F(SchedulerTest, ATricklingPeersOldTasksAreCopiedThoughItAnswersLaterOnes) {
  AddItems(40);
  Worker& peer = Join("peer", 65536, false);
  auto held = Send(peer);
  ASSERT_EQ(held.size(), WorkerCredit::kInitialCredit);
  Worker& good = Join("good", 1, true);
  // The peer answers its newest task now and then, never its oldest.
  for (int round = 0; round < 3; ++round) {
    now_ms_ += 800;
    auto [index, attempt] = held.back();
    held.pop_back();
    Deliver(&peer, Answer(index, attempt));
    peer.last_heard_ms = now_ms_;
  }
  EXPECT_FALSE(scheduler_.IsSilentHolder(peer, now_ms_)) << "it is not silent";
  std::vector<Backup> backups = scheduler_.PlanBackups(now_ms_ * 1000, now_ms_, true);
  ASSERT_FALSE(backups.empty()) << "held back, even while new work waits";
  EXPECT_EQ(backups[0].index, held[0].first);
  EXPECT_EQ(backups[0].worker, good.id);
}

TEST_F(SchedulerTest, RetryableFailuresEarnNoCredit) {
  AddItems(100);
  Worker& peer = Join("peer", 65536, false);
  auto sent = Send(peer);
  std::vector<Result> results;
  for (auto [index, attempt] : sent) results.push_back(Answer(index, attempt, false, true));
  scheduler_.OnResults(&peer, kRun, &results, now_ms_);
  EXPECT_EQ(peer.credit.target(), WorkerCredit::kInitialCredit);
}

TEST_F(SchedulerTest, AHaltingRunDoesNotWaitForASilentHoldersTasks) {
  AddItems(40);
  Worker& hoarder = Join("hoarder", 65536, false);
  Worker& good = Join("good", 1, true);
  Send(hoarder);
  auto mine = Send(good, 1);
  EXPECT_EQ(scheduler_.InFlightNotHeld(now_ms_), WorkerCredit::kInitialCredit + 1);
  now_ms_ += 1001;
  hoarder.last_heard_ms = now_ms_;
  EXPECT_EQ(scheduler_.InFlightNotHeld(now_ms_), 1u) << "only the good worker's task";
  Deliver(&good, Answer(mine[0].first, mine[0].second));
  EXPECT_EQ(scheduler_.InFlightNotHeld(now_ms_), 0u);
}

// Head of line: items 0-1 at A (4 slots), items 2-5 at B, finished; the
// window (limit 6) is full and waits for item 0, which A may only answer
// once it gets more input (a filter that buffers its output).
class HeadOfLineTest : public SchedulerTest {
 protected:
  static constexpr size_t kLimit = 6;
  void SetUp() override {
    AddItems(6);
    a_ = &Join("a", 4, true);
    b_ = &Join("b", 4, true);
    to_a_ = Send(*a_, 2);
    auto to_b = Send(*b_);
    ASSERT_EQ(to_a_.size(), 2u);
    ASSERT_EQ(to_b.size(), 4u);
    for (const auto& [index, attempt] : to_b) Deliver(b_, Answer(index, attempt));
  }
  Worker* a_ = nullptr;
  Worker* b_ = nullptr;
  std::vector<std::pair<uint64_t, uint32_t>> to_a_;
};

TEST_F(HeadOfLineTest, TheWorkerHoldingTheOldestItemMayGetItemsPastAFullWindow) {
  EXPECT_EQ(scheduler_.HeadOfLineRoom(kLimit), 2u) << "A's spare credit: 4 slots, 2 held";
  EXPECT_EQ(scheduler_.HeadOfLineRoom(kLimit + 1), 0u) << "the window is not full";
  EXPECT_EQ(scheduler_.ReserveForHeadOfLine(kLimit), 2u);
  AddItems(1);
  EXPECT_EQ(scheduler_.HeadOfLineRoom(kLimit), 1u) << "an item read is an item waiting for A";
  AddItems(1);
  EXPECT_EQ(scheduler_.HeadOfLineRoom(kLimit), 0u);
}

TEST_F(HeadOfLineTest, ItemsReadPastTheWindowGoToTheHeadOfLineWorkerOnly) {
  ASSERT_EQ(scheduler_.ReserveForHeadOfLine(kLimit), 2u);
  AddItems(2);
  uint64_t index;
  ASSERT_TRUE(scheduler_.NextTask(&index));
  EXPECT_EQ(index, 6u);
  EXPECT_EQ(scheduler_.Fits(index, *b_, 0), Scheduler::Fit::kWorkerBusy);
  EXPECT_EQ(scheduler_.Fits(index, *a_, 0), Scheduler::Fit::kTake);
  scheduler_.PutBack(index);
  auto sent = Send(*a_);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].first, 6u);
  EXPECT_EQ(sent[1].first, 7u);
  EXPECT_EQ(scheduler_.HeadOfLineRoom(kLimit), 0u) << "A's credit is used up";
}

TEST_F(HeadOfLineTest, TheReservationEndsOnceTheWindowIsBackWithinItsLimit) {
  ASSERT_EQ(scheduler_.ReserveForHeadOfLine(kLimit), 2u);
  AddItems(2);
  // A answers the oldest item: the window (items 1-7) is still past its
  // limit, and item 1 is still at A.
  Deliver(a_, Answer(to_a_[0].first, to_a_[0].second));
  scheduler_.window().PopReady([](uint64_t, Slot&) {});
  ASSERT_EQ(scheduler_.window().size(), 7u);
  scheduler_.ReserveForHeadOfLine(kLimit);
  EXPECT_EQ(scheduler_.Fits(6, *b_, 0), Scheduler::Fit::kWorkerBusy);
  // A answers item 1 too: items 1-5 are written out, and the window holds 2.
  Deliver(a_, Answer(to_a_[1].first, to_a_[1].second));
  scheduler_.window().PopReady([](uint64_t, Slot&) {});
  ASSERT_EQ(scheduler_.window().size(), 2u);
  EXPECT_EQ(scheduler_.ReserveForHeadOfLine(kLimit), 0u);
  EXPECT_EQ(scheduler_.Fits(6, *b_, 0), Scheduler::Fit::kTake) << "any worker may take it";
}

TEST_F(HeadOfLineTest, AReservedItemPutBackIsForAnyoneAtTheNextRead) {
  ASSERT_EQ(scheduler_.ReserveForHeadOfLine(kLimit), 2u);
  AddItems(1);
  uint64_t index;
  ASSERT_TRUE(scheduler_.NextTask(&index));
  ASSERT_EQ(scheduler_.Fits(index, *b_, 0), Scheduler::Fit::kWorkerBusy);
  scheduler_.PutBack(index);  // what Dispatch does; say A could not take it either
  EXPECT_EQ(scheduler_.ReserveForHeadOfLine(kLimit), 0u);
  EXPECT_EQ(scheduler_.Fits(index, *b_, 0), Scheduler::Fit::kTake);
}

TEST_F(HeadOfLineTest, TheReservationMovesWithTheOldestItem) {
  ASSERT_EQ(scheduler_.ReserveForHeadOfLine(kLimit), 2u);
  AddItems(1);
  // A's worker is lost: its items go back in line, for anyone.
  ASSERT_EQ(scheduler_.Fits(6, *b_, 0), Scheduler::Fit::kWorkerBusy);
  scheduler_.RemoveWorker(a_->id, "lost", now_ms_);
  EXPECT_EQ(scheduler_.ReserveForHeadOfLine(kLimit), 0u);
  EXPECT_EQ(scheduler_.Fits(6, *b_, 0), Scheduler::Fit::kTake);
}

TEST_F(HeadOfLineTest, NoRoomWhileAnotherItemWaitsToBeSent) {
  AddItems(1);  // within no limit: it waits for whoever has credit
  EXPECT_EQ(scheduler_.HeadOfLineRoom(kLimit + 1), 1u) << "A has 2 spare, 1 is taken";
  auto sent = Send(*b_);
  ASSERT_EQ(sent.size(), 1u);
  // A retry waiting for its backoff: no item past the window before it.
  Deliver(b_, Answer(sent[0].first, sent[0].second, false, true));
  EXPECT_EQ(scheduler_.HeadOfLineRoom(kLimit + 1), 0u);
}

TEST_F(HeadOfLineTest, NeverMoreThanTheWorkersCreditTargetPastTheLimit) {
  // A limit of 3: the window (6) is already 3 past it, and A's target is 4:
  // one more, though A has room for 2.
  EXPECT_EQ(scheduler_.HeadOfLineRoom(3), 1u);
  // A limit of 2: 4 past it, all of A's target.
  EXPECT_EQ(scheduler_.HeadOfLineRoom(2), 0u);
}

TEST_F(SchedulerTest, NoRoomPastTheWindowWhenTheOldestItemIsNotInFlight) {
  AddItems(2);
  Worker& a = Join("a", 4, true);
  EXPECT_EQ(scheduler_.HeadOfLineRoom(2), 0u) << "the oldest item was never sent";
  auto sent = Send(a);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(scheduler_.HeadOfLineRoom(2), 2u);
  Deliver(&a, Answer(0, sent[0].second));
  EXPECT_EQ(scheduler_.HeadOfLineRoom(2), 0u) << "the oldest item is done, only not written";
}

}  // namespace
}  // namespace fanmap
