#include "coordinator/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace fanmap {
namespace {

// The smaller of two limits, where 0 means none.
double Tighter(double a, double b) {
  if (a <= 0) return b;
  if (b <= 0) return a;
  return std::min(a, b);
}

double Capacity(double rate) { return 1 + rate * RateLimiter::kLatenessSeconds; }

}  // namespace

RateLimiter::RateLimiter(double requests_per_s, double tokens_per_min)
    : max_rate_(requests_per_s),
      max_token_rate_(tokens_per_min / 60.0),
      rate_(requests_per_s),
      token_rate_(tokens_per_min / 60.0) {
  // A configured --rate starts with a share of a second at once: the first
  // answers of a run against a server that is down then come back
  // together, and CircuitBreaker suspects an outage before an item's early
  // retry is charged too (with --retries 1, one failed for good).
  requests_ = rate_ > 0 ? std::max(Capacity(rate_), rate_ * kStartSeconds) : 0;
  tokens_ = token_rate_;
}

void RateLimiter::Refill(int64_t now_us) {
  if (last_us_ < 0) last_us_ = now_us;
  double dt = std::max<int64_t>(0, now_us - last_us_) / 1e6;
  last_us_ = now_us;
  // (The starting share above is spent before the bucket refills.)
  if (rate_ > 0 && dt > 0) {
    requests_ = std::max(requests_, std::min(Capacity(rate_), requests_ + rate_ * dt));
  }
  // A request's tokens may exceed a short burst: the token bucket holds a
  // second's worth.
  if (token_rate_ > 0) tokens_ = std::min(token_rate_, tokens_ + token_rate_ * dt);
}

void RateLimiter::Apply() {
  double old_rate = rate_;
  double old_token_rate = token_rate_;
  rate_ = Tighter(max_rate_, dynamic_rate_);
  token_rate_ = Tighter(max_token_rate_, dynamic_token_rate_);
  // A limit that begins starts with one request's worth; one that shrinks
  // keeps no more than its new capacity.
  if (rate_ > 0 && rate_ != old_rate) {
    requests_ = old_rate > 0 ? std::min(requests_, Capacity(rate_)) : 1;
  }
  if (token_rate_ > 0) {
    tokens_ =
        old_token_rate > 0 ? std::min(tokens_, token_rate_) : token_rate_ * kTokenStartSeconds;
  }
}

void RateLimiter::SetDynamicLimits(int64_t now_us, double requests_per_s, double tokens_per_s) {
  Refill(now_us);
  dynamic_rate_ = std::max(0.0, requests_per_s);
  dynamic_token_rate_ = std::max(0.0, tokens_per_s);
  Apply();
}

bool RateLimiter::TryAcquire(int64_t now_us, double tokens) {
  Refill(now_us);
  if (rate_ > 0 && requests_ < 1) return false;
  // A request larger than the whole bucket may go once the bucket is full.
  if (token_rate_ > 0 && tokens_ < std::min(tokens, token_rate_)) return false;
  if (rate_ > 0) requests_ -= 1;
  if (token_rate_ > 0) tokens_ -= tokens;
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

void RateLimiter::OnUsage(double estimated, double actual) {
  if (token_rate_ > 0) tokens_ -= actual - estimated;
}

}  // namespace fanmap
