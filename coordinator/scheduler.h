// Scheduler: the decisions of a run, apart from its sockets.
//
// It holds the window of items (ReorderBuffer), the queue of items to send
// (new ones, retries due now, retries waiting for their backoff), the
// workers of this run (WorkerRegistry) and every item's open attempts, and
// decides:
//   - which item a worker is sent next (Assign),
//   - whether a result counts: only from the worker that was sent that very
//     attempt, while the attempt is open, in this run (OnResults),
//   - what a failure leads to (RetryPolicy: again, later, or final; a
//     failure the caller does not charge (ChargeFn) costs no attempt, and
//     no failure is retried past retry_for_ms after the item's first try),
//   - what happens to a lost worker's tasks (RemoveWorker),
//   - which workers are silent (SilentWorkers) and which tasks get a copy on
//     another worker (PlanBackups): stragglers (--speculate) and the tasks a
//     worker that was not spawned here holds back (IsHeldBack: no answer for
//     many times its own task time, at most the liveness bound): a hoarder,
//     a peer that trickles answers, or one that hung.
// Time is always a parameter; nothing here touches a socket or a clock, so
// every decision is unit-tested with a fake worker (tests/scheduler_test.cc).
//
// An attempt is (index, attempt number). Each item has at most two open
// attempts: its primary copy and, at most, one backup copy; both name the
// worker that holds them. Attempt numbers are never reused for an item.
#ifndef FANMAP_COORDINATOR_SCHEDULER_H_
#define FANMAP_COORDINATOR_SCHEDULER_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "common/protocol.h"
#include "coordinator/reorder_buffer.h"
#include "coordinator/retry_policy.h"
#include "coordinator/worker_registry.h"

namespace fanmap {

struct SchedulerOptions {
  std::string run_id;          // results must carry it
  int64_t liveness_ms = 5000;  // heartbeat silence that makes a worker dead
  bool speculate = true;       // back up stragglers on workers with free credit
  int retries = 2;             // RetryPolicy's
  uint64_t seed = 0;           // RetryPolicy's jitter
  int64_t retry_for_ms = 0;  // no retry once this long after an item's first attempt; 0 = no bound
};

// What one result amounts to.
enum class Verdict : uint8_t {
  kAccepted,     // it completes its item
  kRequeued,     // a retryable failure: the item goes back in line
  kCopyClosed,   // a retryable failure of one copy while another copy runs on
  kLate,         // its attempt was closed already: the item is done, or was given up
  kUnsolicited,  // this worker holds no such open attempt: it was never sent it
};

// What a RESULTS frame amounts to, before its results are judged.
enum class FrameVerdict : uint8_t {
  kCounted,      // from a worker of this run: each result was judged
  kUnknownPeer,  // the sender is not a worker of this run (never said HELLO, or removed)
  kOtherRun,     // the sender runs another run's job
};

// Results dropped, by reason (the end-of-run log reports them).
struct DropCounts {
  uint64_t late = 0;
  uint64_t unsolicited = 0;
  uint64_t unknown_peer = 0;
  uint64_t other_run = 0;
  uint64_t total() const { return late + unsolicited + unknown_peer + other_run; }
};

// A backup copy to send: `attempt` of `index` to `worker`.
struct Backup {
  uint64_t index = 0;
  uint32_t attempt = 0;
  WorkerId worker = 0;
  WorkerId held_by = 0;  // non-zero: a copy of a task this worker holds back (IsHeldBack)
};

// What became of a removed worker's tasks.
struct WorkerLoss {
  size_t resent = 0;             // back in line (or left to their backup copy)
  std::vector<uint64_t> failed;  // lost a worker on every allowed attempt: failed
};

class Scheduler {
 public:
  // Called for every item as it completes (with a result or a failure), in
  // completion order: --unordered writes its record at once.
  using CompleteFn = std::function<void(uint64_t index)>;
  // Called for every result that closes an open attempt, before it is
  // judged: feedback for the rate limiter (status codes, token usage).
  using ResponseFn = std::function<void(const Result& result, const Slot& slot)>;
  // Whether a retryable failure counts against --retries: false for one
  // that is not the item's doing (a throttle, a failure during an outage).
  // Uncounted failures are bounded by retry_for_ms only.
  using ChargeFn = std::function<bool(const Result& result)>;

  static constexpr double kStragglerFactor = 4;
  static constexpr int64_t kMinStragglerMs = 500;
  // In-flight slots looked at per PlanBackups call (the oldest ones).
  static constexpr size_t kBackupScan = 4096;
  // Result silence that makes an earning worker's tasks get copies elsewhere.
  static constexpr double kSilenceFactor = 8;
  static constexpr int64_t kMinSilenceMs = 1000;

