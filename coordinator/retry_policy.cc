#include "coordinator/retry_policy.h"

#include <algorithm>

namespace fanmap {

int64_t RetryPolicy::DelayMillis(uint32_t attempts, int64_t retry_after_ms) {
  uint32_t doublings = std::min<uint32_t>(attempts == 0 ? 0 : attempts - 1, 20);
  int64_t ceiling = std::min<int64_t>(kCapMillis, kBaseMillis << doublings);
  int64_t jitter = std::uniform_int_distribution<int64_t>(0, ceiling)(rng_);
  int64_t floor = std::clamp<int64_t>(retry_after_ms, 0, kMaxRetryAfterMillis);
  return std::max(jitter, floor);
}

}  // namespace fanmap
