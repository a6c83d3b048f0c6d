// LogLimiter: decides whether one more line of a repeated kind may be logged.
//
// A peer can make the coordinator log the same kind of line as often as it
// sends a frame (10,000 bad HELLOs would be 10,000 lines). One LogLimiter per
// kind of line lets the first few through, then at most one per interval,
// and counts what it held back so that the caller can say so:
//
//   if (hello_log_.Allow(NowMillis())) {
//     Log("refused a worker: " + Printable(reason));
//     if (uint64_t n = hello_log_.TakeSuppressed()) {
//       Log("(" + std::to_string(n) + " similar lines suppressed)");
//     }
//   }
//
// It is a token bucket holding `burst` lines, full at the start, that gains
// one line every `interval_ms` (never more than `burst`). So a burst of up to
// `burst` lines goes through, then one line per interval; after a quiet spell
// of `burst` intervals a whole burst goes through again.
//
// It only decides: times are milliseconds on the caller's clock (a monotonic
// one; a time earlier than one already seen counts as no time passing), so
// tests can drive it. Not thread-safe: one poll loop owns it.
#ifndef FANMAP_COORDINATOR_LOG_LIMITER_H_
#define FANMAP_COORDINATOR_LOG_LIMITER_H_

#include <cstdint>

namespace fanmap {

class LogLimiter {
 public:
  static constexpr int kDefaultBurst = 5;
  static constexpr int64_t kDefaultIntervalMs = 10000;

  // `burst` below 1 is taken as 1, `interval_ms` below 1 as 1.
  explicit LogLimiter(int burst = kDefaultBurst, int64_t interval_ms = kDefaultIntervalMs);

  // Records one event at `now_ms`. True if its line may be printed now;
  // false if it is suppressed (and counted in suppressed()).
  bool Allow(int64_t now_ms);

  // Returns the number of events suppressed since the last call, and resets
  // it to 0. Call it after an allowed line to report what was held back, and
  // once at the end of the run so that the last suppressed lines are not
  // silently lost.
  uint64_t TakeSuppressed();

  // Events suppressed and not yet taken.
  uint64_t suppressed() const { return suppressed_; }
  // All events ever passed to Allow(), allowed or not.
  uint64_t total() const { return total_; }

 private:
  int64_t burst_;
  int64_t interval_ms_;
  int64_t tokens_;           // lines that may go now, 0..burst_
  int64_t refilled_ms_ = 0;  // time the next token is counted from
  bool started_ = false;     // refilled_ms_ is set
  uint64_t suppressed_ = 0;
  uint64_t total_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_LOG_LIMITER_H_