  explicit Scheduler(SchedulerOptions options);
  void set_on_complete(CompleteFn fn) { on_complete_ = std::move(fn); }
  void set_on_response(ResponseFn fn) { on_response_ = std::move(fn); }
  void set_charges(ChargeFn fn) { charges_ = std::move(fn); }

  const std::string& run_id() const { return options_.run_id; }
  ReorderBuffer& window() { return window_; }
  const ReorderBuffer& window() const { return window_; }
  WorkerRegistry& workers() { return workers_; }
  const WorkerRegistry& workers() const { return workers_; }

  // --- items
  uint64_t AddItem(std::string item) { return window_.Add(std::move(item)); }
  // Completes an item no worker ran (bad input, a resumed record).
  void Complete(uint64_t index, Result result);

  // --- workers
  // A worker said HELLO. `local_pid` != 0: this coordinator spawned it (full
  // credit at once); otherwise it earns its credit (credit.h).
  Worker& AddWorker(std::string routing_id, const Hello& hello, uint32_t slots, pid_t local_pid,
                    int64_t now_ms);
  // The worker is gone (dead, silent, left, or cut off). Its tasks go back
  // in line, or to their backup copy; the ones it may have been running are
  // charged an attempt, and fail when no attempt is left. Erases the worker
  // (kept in workers().departed()). `why` says what happened to it, without
  // its name: "silent for 5000 ms", "released".
  // kChargeNone: it did not die of its tasks (it said BYE, it answered with
  // another run's id): nothing is charged and no item becomes a suspect, so
  // that a peer that leaves and joins again cannot use up an item's attempts.
  // An item that failed before (charged or not, as a 429 is not) and whose
  // first attempt is --retry-for or more before `now_ms` fails instead of
  // going again, as any retry would; one whose only attempt never started
  // has its first attempt cleared.
  enum class LossCharge : uint8_t { kChargeRunning, kChargeNone };
  WorkerLoss RemoveWorker(WorkerId id, const std::string& why, int64_t now_ms,
                          LossCharge charge = LossCharge::kChargeRunning);
  // Workers that have not been heard from for longer than the liveness bound.
  std::vector<WorkerId> SilentWorkers(int64_t now_ms) const;

  // --- dispatch
  // Moves retries whose backoff is over into the queue.
  void ReleaseDueRetries(int64_t now_ms);
  // Items waiting for a retry (held back by an outage's pause, say) whose
  // retry_for_ms has run out since their first attempt are finished now with
  // their last failure. Returns how many.
  size_t ExpireRetries(int64_t now_ms);
  // Fails every item not in flight and not done (sent before or not) with
  // `error`; for a run that gives up on its server. Returns how many.
  size_t FailUnsent(const std::string& error);
  // The next item to send (retries first, in index order), or false.
  bool NextTask(uint64_t* index);
  // Puts an item NextTask returned back at the front of the line.
  void PutBack(uint64_t index) { retry_.push_front(index); }
  // Whether `worker` may be sent `index` now, with `queued` tasks already in
  // the frame being built for it. An item that was held by
  // kSuspectAfterLosses workers when they died may be what killed them (or
  // its neighbour may be: a result can die in flight with its worker, so
  // the oldest task is not always the one that ran). From then on it runs
  // alone, on a worker that holds nothing else and is sent nothing else
  // until its attempt closes, so that the next loss is charged to the right
  // item and no innocent neighbour loses its attempts to a poison item. One
  // loss is not enough: a worker killed from outside (OOM, a node gone)
  // would otherwise make every task it held run one at a time.
  static constexpr uint8_t kSuspectAfterLosses = 2;
  enum class Fit : uint8_t {
    kTake,        // add it to the frame
    kTakeAlone,   // add it, and nothing more to this worker
    kWorkerBusy,  // this worker runs a suspect alone: send it nothing
    kNotHere,     // a suspect, and this worker holds something: another may take it
    // (kWorkerBusy also: an item reserved for the head-of-line worker,
    // and this is another one; so are the items after it.)
  };
  Fit Fits(uint64_t index, Worker& worker, size_t queued);
  // Records that `index` is sent to `worker` now; returns the attempt number.
  uint32_t Assign(uint64_t index, Worker& worker, int64_t now_us, int64_t now_ms);
  // The frame carrying these assigned items never left: they wait again,
  // first in line, uncharged.
  void Unassign(const std::vector<uint64_t>& indexes, Worker& worker);
  // True while something waits to be sent (now or after a backoff).
  bool HasUnsent() const;

