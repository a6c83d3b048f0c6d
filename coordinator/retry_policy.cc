#include "coordinator/retry_policy.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace fanmap {

int64_t RetryPolicy::DelayMillis(uint32_t attempts, int64_t retry_after_ms) {
  uint32_t doublings = std::min<uint32_t>(attempts == 0 ? 0 : attempts - 1, 20);
  int64_t ceiling = std::min<int64_t>(kCapMillis, kBaseMillis << doublings);
  int64_t jitter = std::uniform_int_distribution<int64_t>(0, ceiling)(rng_);
  int64_t floor = std::clamp<int64_t>(retry_after_ms, 0, kMaxRetryAfterMillis);
  return std::max(jitter, floor);
}

bool ParseRetryFor(const std::string& text, int64_t* ms) {
  if (text.empty() || !(text[0] >= '0' && text[0] <= '9')) return false;
  char* end = nullptr;
  errno = 0;
  double value = std::strtod(text.c_str(), &end);
  if (errno != 0 || !std::isfinite(value) || value < 0) return false;
  std::string unit(end);
  double scale;
  if (unit.empty() || unit == "m") {
    scale = 60e3;
  } else if (unit == "s") {
    scale = 1e3;
  } else if (unit == "h") {
    scale = 3600e3;
  } else {
    return false;
  }
  double total = value * scale;
  if (total > 365.0 * 86400e3) return false;
  *ms = static_cast<int64_t>(std::ceil(total));
  return true;
}

}  // namespace fanmap
