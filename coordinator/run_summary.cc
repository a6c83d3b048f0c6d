#include "coordinator/run_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace fanmap {
namespace {

constexpr double kBucketGrowth = 1.02;

size_t BucketOf(uint64_t us) {
  if (us <= 1) return 0;
  double b = std::log(static_cast<double>(us)) / std::log(kBucketGrowth);
  return std::min<size_t>(RunSummary::kBuckets - 1, static_cast<size_t>(b));
}

// The middle of a bucket, in microseconds.
double BucketValue(size_t b) { return std::pow(kBucketGrowth, b + 0.5); }

int64_t ExtraInt(const Result& result, const char* key) {
  auto it = result.extra.find(key);
  if (it == result.extra.end()) return -1;
  const int64_t* v = std::get_if<int64_t>(&it->second);
  return v != nullptr ? *v : -1;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// Milliseconds as people read them: 0.42 ms, 12.3 ms, 1234 ms.
std::string Ms(double ms) { return Fixed(ms, ms < 1 ? 2 : ms < 100 ? 1 : 0) + " ms"; }

}  // namespace

void RunSummary::OnAnswer(const Result& result) {
  ++figures_.requests;
  ++latency_[BucketOf(result.elapsed_us)];
  ++latency_count_;
  max_us_ = std::max(max_us_, result.elapsed_us);
  if (result.ok) {
    int64_t prompt = ExtraInt(result, "prompt_tokens");
    int64_t completion = ExtraInt(result, "completion_tokens");
    if (prompt >= 0) figures_.prompt_tokens += static_cast<uint64_t>(prompt);
    if (completion >= 0) figures_.completion_tokens += static_cast<uint64_t>(completion);
    if (prompt >= 0 || completion >= 0) chat_ = true;
    return;
  }
  if (!result.retryable) return;
  switch (result.cause) {
    case FailureCause::kThrottled:
      ++figures_.retried_429;
      break;
    case FailureCause::kServerError:
      ++figures_.retried_5xx;
      break;
    case FailureCause::kTimeout:
      ++figures_.retried_timeout;
      break;
    case FailureCause::kConnection:
      ++figures_.retried_connection;
      break;
    case FailureCause::kNone:
    case FailureCause::kOther:
      ++figures_.retried_other;
      break;
  }
}

double RunSummary::Percentile(double share) const {
  if (latency_count_ == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(std::ceil(share * latency_count_));
  uint64_t seen = 0;
  for (size_t b = 0; b < kBuckets; ++b) {
    seen += latency_[b];
    if (seen >= std::max<uint64_t>(rank, 1)) {
      return std::min(BucketValue(b), static_cast<double>(max_us_)) / 1000.0;
    }
  }
  return max_us_ / 1000.0;
}

SummaryFigures RunSummary::Figures(double wall_s) const {
  SummaryFigures f = figures_;
  f.wall_s = wall_s;
  f.p50_ms = Percentile(0.50);
  f.p90_ms = Percentile(0.90);
  f.p99_ms = Percentile(0.99);
  f.max_ms = max_us_ / 1000.0;
  return f;
}

std::string FormatSummary(const SummaryFigures& f, SummaryKind kind) {
  double wall = std::max(f.wall_s, 1e-6);
  if (kind == SummaryKind::kTasks) {
    // Commands, co-processes, builtins: attempts and task times, no HTTP.
    uint64_t retried =
        f.retried_429 + f.retried_5xx + f.retried_timeout + f.retried_connection + f.retried_other;
    return std::to_string(f.items_ok) + " ok, " + std::to_string(f.items_failed) + " failed in " +
           Fixed(f.wall_s, 1) + " s (" + Fixed((f.items_ok + f.items_failed) / wall, 1) +
           " items/s); " + std::to_string(f.requests) + " attempts, " + std::to_string(retried) +
           " failed and retried (" + std::to_string(f.retried_timeout) + " timeout)" +
           "\ntask time p50 " + Ms(f.p50_ms) + ", p90 " + Ms(f.p90_ms) + ", p99 " + Ms(f.p99_ms) +
           ", max " + Ms(f.max_ms);
  }
  const bool tokens = kind == SummaryKind::kChat;
  std::string line = std::to_string(f.items_ok) + " ok, " + std::to_string(f.items_failed) +
                     " failed in " + Fixed(f.wall_s, 1) + " s; " + std::to_string(f.requests) +
                     " requests (" + Fixed(f.requests / wall, 1) +
                     "/s); retries: " + std::to_string(f.retried_429) + " 429, " +
                     std::to_string(f.retried_5xx) + " 5xx, " + std::to_string(f.retried_timeout) +
                     " timeout, " + std::to_string(f.retried_connection) + " connection";
  if (f.retried_other > 0) line += ", " + std::to_string(f.retried_other) + " other";
  if (f.outage_pauses > 0) line += "; paused " + std::to_string(f.outage_pauses) + "x for outages";
  line += "\nlatency p50 " + Ms(f.p50_ms) + ", p90 " + Ms(f.p90_ms) + ", p99 " + Ms(f.p99_ms) +
          ", max " + Ms(f.max_ms);
  if (tokens) {
    line += "; tokens: " + std::to_string(f.prompt_tokens) + " prompt + " +
            std::to_string(f.completion_tokens) + " completion (" +
            Fixed((f.prompt_tokens + f.completion_tokens) / wall, 0) + "/s)";
  }
  return line;
}

std::string SummaryJson(const SummaryFigures& f) {
  double wall = std::max(f.wall_s, 1e-6);
  nlohmann::json j = {
      {"items", {{"ok", f.items_ok}, {"failed", f.items_failed}}},
      {"requests", f.requests},
      {"requests_per_s", f.requests / wall},
      {"retries",
       {{"429", f.retried_429},
        {"5xx", f.retried_5xx},
        {"timeout", f.retried_timeout},
        {"connection", f.retried_connection},
        {"other", f.retried_other}}},
      {"outage_pauses", f.outage_pauses},
      {"wall_s", f.wall_s},
      {"latency_ms", {{"p50", f.p50_ms}, {"p90", f.p90_ms}, {"p99", f.p99_ms}, {"max", f.max_ms}}},
      {"tokens",
       {{"prompt", f.prompt_tokens},
        {"completion", f.completion_tokens},
        {"per_s", (f.prompt_tokens + f.completion_tokens) / wall}}}};
  return j.dump();
}

}  // namespace fanmap
