#include "coordinator/scheduler.h"

#include <algorithm>
#include <climits>

#include "common/printable.h"

namespace fanmap {
namespace {

// Ends the error of an item that could have been retried, but not within
// --retry-for of its first attempt.
constexpr char kTooLateNote[] =
    " (not retried: its next attempt would start later than --retry-for allows)";

}  // namespace

Scheduler::Scheduler(SchedulerOptions options)
    : options_(std::move(options)), retry_policy_(options_.retries, options_.seed) {}

void Scheduler::Finish(uint64_t index, Result&& result) {
  if (!window_.Complete(index, std::move(result))) return;
  if (on_complete_) on_complete_(index);
}

void Scheduler::Complete(uint64_t index, Result result) {
  result.index = index;
  Finish(index, std::move(result));
}

Worker& Scheduler::AddWorker(std::string routing_id, const Hello& hello, uint32_t slots,
                             pid_t local_pid, int64_t now_ms) {
  Worker& worker = workers_.Add(std::move(routing_id));
  worker.hello = hello;
  worker.local_pid = local_pid;
  worker.credit = WorkerCredit(slots, local_pid != 0 ? Trust::kSpawned : Trust::kEarned);
  worker.last_heard_ms = now_ms;
  return worker;
}

std::vector<WorkerId> Scheduler::SilentWorkers(int64_t now_ms) const {
  std::vector<WorkerId> silent;
  for (const Worker* w : workers_.all()) {
    if (now_ms - w->last_heard_ms > options_.liveness_ms) silent.push_back(w->id);
  }
  return silent;
}

void Scheduler::ReleaseDueRetries(int64_t now_ms) {
  bool released = false;
  while (!delayed_.empty() && delayed_.top().first <= now_ms) {
    retry_.push_back(delayed_.top().second);
    delayed_.pop();
    released = true;
  }
  if (released) std::sort(retry_.begin(), retry_.end());
}

bool Scheduler::NextTask(uint64_t* index) {
  while (!retry_.empty()) {
    uint64_t i = retry_.front();
    retry_.pop_front();
    Slot* slot = window_.Find(i);
    if (slot != nullptr && slot->state == SlotState::kPending) {
      *index = i;
      return true;
    }
  }
  while (next_new_ < window_.end()) {
    uint64_t i = next_new_++;
    Slot* slot = window_.Find(i);
    if (slot != nullptr && slot->state == SlotState::kPending) {
      *index = i;
      return true;
    }
  }
  return false;
}

Scheduler::Fit Scheduler::Fits(uint64_t index, Worker& worker, size_t queued) {
  if (index >= reserved_from_ && worker.id != reserved_for_) return Fit::kWorkerBusy;
  if (worker.isolating) {
    const Slot* held = window_.Find(worker.isolated_index);
    worker.isolating = held != nullptr && held->state == SlotState::kInFlight &&
                       held->worker == worker.id &&
                       held->primary_attempt == worker.isolated_attempt;
    if (worker.isolating) return Fit::kWorkerBusy;
  }
  const Slot* slot = window_.Find(index);
  if (slot == nullptr || !slot->suspect) return Fit::kTake;
  if (queued > 0 || worker.credit.outstanding() > 0) return Fit::kNotHere;
  return Fit::kTakeAlone;
}

uint32_t Scheduler::Assign(uint64_t index, Worker& worker, int64_t now_us, int64_t now_ms) {
  Slot* slot = window_.Find(index);
  slot->state = SlotState::kInFlight;
  slot->worker = worker.id;
  slot->backup_worker = 0;
  slot->sent_us = now_us;
  if (slot->first_sent_ms < 0) slot->first_sent_ms = now_ms;
  slot->sent_seq = ++send_seq_;
  slot->primary_attempt = slot->attempts++;
  ++slot->charged;
  if (worker.credit.outstanding() == 0) worker.busy_since_ms = now_ms;
  worker.credit.OnSent(1);
  if (slot->suspect) {
    worker.isolating = true;
    worker.isolated_index = index;
    worker.isolated_attempt = slot->primary_attempt;
  }
  return slot->primary_attempt;
}

void Scheduler::Unassign(const std::vector<uint64_t>& indexes, Worker& worker) {
  for (auto it = indexes.rbegin(); it != indexes.rend(); ++it) {
    Slot* slot = window_.Find(*it);
    if (slot == nullptr || slot->state != SlotState::kInFlight || slot->worker != worker.id) {
      continue;
    }
    slot->state = SlotState::kPending;
    slot->worker = 0;
    --slot->charged;
    if (!slot->failed_before) slot->first_sent_ms = -1;  // it was never sent
    retry_.push_front(*it);
    worker.credit.OnNotSent(1);
  }
}

bool Scheduler::HasUnsent() const {
  return !retry_.empty() || !delayed_.empty() || next_new_ < window_.end();
}

const Worker* Scheduler::HeadOfLine(size_t window_limit) const {
  if (window_.size() < window_limit || !retry_.empty() || !delayed_.empty()) return nullptr;
  const Slot* head = window_.Find(window_.begin());
  if (head == nullptr || head->state != SlotState::kInFlight) return nullptr;
  return workers_.Find(head->worker);
}

size_t Scheduler::HeadOfLineRoom(size_t window_limit) const {
  const Worker* worker = HeadOfLine(window_limit);
  if (worker == nullptr) return 0;
  size_t unsent = static_cast<size_t>(window_.end() - next_new_);
  size_t spare = worker->credit.available();
  size_t most = window_limit + worker->credit.target();
  if (spare <= unsent || window_.size() >= most) return 0;
  return std::min(spare - unsent, most - window_.size());
}

size_t Scheduler::ReserveForHeadOfLine(size_t window_limit) {
  const Worker* worker = HeadOfLine(window_limit);
  if (worker == nullptr || (reserved_from_ != UINT64_MAX && reserved_for_ != worker->id)) {
    reserved_from_ = UINT64_MAX;
  }
  size_t room = HeadOfLineRoom(window_limit);
  if (room > 0 && reserved_from_ == UINT64_MAX) {
    reserved_from_ = window_.end();
    reserved_for_ = worker->id;
  }
  return room;
}

bool Scheduler::RetryForIsOver(const Slot& slot, int64_t now_ms) const {
  return options_.retry_for_ms > 0 && now_ms - slot.first_sent_ms >= options_.retry_for_ms;
}

void Scheduler::WatchRetryFor(uint64_t index, Slot* slot) {
  if (options_.retry_for_ms <= 0 || slot->retry_deadline) return;
  slot->retry_deadline = true;
  retry_deadlines_.emplace(slot->first_sent_ms + options_.retry_for_ms, index);
}

size_t Scheduler::ExpireRetries(int64_t now_ms) {
  size_t expired = 0;
  while (!retry_deadlines_.empty() && retry_deadlines_.top().first <= now_ms) {
    uint64_t index = retry_deadlines_.top().second;
    retry_deadlines_.pop();
    Slot* slot = window_.Find(index);
    if (slot == nullptr) continue;
    // The deadline is spent: should the item come back to wait again (its
    // worker lost), WatchRetryFor sets another.
    slot->retry_deadline = false;
    // Sent again meanwhile: its answer is too late for another retry.
    if (slot->state != SlotState::kPending) continue;
    Result result = std::move(slot->result);
    slot->result = Result();
    result.index = index;
    result.ok = false;
    result.retryable = false;
    result.value += kTooLateNote;
    if (slot->charged > 1) result.extra["attempts"] = static_cast<int64_t>(slot->charged);
    Finish(index, std::move(result));
    ++expired;
  }
  return expired;
}

size_t Scheduler::FailUnsent(const std::string& error) {
  size_t failed = 0;
  for (uint64_t i = window_.begin(); i < window_.end(); ++i) {
    Slot* slot = window_.Find(i);
    if (slot == nullptr || slot->state != SlotState::kPending) continue;
    Fail(i, slot, error);
    ++failed;
  }
  // Nothing is left to send: no stale entry may make it look otherwise.
  retry_.clear();
  delayed_ = decltype(delayed_)();
  next_new_ = window_.end();
  return failed;
}

int64_t Scheduler::NextRetryDueMs() const {
  return delayed_.empty() ? INT64_MAX : delayed_.top().first;
}

size_t Scheduler::InFlight() const {
  size_t n = 0;
  for (const Worker* w : workers_.all()) n += w->credit.outstanding();
  return n;
}

void Scheduler::Requeue(uint64_t index, Slot* slot, int64_t delay_ms, int64_t now_ms) {
  slot->state = SlotState::kPending;
  slot->worker = 0;
  slot->backup_worker = 0;
  ++retried_;
  if (delay_ms <= 0) {
    retry_.push_back(index);
  } else {
    // +1: clocks in ms truncate, and a retry must never precede Retry-After.
    delayed_.emplace(now_ms + delay_ms + 1, index);
  }
}

void Scheduler::Fail(uint64_t index, Slot* slot, std::string error) {
  Result result;
  result.index = index;
  result.ok = false;
  result.value = std::move(error);
  // None when every failure was uncharged (429s): not "0 attempts".
  if (slot->charged > 0) result.extra["attempts"] = static_cast<int64_t>(slot->charged);
  slot->worker = 0;
  slot->backup_worker = 0;
  Finish(index, std::move(result));
}

FrameVerdict Scheduler::OnResults(Worker* from, const std::string& run_id,
                                  std::vector<Result>* results, int64_t now_ms) {
  if (from == nullptr) {
    drops_.unknown_peer += results->size();
    return FrameVerdict::kUnknownPeer;
  }
  if (run_id != options_.run_id) {
    drops_.other_run += results->size();
    return FrameVerdict::kOtherRun;
  }
  size_t closed = 0;
  size_t proven = 0;
  uint64_t closed_us = 0;
  for (Result& result : *results) {
    uint64_t elapsed_us = result.elapsed_us;
    Verdict verdict = OnResult(*from, &result, now_ms);
    if (verdict == Verdict::kLate) {
      ++drops_.late;
    } else if (verdict == Verdict::kUnsolicited) {
      ++drops_.unsolicited;
    } else {
      ++closed;
      closed_us += elapsed_us;
      // A retryable failure closes the attempt but proves nothing: a worker
      // that fails everything fast must not earn more tasks to fail.
      if (verdict == Verdict::kAccepted) {
        ++proven;
        ++from->accepted;
      }
    }
  }
  if (closed > 0) {
    from->credit.OnResults(closed, closed_us, proven);
    from->completed += closed;
    from->task_micros += closed_us;
    from->last_result_ms = now_ms;
    double batch_mean = static_cast<double>(closed_us) / closed;
    mean_task_us_ = mean_task_us_ <= 0 ? batch_mean : 0.9 * mean_task_us_ + 0.1 * batch_mean;
  }
  return FrameVerdict::kCounted;
}

Verdict Scheduler::OnResult(Worker& from, Result* result, int64_t now_ms) {
  uint64_t index = result->index;
  Slot* slot = window_.Find(index);
  if (slot == nullptr) return index < window_.begin() ? Verdict::kLate : Verdict::kUnsolicited;
  if (slot->state == SlotState::kDone) return Verdict::kLate;
  if (slot->state != SlotState::kInFlight) return Verdict::kUnsolicited;
  bool primary = slot->worker == from.id && slot->primary_attempt == result->attempt;
  bool backup = slot->backup_worker != 0 && slot->backup_worker == from.id &&
                slot->backup_attempt == result->attempt;
  if (!primary && !backup) return Verdict::kUnsolicited;
  if (on_response_) on_response_(*result, *slot);

  // The other open copy of this item, if any.
  WorkerId other = primary ? slot->backup_worker : slot->worker;
  if (!result->ok && result->retryable) {
    if (other != 0) {
      // That copy may still succeed: only this one is closed.
      slot->failed_before = true;
      if (primary) {
        slot->worker = slot->backup_worker;
        slot->primary_attempt = slot->backup_attempt;
      }
      slot->backup_worker = 0;
      return Verdict::kCopyClosed;
    }
    if (charges_ && !charges_(*result)) --slot->charged;
    // An uncharged failure backs off as after one attempt: the rate
    // limiter or the outage's pause holds the rest back.
    uint32_t backoff = std::max<uint32_t>(1, slot->charged);
    int64_t delay_ms = retry_policy_.DelayMillis(backoff, result->retry_after_ms);
    // The retry would go out after the backoff (a Retry-After may be long).
    bool in_time = options_.retry_for_ms <= 0 ||
                   now_ms + delay_ms - slot->first_sent_ms < options_.retry_for_ms;
    if (!in_time && retry_policy_.MayRetry(slot->charged)) {
      // Say why an error that could be retried was not.
      // What the server asked, as the delay used it (a peer may send any
      // number; at most RetryPolicy::kMaxRetryAfterMillis counts).
      int64_t asked_ms =
          std::min<int64_t>(result->retry_after_ms, RetryPolicy::kMaxRetryAfterMillis);
      result->value +=
          asked_ms > 0 && asked_ms >= delay_ms
              ? " (not retried: after the " + std::to_string((asked_ms + 999) / 1000) +
                    " s the server asks to wait, it would start later than --retry-for allows)"
              : std::string(kTooLateNote);
    }
    if (in_time && retry_policy_.MayRetry(slot->charged)) {
      slot->failed_before = true;
      if (options_.retry_for_ms > 0) {
        // Kept, should its time run out while it waits (ExpireRetries).
        slot->result = *result;
        WatchRetryFor(index, slot);
      }
      Requeue(index, slot, delay_ms, now_ms);
      return Verdict::kRequeued;
    }
  }
  if (other != 0) {
    // The other copy lost the race: it is no longer that worker's to finish.
    if (Worker* loser = workers_.Find(other)) loser->credit.OnTakenOver(1);
  }
  if (slot->charged > 1) result->extra["attempts"] = static_cast<int64_t>(slot->charged);
  slot->worker = 0;
  slot->backup_worker = 0;
  Finish(index, std::move(*result));
  return Verdict::kAccepted;
}

WorkerLoss Scheduler::RemoveWorker(WorkerId id, const std::string& why, int64_t now_ms,
                                   LossCharge charge) {
  WorkerLoss loss;
  Worker* worker = workers_.Find(id);
  if (worker == nullptr) return loss;
  // Rare (a worker died), so a scan of the window is cheaper than keeping a
  // per-worker index on the hot path.
  std::vector<std::pair<uint64_t, uint64_t>> held;  // (send order, index)
  for (uint64_t i = window_.begin(); i < window_.end(); ++i) {
    Slot* slot = window_.Find(i);
    if (slot->state != SlotState::kInFlight) continue;
    if (slot->backup_worker == id) slot->backup_worker = 0;
    if (slot->worker != id) continue;
    if (slot->backup_worker != 0) {
      // The backup copy still runs elsewhere: it becomes the only copy.
      // The lost one may have run: --retry-for keeps counting from it.
      slot->failed_before = true;
      slot->worker = slot->backup_worker;
      slot->primary_attempt = slot->backup_attempt;
      slot->backup_worker = 0;
      ++loss.resent;
      continue;
    }
    held.emplace_back(slot->sent_seq, i);
  }
  // A worker runs its tasks in the order they were sent, `slots` at a time:
  // only the oldest ones were running when it died, and only those can be
  // what killed it. The others never started: they keep their attempt. A
  // worker that earns its credit has proven only as many slots as it
  // returned results: what it claims beyond that could be a lie meant to
  // use up the attempts of items it never ran.
  std::sort(held.begin(), held.end());
  size_t running = worker->credit.slots();
  if (worker->credit.trust() == Trust::kEarned) {
    running = std::clamp<size_t>(worker->completed, 1, running);
  }
  if (charge == LossCharge::kChargeNone) running = 0;
  for (size_t k = 0; k < held.size(); ++k) {
    uint64_t index = held[k].second;
    Slot* slot = window_.Find(index);
    // Which of them killed it is not known for sure (a result may have died
    // in flight with the worker): one that keeps being there runs alone.
    if (charge == LossCharge::kChargeRunning && slot->losses < UINT8_MAX) ++slot->losses;
    if (slot->losses >= kSuspectAfterLosses) slot->suspect = true;
    if (k >= running) {
      // It never started there (for a peer that earns its credit: beyond
      // what it has proven it runs at once): that attempt is not charged.
      // An item that failed before is still a retry (whether or not its
      // failures were charged, as a 429's is not), within --retry-for of
      // its first attempt; one that never started has had no attempt yet.
      --slot->charged;
      if (!slot->failed_before) slot->first_sent_ms = -1;
      if (slot->failed_before && RetryForIsOver(*slot, now_ms)) {
        Fail(index, slot,
             (slot->result.value.empty() ? "worker lost while holding this item"
                                         : slot->result.value) +
                 kTooLateNote);
        loss.failed.push_back(index);
        continue;
      }
    } else if (!retry_policy_.MayRetry(slot->charged)) {
      Fail(index, slot,
           "worker lost " + std::to_string(slot->charged) +
               " time(s) while running this item (last: " + Printable(worker->hello.name) + " " +
               why + ")");
      loss.failed.push_back(index);
      continue;
    } else if (RetryForIsOver(*slot, now_ms)) {
      Fail(index, slot,
           "worker lost while running this item (" + Printable(worker->hello.name) + " " + why +
               ")" + kTooLateNote);
      loss.failed.push_back(index);
      continue;
    } else if (options_.retry_for_ms > 0) {
      // Should its time run out while it waits (ExpireRetries), this is
      // what its record says.
      slot->result = Result();
      slot->result.value =
          "worker lost while running this item (" + Printable(worker->hello.name) + " " + why + ")";
    }
    if (k < running) slot->failed_before = true;
    if (slot->failed_before) WatchRetryFor(index, slot);
    Requeue(index, slot, 0, 0);
    ++loss.resent;
  }
  std::sort(retry_.begin(), retry_.end());
  workers_.Remove(id, why);
  return loss;
}

int64_t Scheduler::SilenceLimitMs(const Worker& worker) const {
  // Judged by the worker's own task time, never by other workers': an honest
  // worker that is merely slower is not a hoarder. Until it has returned a
  // result, only the liveness bound. Never sooner than kMinSilenceMs (a busy
  // machine stalls a process that long).
  double own_us = worker.credit.mean_task_micros();
  if (own_us <= 0) return options_.liveness_ms;
  int64_t limit = static_cast<int64_t>(kSilenceFactor * own_us / 1000);
  return std::clamp<int64_t>(limit, std::min(kMinSilenceMs, options_.liveness_ms),
                             options_.liveness_ms);
}

bool Scheduler::IsSilentHolder(const Worker& worker, int64_t now_ms) const {
  if (worker.credit.trust() != Trust::kEarned || worker.credit.outstanding() == 0) return false;
  return now_ms - std::max(worker.busy_since_ms, worker.last_result_ms) > SilenceLimitMs(worker);
}

bool Scheduler::IsHeldBack(const Slot& slot, const Worker& holder, int64_t now_ms) const {
  if (holder.credit.trust() != Trust::kEarned) return false;
  if (IsSilentHolder(holder, now_ms)) return true;
  // A worker runs its tasks in the order they were sent: one that keeps
  // answering tasks sent after this one while it sits far longer than the
  // worker's own tasks take is being held back (a peer trickling results to
  // look alive).
  int64_t sent_ms = slot.sent_us / 1000;
  return holder.last_result_ms > sent_ms && now_ms - sent_ms > SilenceLimitMs(holder);
}

size_t Scheduler::InFlightNotHeld(int64_t now_ms) const {
  size_t n = 0;
  for (const Worker* w : workers_.all()) {
    if (!IsSilentHolder(*w, now_ms)) n += w->credit.outstanding();
  }
  return n;
}

std::vector<Backup> Scheduler::PlanBackups(int64_t now_us, int64_t now_ms, bool more_to_send) {
  std::vector<Backup> backups;
  // Helpers: workers with free credit that are not silent holders themselves.
  std::vector<Worker*> helpers;
  bool any_earned = false;
  for (Worker* w : workers_.all()) {
    if (w->credit.trust() == Trust::kEarned && w->credit.outstanding() > 0) any_earned = true;
    if (!IsSilentHolder(*w, now_ms) && w->credit.available() > 0) helpers.push_back(w);
  }
  // Straggler copies only when there is nothing new to give; held-back
  // tasks whenever a helper is free (they hold the ordered output back even
  // while the input is still open).
  bool stragglers = options_.speculate && mean_task_us_ > 0 && !more_to_send && !HasUnsent();
  if (helpers.empty() || (!stragglers && !any_earned)) return backups;
  int64_t threshold_us = std::max<int64_t>(kMinStragglerMs * 1000,
                                           static_cast<int64_t>(kStragglerFactor * mean_task_us_));
  size_t scanned = 0;
  for (uint64_t i = window_.begin(); i < window_.end() && scanned < kBackupScan; ++i) {
    Slot* slot = window_.Find(i);
    if (slot->state != SlotState::kInFlight || slot->backup_worker != 0) continue;
    ++scanned;
    const Worker* holder = workers_.Find(slot->worker);
    bool rescue = holder != nullptr && IsHeldBack(*slot, *holder, now_ms);
    bool straggler = stragglers && !slot->speculated && now_us - slot->sent_us >= threshold_us;
    if (!rescue && !straggler) continue;
    auto it = std::find_if(helpers.begin(), helpers.end(), [slot](Worker* w) {
      return w->id != slot->worker && w->credit.available() > 0;
    });
    if (it == helpers.end()) continue;
    Worker& helper = **it;
    Backup backup{i, slot->attempts++, helper.id, rescue ? holder->id : 0};
    slot->speculated = true;
    slot->backup_worker = helper.id;
    slot->backup_attempt = backup.attempt;
    if (helper.credit.outstanding() == 0) helper.busy_since_ms = now_ms;
    helper.credit.OnSent(1);
    backups.push_back(backup);
    // Spread the copies: the next one goes to the next helper.
    std::rotate(helpers.begin(), it + 1, helpers.end());
  }
  return backups;
}

}  // namespace fanmap