  // Head of line. The window is full (`window_limit` items) and its oldest
  // item is in flight at a worker with credit to spare, with nothing else
  // waiting to be sent: that worker may be waiting for more input to give
  // the oldest answer back. A --pipe filter that buffers its output (Python,
  // C stdio on a pipe) keeps its last answers until its buffer fills or its
  // input ends, while the rest of the window, finished by the other workers,
  // waits for them: every worker then idles until a quiet period closes the
  // filter. So items may be read past the limit for that worker alone:
  // returns how many more now (0: none), at most its spare credit and never
  // more than its credit target past the limit. Items read past the limit
  // go to that worker only (Fits), until the window is back within its
  // limit or the oldest item moves elsewhere (ReserveForHeadOfLine). One
  // that worker cannot take when another reaches it (it runs a suspect
  // alone, the rate limiter holds it) is put back first in line, which ends
  // the reservation at the next read: nothing waits on one worker for long.
  size_t HeadOfLineRoom(size_t window_limit) const;
  // Called before reading input: reserves the items read from now on for
  // the head-of-line worker if HeadOfLineRoom() allows any, and releases a
  // reservation that no longer applies. Returns HeadOfLineRoom().
  size_t ReserveForHeadOfLine(size_t window_limit);
  // When the earliest waiting retry is due; INT64_MAX if none.
  int64_t NextRetryDueMs() const;
  // Tasks at workers, not yet answered.
  size_t InFlight() const;

  // --- results
  // Judges a RESULTS frame from the peer `from` (null: not a worker of this
  // run). Results count only from a worker of this run, carrying this run's
  // id, for an attempt that worker holds open; everything else is dropped and
  // counted. `results` is consumed.
  FrameVerdict OnResults(Worker* from, const std::string& run_id, std::vector<Result>* results,
                         int64_t now_ms);

  // --- backups
  // Backup copies to send now: stragglers (with --speculate, and only when
  // `more_to_send` is false and nothing waits: running kStragglerFactor times
  // longer than tasks usually take) and every held-back task (IsHeldBack),
  // whatever --speculate says: the run could not end otherwise. Each goes to another worker with
  // free credit; the slots are marked and the helpers charged, so the caller only sends them.
  std::vector<Backup> PlanBackups(int64_t now_us, int64_t now_ms, bool more_to_send);
  // True if `worker` earns its credit and has held tasks without returning
  // a result for longer than SilenceLimitMs(worker).
  bool IsSilentHolder(const Worker& worker, int64_t now_ms) const;
  // True if the task of `slot`, held by `holder`, is held back: its holder
  // earns its credit and is silent, or keeps answering later tasks while
  // this one sits longer than SilenceLimitMs(holder).
  bool IsHeldBack(const Slot& slot, const Worker& holder, int64_t now_ms) const;
  // kSilenceFactor times the worker's own usual task time, within
  // [kMinSilenceMs, the liveness bound]; the liveness bound until it has
  // returned a result.
  int64_t SilenceLimitMs(const Worker& worker) const;
  // Tasks in flight at workers that are not silent holders: what a run that
  // stops taking new work still waits for.
  size_t InFlightNotHeld(int64_t now_ms) const;

  // --- figures
  const DropCounts& drops() const { return drops_; }
  uint64_t retried() const { return retried_; }

 private:
  Verdict OnResult(Worker& from, Result* result, int64_t now_ms);
  void Requeue(uint64_t index, Slot* slot, int64_t delay_ms, int64_t now_ms);
  // --retry-for is set and has passed since the item's first attempt.
  bool RetryForIsOver(const Slot& slot, int64_t now_ms) const;
  // Fails the item with its kept result (slot->result) should it still be
  // waiting once --retry-for has passed (ExpireRetries).
  void WatchRetryFor(uint64_t index, Slot* slot);
  void Fail(uint64_t index, Slot* slot, std::string error);
  void Finish(uint64_t index, Result&& result);

  SchedulerOptions options_;
  RetryPolicy retry_policy_;
  CompleteFn on_complete_;
  ResponseFn on_response_;
  ChargeFn charges_;
  ReorderBuffer window_;
  WorkerRegistry workers_;
  // Items from this index on go to reserved_for_ only; none: UINT64_MAX.
  uint64_t reserved_from_ = UINT64_MAX;
  WorkerId reserved_for_ = 0;
  // The head-of-line worker (HeadOfLineRoom), or null.
  const Worker* HeadOfLine(size_t window_limit) const;
  std::deque<uint64_t> retry_;  // requeued indexes, sent before new ones
  // Retries waiting for their backoff: (due time in ms, index), soonest first.
  std::priority_queue<std::pair<int64_t, uint64_t>, std::vector<std::pair<int64_t, uint64_t>>,
                      std::greater<>>
      delayed_;
  // Items ever requeued after a failure, by the end of their retry_for_ms:
  // (first attempt + retry_for_ms, index), soonest first; one entry per item.
  std::priority_queue<std::pair<int64_t, uint64_t>, std::vector<std::pair<int64_t, uint64_t>>,
                      std::greater<>>
      retry_deadlines_;
  uint64_t next_new_ = 0;  // first index never sent
  uint64_t send_seq_ = 0;
  double mean_task_us_ = 0;  // over all workers, for straggler detection
  DropCounts drops_;
  uint64_t retried_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_SCHEDULER_H_
