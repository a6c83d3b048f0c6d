#include "coordinator/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace fanmap {
namespace {

constexpr double kRecoveryPerSecond = 0.5;  // relative growth after a throttle
constexpr double kMinRate = 0.1;            // requests/s: never stop entirely
constexpr int64_t kThrottleEveryUs = 1000000;

}  // namespace

RateLimiter::RateLimiter(double requests_per_s, double tokens_per_min)
    : max_rate_(requests_per_s), rate_(requests_per_s), token_rate_(tokens_per_min / 60.0) {
  requests_ = rate_ > 0 ? std::max(1.0, rate_) : 0;
  tokens_ = token_rate_;
}

void RateLimiter::Refill(int64_t now_us) {
  if (last_us_ < 0) last_us_ = now_us;
  double dt = std::max<int64_t>(0, now_us - last_us_) / 1e6;
  last_us_ = now_us;
  if (rate_ > 0 && (max_rate_ == 0 || rate_ < max_rate_)) {
    rate_ *= 1 + kRecoveryPerSecond * dt;
    if (max_rate_ > 0) {
      rate_ = std::min(rate_, max_rate_);
    } else if (rate_ >= lift_at_) {
      rate_ = 0;  // recovered: no limit again
    }
  }
  if (rate_ > 0) requests_ = std::min(std::max(1.0, rate_), requests_ + rate_ * dt);
  if (token_rate_ > 0) tokens_ = std::min(token_rate_, tokens_ + token_rate_ * dt);
  if (now_us - window_start_us_ >= 1000000) {
    observed_rate_ = window_sent_ / ((now_us - window_start_us_) / 1e6);
    window_start_us_ = now_us;
    window_sent_ = 0;
    last_throttled_ = throttled_;
    last_answered_ = answered_;
    throttled_ = answered_ = 0;
  }
}

bool RateLimiter::TryAcquire(int64_t now_us, double tokens) {
  Refill(now_us);
  if (rate_ > 0 && requests_ < 1) return false;
  // A request larger than the whole bucket may go once the bucket is full.
  if (token_rate_ > 0 && tokens_ < std::min(tokens, token_rate_)) return false;
  if (rate_ > 0) requests_ -= 1;
  if (token_rate_ > 0) tokens_ -= tokens;
  window_sent_ += 1;
  return true;
}

int64_t RateLimiter::WaitMicros(int64_t now_us, double tokens) {
  Refill(now_us);
  if (!limited()) return -1;
  double wait_s = 0;
  if (rate_ > 0 && requests_ < 1) wait_s = std::max(wait_s, (1 - requests_) / rate_);
  double need = std::min(tokens, token_rate_);
  if (token_rate_ > 0 && tokens_ < need) wait_s = std::max(wait_s, (need - tokens_) / token_rate_);
  return static_cast<int64_t>(std::ceil(wait_s * 1e6));
}

void RateLimiter::OnAccepted(int64_t now_us) {
  Refill(now_us);
  answered_ += 1;
}

void RateLimiter::OnThrottled(int64_t now_us) {
  Refill(now_us);
  throttled_ += 1;
  answered_ += 1;
  // Many requests in flight come back throttled together: one decrease each
  // second is enough, or the rate would collapse.
  if (last_throttle_us_ >= 0 && now_us - last_throttle_us_ < kThrottleEveryUs) return;
  last_throttle_us_ = now_us;
  double current = rate_ > 0 ? rate_ : std::max(observed_rate_, window_sent_);
  if (max_rate_ <= 0 && rate_ <= 0) lift_at_ = std::max(kMinRate, 2 * current);
  double refused = (throttled_ + last_throttled_) / (answered_ + last_answered_);
  rate_ = std::max(kMinRate, current * std::max(0.5, 1 - refused));
  requests_ = std::min(requests_, 1.0);
}

void RateLimiter::OnUsage(double estimated, double actual) {
  if (token_rate_ > 0) tokens_ -= actual - estimated;
}

}  // namespace fanmap
