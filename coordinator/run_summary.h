// RunSummary: what a run did, told at its end: items ok and failed, failed
// attempts by cause, requests per second, latency percentiles, LLM tokens.
//
// Fed with every answer that closes an attempt (OnAnswer) and with the final
// item counts (SetItems). Latencies go into a log-scale histogram of
// kBuckets buckets (each 2% wide), so memory does not grow with the run and
// percentiles are within 2% of the true value. Not thread-safe.
#ifndef FANMAP_COORDINATOR_RUN_SUMMARY_H_
#define FANMAP_COORDINATOR_RUN_SUMMARY_H_

#include <array>
#include <cstdint>
#include <string>

#include "common/protocol.h"

namespace fanmap {

struct SummaryFigures {
  uint64_t items_ok = 0;
  uint64_t items_failed = 0;
  uint64_t requests = 0;  // attempts answered (by the payload: a worker's result)
  // Attempts that failed with a retryable error, by cause.
  uint64_t retried_429 = 0;
  uint64_t retried_5xx = 0;
  uint64_t retried_timeout = 0;
  uint64_t retried_connection = 0;
  uint64_t retried_other = 0;
  uint64_t outage_pauses = 0;  // times the run paused for an outage (CircuitBreaker)
  double wall_s = 0;
  // Latency of answered attempts (the payload's elapsed time), in ms.
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
};

class RunSummary {
 public:
  static constexpr size_t kBuckets = 1600;  // 1.02^1600 us: beyond 11 days

  // An answer that closed an attempt.
  void OnAnswer(const Result& result);
  void SetItems(uint64_t ok, uint64_t failed) {
    figures_.items_ok = ok;
    figures_.items_failed = failed;
  }
  void SetOutagePauses(uint64_t n) { figures_.outage_pauses = n; }

  // The figures, with `wall_s` the run's duration.
  SummaryFigures Figures(double wall_s) const;

  // Tokens of successful answers so far (for the progress line).
  uint64_t tokens() const { return figures_.prompt_tokens + figures_.completion_tokens; }
  uint64_t throttled() const { return figures_.retried_429; }
  bool chat() const { return chat_; }

 private:
  double Percentile(double share) const;

  SummaryFigures figures_;
  std::array<uint64_t, kBuckets> latency_{};
  uint64_t latency_count_ = 0;
  uint64_t max_us_ = 0;
  bool chat_ = false;  // some answer reported token usage
};

// What a run's tasks were: the summary speaks of requests and HTTP causes
// only for HTTP, and of tokens only for chat.
enum class SummaryKind : uint8_t { kTasks, kHttp, kChat };

// One or two lines for stderr, without the "fanmap: " prefix.
std::string FormatSummary(const SummaryFigures& figures, SummaryKind kind);
// One JSON object on one line (--summary FILE); every figure is present.
std::string SummaryJson(const SummaryFigures& figures);

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_RUN_SUMMARY_H_
