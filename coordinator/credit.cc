#include "coordinator/credit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace fanmap {

WorkerCredit::WorkerCredit(uint32_t slots, Trust trust)
    : slots_(std::max<uint32_t>(1, slots)), trust_(trust) {}

size_t WorkerCredit::target(bool input_done) const {
  size_t target = slots_;  // nothing measured yet: one task per slot
  bool tail_of_long_tasks = input_done && typical_task_us_ >= kTailPrefetchMaxMicros;
  if (typical_task_us_ > 0 && !tail_of_long_tasks) {
    // A worker finishes slots_/typical tasks per microsecond.
    // (The tolerance absorbs exp(log(x)) != x in the last bit.)
    double prefetch =
        std::floor(slots_ * kPrefetchHorizonMicros / std::max(typical_task_us_, 0.01) + 1e-6);
    target += static_cast<size_t>(std::clamp<double>(prefetch, 1, kMaxPrefetch));
  }
  return trust_ == Trust::kEarned ? std::min(target, earned_) : target;
}

void WorkerCredit::OnTakenOver(size_t tasks) {
  outstanding_ -= std::min(outstanding_, tasks);
  earned_ -= std::min(earned_, tasks);
}

void WorkerCredit::OnResults(size_t tasks, uint64_t total_micros, size_t proven) {
  outstanding_ -= std::min(outstanding_, tasks);
  if (tasks == 0) return;
  // Saturates: earned_ only bounds target(), which is bounded anyway.
  earned_ = std::min<size_t>(earned_ + std::min(tasks, proven), SIZE_MAX / 2);
  // Never below 1 µs: a task that took "0" still cost a round trip's share.
  double batch_mean = std::max(1.0, static_cast<double>(total_micros) / tasks);
  bool first = mean_task_us_ <= 0;
  mean_task_us_ = first ? batch_mean : 0.7 * mean_task_us_ + 0.3 * batch_mean;
  // The prefetch's estimate is averaged in log space: task times span
  // microseconds to minutes, and one batch that paid a one-off cost (a
  // co-process's start-up: the first answers of a --pipe command that
  // buffers its output, tens of ms for a microsecond item) must not hold the
  // prefetch down for dozens of batches, as the arithmetic mean would (it
  // forgets a factor of 1000 in 20 batches; this one in 6).
  double log_mean = std::log(batch_mean);
  log_typical_us_ = first ? log_mean : 0.7 * log_typical_us_ + 0.3 * log_mean;
  typical_task_us_ = std::exp(log_typical_us_);
}

}  // namespace fanmap
