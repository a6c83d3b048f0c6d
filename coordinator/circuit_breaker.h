// CircuitBreaker: a run-wide pause when the server is down.
//
// When kTripAfter answers in a row are outage-like (HTTP 5xx or 408, a
// timeout, a connection that fails), the breaker opens: nothing is sent for
// a pause (kFirstPauseMs, doubling up to kMaxPauseMs), then a few probes
// (kProbes requests) go out. One success closes it and the run resumes at
// full speed; if every probe fails like the rest, it opens again for a
// longer pause. While it is open or probing, failures of this kind are the
// outage's, not the items': the caller does not charge them to the items'
// --retries (only --retry-for bounds them), nor those that come after
// kSuspectAfter in a row already.
//
// The coordinator feeds it the answers of --http jobs only.
//
// Throttles (429) are neither: the server is up and asks us to slow down
// (AdaptiveRate's business). An answer of any other kind (a success, a 4xx)
// is a success here: the server is up.
//
// Times are milliseconds on the caller's clock; no I/O. Not thread-safe.
#ifndef FANMAP_COORDINATOR_CIRCUIT_BREAKER_H_
#define FANMAP_COORDINATOR_CIRCUIT_BREAKER_H_

#include <cstdint>

#include "common/protocol.h"

namespace fanmap {

enum class BreakerState : uint8_t {
  kClosed,   // requests flow
  kOpen,     // paused until the next probe
  kProbing,  // probes are out; waiting for their answers
};

// What one answer says about the server.
enum class ServerHealth : uint8_t {
  kUp,       // it answered as a working server does
  kDown,     // an outage-like failure
  kNeutral,  // says nothing about an outage (a throttle, a payload that is not HTTP)
};

// How an answer's result reads for the breaker.
ServerHealth HealthOf(const Result& result);

class CircuitBreaker {
 public:
  static constexpr int kTripAfter = 20;
  static constexpr int64_t kFirstPauseMs = 1000;
  static constexpr int64_t kMaxPauseMs = 5000;
  static constexpr int kProbes = 3;
  // This many outage-like answers in a row already look like an outage: the
  // caller stops charging them before the breaker trips.
  static constexpr int kSuspectAfter = 5;

  // An answer to a request sent at `sent_ms` came at `now_ms`. Returns true
  // if this answer closed a tripped breaker (the outage is over).
  bool OnAnswer(int64_t now_ms, int64_t sent_ms, ServerHealth health);

  // May a request go out now? While probing, each true uses up a probe.
  bool TryDispatch(int64_t now_ms);
  // When TryDispatch may say yes again: now_ms if it may now, INT64_MAX if
  // only answers can change that (all probes are out).
  int64_t NextDispatchMs(int64_t now_ms) const;

  // Open or probing: the failures now are the outage's.
  bool tripped() const { return state_ != BreakerState::kClosed; }
  // When it tripped (valid while tripped()).
  int64_t tripped_since_ms() const { return tripped_since_ms_; }
  // Tripped, or kSuspectAfter outage-like answers in a row: a failure now is
  // more likely the server's than the item's.
  bool suspect() const { return tripped() || down_in_a_row_ >= kSuspectAfter; }
  BreakerState state() const { return state_; }
  // Times the breaker opened (a trip, or failed probes), for the summary.
  uint64_t openings() const { return openings_; }

 private:
  void Open(int64_t now_ms);

  BreakerState state_ = BreakerState::kClosed;
  int down_in_a_row_ = 0;
  int64_t pause_ms_ = kFirstPauseMs;
  int64_t reopen_at_ms_ = 0;      // kOpen: when probes may go
  int64_t probing_since_ms_ = 0;  // kProbing: answers to older requests do not count as probes
  int probes_left_ = 0;           // kProbing: probes still to send
  int probes_failed_ = 0;         // kProbing: probes that failed
  int64_t tripped_since_ms_ = 0;  // when the current outage tripped it
  uint64_t openings_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_CIRCUIT_BREAKER_H_
