// RateLimiter: paces dispatch over all workers.
//
// Two token buckets, one for requests and one for estimated LLM tokens. Each
// paces to the smaller of its configured limit (--rate, --tokens-per-min)
// and a dynamic one that the caller sets from what the server says
// (AdaptiveRate); 0 means "none" for every limit. The request bucket holds
// one request plus kLatenessSeconds of its rate: requests go out one at a
// time, evenly (nginx's limit_req without burst refuses any two closer than
// its rate allows), a pause is not followed by a burst, and a caller that
// polls up to kLatenessSeconds late still gets the whole rate (the bucket
// carries the fraction of a request it gained while waiting).
//
// Times are in microseconds on the caller's clock, so tests can drive it.
#ifndef FANMAP_COORDINATOR_RATE_LIMITER_H_
#define FANMAP_COORDINATOR_RATE_LIMITER_H_

#include <cstdint>

namespace fanmap {

class RateLimiter {
 public:
  static constexpr double kLatenessSeconds = 0.002;   // request bucket: 1 + this much rate
  static constexpr double kTokenStartSeconds = 0.05;  // a new token limit starts this full
  static constexpr double kStartSeconds = 0.05;       // ... and a configured --rate

  // 0 means "no limit" for either.
  RateLimiter(double requests_per_s, double tokens_per_min);

  // True if a request of `tokens` estimated tokens may be sent at `now_us`;
  // if so, it is accounted for.
  bool TryAcquire(int64_t now_us, double tokens);
  // Microseconds from `now_us` until TryAcquire(tokens) could succeed
  // (0 = now); -1 if no limit applies.
  int64_t WaitMicros(int64_t now_us, double tokens);

  // The dynamic limits, in requests/s and tokens/s (0: none), from `now_us`.
  void SetDynamicLimits(int64_t now_us, double requests_per_s, double tokens_per_s);
  // A response reported `actual` tokens for a request estimated at
  // `estimated`: the difference is charged (or refunded).
  void OnUsage(double estimated, double actual);

  // Current request rate limit (0 = none); for tests and progress.
  double request_rate() const { return rate_; }
  bool limited() const { return rate_ > 0 || token_rate_ > 0; }

 private:
  void Refill(int64_t now_us);
  void Apply();

  double max_rate_;        // configured requests/s (0 = none)
  double max_token_rate_;  // configured tokens/s (0 = none)
  double dynamic_rate_ = 0;
  double dynamic_token_rate_ = 0;
  double rate_;          // in force: the smaller of the two (0 = none)
  double token_rate_;    // in force: tokens/s (0 = none)
  double requests_ = 0;  // request bucket
  double tokens_ = 0;    // token bucket
  int64_t last_us_ = -1;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_RATE_LIMITER_H_
