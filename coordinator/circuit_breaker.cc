#include "coordinator/circuit_breaker.h"

#include <algorithm>
#include <climits>

namespace fanmap {

ServerHealth HealthOf(const Result& result) {
  if (result.ok) return ServerHealth::kUp;
  switch (result.cause) {
    case FailureCause::kServerError:
    case FailureCause::kTimeout:
    case FailureCause::kConnection:
      return result.retryable ? ServerHealth::kDown : ServerHealth::kNeutral;
    case FailureCause::kThrottled:
    case FailureCause::kNone:
      return ServerHealth::kNeutral;
    case FailureCause::kOther:
      // A plain HTTP error (a 4xx) comes from a server that works.
      return result.extra.count("status") > 0 ? ServerHealth::kUp : ServerHealth::kNeutral;
  }
  return ServerHealth::kNeutral;
}

void CircuitBreaker::Open(int64_t now_ms) {
  state_ = BreakerState::kOpen;
  reopen_at_ms_ = now_ms + pause_ms_;
  pause_ms_ = std::min(kMaxPauseMs, pause_ms_ * 2);
  ++openings_;
}

bool CircuitBreaker::OnAnswer(int64_t now_ms, int64_t sent_ms, ServerHealth health) {
  switch (health) {
    case ServerHealth::kNeutral:
      return false;
    case ServerHealth::kUp: {
      down_in_a_row_ = 0;
      bool was_tripped = tripped();
      state_ = BreakerState::kClosed;
      pause_ms_ = kFirstPauseMs;
      return was_tripped;
    }
    case ServerHealth::kDown:
      break;
  }
  if (state_ == BreakerState::kClosed) {
    if (++down_in_a_row_ >= kTripAfter) {
      tripped_since_ms_ = now_ms;
      Open(now_ms);
    }
    return false;
  }
  // Answers to requests sent before the probes say nothing new.
  if (state_ == BreakerState::kProbing && sent_ms >= probing_since_ms_ &&
      ++probes_failed_ >= kProbes) {
    Open(now_ms);
  }
  return false;
}

bool CircuitBreaker::TryDispatch(int64_t now_ms) {
  if (state_ == BreakerState::kClosed) return true;
  if (state_ == BreakerState::kOpen) {
    if (now_ms < reopen_at_ms_) return false;
    state_ = BreakerState::kProbing;
    probing_since_ms_ = now_ms;
    probes_left_ = kProbes;
    probes_failed_ = 0;
  }
  if (probes_left_ == 0) return false;
  --probes_left_;
  return true;
}

int64_t CircuitBreaker::NextDispatchMs(int64_t now_ms) const {
  switch (state_) {
    case BreakerState::kClosed:
      return now_ms;
    case BreakerState::kOpen:
      return std::max(now_ms, reopen_at_ms_);
    case BreakerState::kProbing:
      return probes_left_ > 0 ? now_ms : INT64_MAX;
  }
  return now_ms;
}

}  // namespace fanmap
