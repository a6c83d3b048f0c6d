// RateLimiter: paces dispatch over all workers.
//
// Two token buckets, one for requests (--rate) and one for estimated LLM
// tokens (--tokens-per-min), each holding at most one second's worth (so a
// pause is not followed by a burst). When any worker reports being throttled
// (HTTP 429), every worker slows down: the request rate (measured from what
// was actually sent when no --rate was given) is cut, at most once a second,
// to the share the server accepted over the last second or two, and by half
// at most; it then grows back by half its value per second, up to the
// configured limit (or, without --rate, until the limit is lifted again). So
// a server that turns most requests away slows us a lot, and an occasional
// 429 barely. Each throttled item itself waits for its Retry-After
// (RetryPolicy).
//
// Times are in microseconds on the caller's clock, so tests can drive it.
#ifndef FANMAP_COORDINATOR_RATE_LIMITER_H_
#define FANMAP_COORDINATOR_RATE_LIMITER_H_

#include <cstdint>

namespace fanmap {

class RateLimiter {
 public:
  // 0 means "no limit" for either.
  RateLimiter(double requests_per_s, double tokens_per_min);

  // True if a request of `tokens` estimated tokens may be sent at `now_us`;
  // if so, it is accounted for.
  bool TryAcquire(int64_t now_us, double tokens);
  // Microseconds from `now_us` until TryAcquire(tokens) could succeed
  // (0 = now); -1 if no limit applies.
  int64_t WaitMicros(int64_t now_us, double tokens);

  // A request was throttled (HTTP 429).
  void OnThrottled(int64_t now_us);
  // A request got an answer that was not a throttle.
  void OnAccepted(int64_t now_us);
  // A response reported `actual` tokens for a request estimated at
  // `estimated`: the difference is charged (or refunded).
  void OnUsage(double estimated, double actual);

  // Current request rate limit (0 = none); for tests and progress.
  double request_rate() const { return rate_; }
  bool limited() const { return rate_ > 0 || token_rate_ > 0; }

 private:
  void Refill(int64_t now_us);

  double max_rate_;      // configured requests/s (0 = none)
  double rate_;          // current requests/s (0 = none)
  double lift_at_ = 0;   // without --rate: rate at which the limit is lifted
  double token_rate_;    // tokens/s (0 = none)
  double requests_ = 0;  // request bucket
  double tokens_ = 0;    // token bucket
  int64_t last_us_ = -1;
  int64_t last_throttle_us_ = -1;
  // Requests sent recently, to learn the rate when throttled without --rate.
  int64_t window_start_us_ = 0;
  double window_sent_ = 0;
  double observed_rate_ = 0;
  // Answers in this second and the one before: throttled, and all.
  double throttled_ = 0, answered_ = 0, last_throttled_ = 0, last_answered_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_RATE_LIMITER_H_
