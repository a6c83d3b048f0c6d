// RetryPolicy: when a failed attempt may run again.
//
// Exponential backoff with full jitter (the delay before attempt n+1 is
// uniform in [0, min(cap, base·2^(n-1))]), never sooner than the server's
// Retry-After. Failures the payload calls retryable (timeouts, HTTP 429/408/
// 5xx, connection errors, a crashed co-process) and lost workers are retried
// up to `retries` times; anything else is final at once.
#ifndef FANMAP_COORDINATOR_RETRY_POLICY_H_
#define FANMAP_COORDINATOR_RETRY_POLICY_H_

#include <cstdint>
#include <random>
#include <string>

namespace fanmap {

class RetryPolicy {
 public:
  static constexpr int64_t kBaseMillis = 100;
  static constexpr int64_t kCapMillis = 30000;
  static constexpr int64_t kMaxRetryAfterMillis = 600000;

  RetryPolicy(int retries, uint64_t seed) : retries_(retries), rng_(seed) {}

  // True if an item that has been sent `attempts` times may be sent again.
  bool MayRetry(uint32_t attempts) const { return attempts <= static_cast<uint32_t>(retries_); }

  // Milliseconds to wait before the next attempt, after `attempts` attempts
  // (>= 1), given the server's Retry-After in milliseconds (0 if none).
  int64_t DelayMillis(uint32_t attempts, int64_t retry_after_ms);

  int retries() const { return retries_; }

 private:
  int retries_;
  std::mt19937_64 rng_;
};

// Parses --retry-for: a non-negative number with a unit, s, m or h ("90s",
// "10m", "1.5h"), or a bare number of minutes ("10"); 0 means no bound.
// Sets `*ms` and returns true, or returns false for anything else (and for
// more than a year).
bool ParseRetryFor(const std::string& text, int64_t* ms);

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_RETRY_POLICY_H_
