#include "coordinator/credit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace fanmap {

WorkerCredit::WorkerCredit(uint32_t slots, Trust trust)
    : slots_(std::max<uint32_t>(1, slots)), trust_(trust) {}

size_t WorkerCredit::target(bool input_done) const {
  size_t target = slots_;  // nothing measured yet: one task per slot
  bool tail_of_long_tasks = input_done && mean_task_us_ >= kTailPrefetchMaxMicros;
  if (mean_task_us_ > 0 && !tail_of_long_tasks) {
    // A worker finishes slots_/mean tasks per microsecond.
    double prefetch = std::floor(slots_ * kPrefetchHorizonMicros / std::max(mean_task_us_, 0.01));
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
  mean_task_us_ = mean_task_us_ <= 0 ? batch_mean : 0.7 * mean_task_us_ + 0.3 * batch_mean;
}

}  // namespace fanmap
