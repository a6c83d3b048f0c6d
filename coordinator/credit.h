// WorkerCredit: how many tasks the coordinator may have outstanding at one
// worker (sent, result not yet received).
//
// The bound is in time, not only in count: besides one task per slot, a
// worker gets enough prefetch to cover kPrefetchHorizonMicros of its work, as
// measured from the time its recent tasks took, and at least one task so that
// a worker never waits a round trip between tasks. One-second tasks get just
// that one (a slow worker must not hoard work others could start; a straggler
// left at the end gets a backup copy elsewhere); one-microsecond tasks get
// thousands (or the round trip would dominate). This is Python's `chunksize`,
// chosen automatically and adjusted as tasks run. Before the first result,
// a worker gets one task per slot: nothing is known of the tasks yet.
//
// Fair share: a worker this coordinator did not spawn has to earn its credit.
// Whatever slots it claims, it starts with kInitialCredit tasks and gains one
// for every result it returns (a slow start, like TCP's: the bound doubles
// every round trip), and loses one for every task of its that another worker
// had to finish. A peer that claims many slots and answers nothing holds at
// most kInitialCredit tasks, and none once they have been finished elsewhere.
#ifndef FANMAP_COORDINATOR_CREDIT_H_
#define FANMAP_COORDINATOR_CREDIT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace fanmap {

// How far a worker is trusted with tasks before it has returned any.
enum class Trust : uint8_t {
  kSpawned,  // started by this coordinator (its pid proven by the socket): full credit
  kEarned,   // anyone else: credit grows with the results it returns
};

class WorkerCredit {
 public:
  static constexpr int64_t kPrefetchHorizonMicros = 10000;
  static constexpr size_t kMaxPrefetch = 2048;
  static constexpr size_t kInitialCredit = 32;
  static constexpr int64_t kTailPrefetchMaxMicros = 20000;

  explicit WorkerCredit(uint32_t slots, Trust trust = Trust::kSpawned);

  // Tasks that may be sent now. `input_done`: every item has been read (see
  // target()).
  size_t available(bool input_done = false) const {
    size_t t = target(input_done);
    return t > outstanding_ ? t - outstanding_ : 0;
  }
  // Outstanding tasks allowed in all. Once the input is done, tasks of
  // kTailPrefetchMaxMicros or longer get no prefetch: a task queued behind
  // busy slots then waits a whole task time while another worker may have a
  // slot free in a moment; with same-length tasks in lockstep rounds the
  // worker that got the prefetch ran one round more than the others (0.1 s
  // of a 1.1 s run of 100 ms requests), while the round trip prefetch hides
  // is a few percent of such a task.
  size_t target(bool input_done = false) const;
  size_t outstanding() const { return outstanding_; }
  uint32_t slots() const { return slots_; }
  // Mean task time seen so far (0 before the first result), weighted towards
  // recent batches of results. An arithmetic mean: what bounds a worker's
  // silence (a burst of instant failures must not make an honest worker's
  // next slow task look held back).
  double mean_task_micros() const { return mean_task_us_; }
  // Typical task time (0 before the first result): the same weights in log
  // space, a geometric mean. What sizes the prefetch (target()): a batch
  // that paid a one-off cost is forgotten in a few batches. It is at most the
  // mean: with mixed task times (instant failures among long tasks) the
  // prefetch covers more than kPrefetchHorizonMicros of work, and the tail
  // rule may not apply.
  double typical_task_micros() const { return typical_task_us_; }

  Trust trust() const { return trust_; }

  void OnSent(size_t tasks) { outstanding_ += tasks; }
  // `tasks` results arrived whose payload times add up to `total_micros`;
  // `proven` of them (default: all) earn credit (kEarned).
  void OnResults(size_t tasks, uint64_t total_micros, size_t proven = SIZE_MAX);
  // `tasks` were counted as sent but never left: no longer outstanding.
  void OnNotSent(size_t tasks) { outstanding_ -= std::min(outstanding_, tasks); }
  // `tasks` of this worker's tasks were finished by another worker first:
  // they are no longer outstanding here, and (kEarned) cost credit.
  void OnTakenOver(size_t tasks);
  // The worker is gone or restarted: nothing is outstanding any more.
  void Reset() { outstanding_ = 0; }

 private:
  uint32_t slots_;
  Trust trust_;
  size_t earned_ = kInitialCredit;  // kEarned: the most tasks it may hold
  size_t outstanding_ = 0;
  // Exponentially weighted per batch of results; 0 before the first.
  double mean_task_us_ = 0;
  double typical_task_us_ = 0;  // exp(log_typical_us_)
  double log_typical_us_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_CREDIT_H_
