#include "coordinator/log_limiter.h"

#include <algorithm>

namespace fanmap {

LogLimiter::LogLimiter(int burst, int64_t interval_ms)
    : burst_(std::max(1, burst)),
      interval_ms_(std::max<int64_t>(1, interval_ms)),
      tokens_(burst_) {}

bool LogLimiter::Allow(int64_t now_ms) {
  ++total_;
  if (!started_) {
    started_ = true;
    refilled_ms_ = now_ms;
  }
  if (now_ms > refilled_ms_) {
    int64_t gained = (now_ms - refilled_ms_) / interval_ms_;
    if (gained >= burst_ - tokens_) {
      tokens_ = burst_;
      // A full bucket gains nothing: the next token is due one interval
      // after the next line, not after the time it stood full.
      refilled_ms_ = now_ms;
    } else {
      tokens_ += gained;
      refilled_ms_ += gained * interval_ms_;
    }
  }
  if (tokens_ == 0) {
    ++suppressed_;
    return false;
  }
  --tokens_;
  return true;
}

uint64_t LogLimiter::TakeSuppressed() {
  uint64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

}  // namespace fanmap
