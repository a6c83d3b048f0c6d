#include "coordinator/credit.h"

#include <algorithm>
#include <cmath>

namespace fanmap {

WorkerCredit::WorkerCredit(uint32_t slots) : slots_(std::max<uint32_t>(1, slots)) {}

size_t WorkerCredit::target() const {
  if (mean_task_us_ <= 0) return slots_;  // nothing measured yet: one task per slot
  // A worker finishes slots_/mean tasks per microsecond.
  double prefetch = std::floor(slots_ * kPrefetchHorizonMicros / std::max(mean_task_us_, 0.01));
  return slots_ + static_cast<size_t>(std::clamp<double>(prefetch, 1, kMaxPrefetch));
}

void WorkerCredit::OnResults(size_t tasks, uint64_t total_micros) {
  outstanding_ -= std::min(outstanding_, tasks);
  if (tasks == 0) return;
  // Never below 1 µs: a task that took "0" still cost a round trip's share.
  double batch_mean = std::max(1.0, static_cast<double>(total_micros) / tasks);
  mean_task_us_ = mean_task_us_ <= 0 ? batch_mean : 0.7 * mean_task_us_ + 0.3 * batch_mean;
}

}  // namespace fanmap
