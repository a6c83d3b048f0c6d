// mock-llm's server-side limits, apart from its sockets (header-only: the
// mock is one translation unit).
//
// MockRateLimit: an OpenAI-like rate limit in requests and tokens, per second
// and/or per minute. Each limit is a token bucket that holds one period's
// worth and refills continuously (so a client may burst up to a period's
// worth, then keep the rate); a request that finds any bucket short is
// refused (429) and costs nothing. Its answers carry OpenAI's headers
// (x-ratelimit-{limit,remaining,reset}-{requests,tokens}; resets in Go's
// duration format, the time until the bucket is full again) unless headers
// are switched off, as nginx's limit_req sends none.
//
// MockOutage: every chat request fails with 503 (no Retry-After) between two
// instants after the start, or while switched on (POST /admin/outage).
//
// Both are thread-safe; times are steady_clock instants passed in.
#ifndef FANMAP_TESTS_MOCK_LLM_MOCK_LIMITS_H_
#define FANMAP_TESTS_MOCK_LLM_MOCK_LIMITS_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace fanmap {

struct MockLimitConfig {
  double requests_per_s = 0;  // 0: no such limit
  double requests_per_min = 0;
  double tokens_per_s = 0;
  double tokens_per_min = 0;
  bool headers = true;  // send x-ratelimit-* headers (and retry-after-ms on 429)
  bool any() const {
    return requests_per_s > 0 || requests_per_min > 0 || tokens_per_s > 0 || tokens_per_min > 0;
  }
};

// A duration in milliseconds as Go's time.Duration prints it ("20ms",
// "1.5s", "6m0s"), which OpenAI's reset headers use.
inline std::string GoDuration(double ms) {
  char buf[64];
  if (ms <= 0) return "0s";
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%.3f", ms);
  } else {
    double s = ms / 1000;
    int64_t minutes = static_cast<int64_t>(s / 60);
    double rest = s - 60.0 * minutes;
    if (minutes > 0) {
      std::snprintf(buf, sizeof buf, "%lldm%.3f", static_cast<long long>(minutes), rest);
    } else {
      std::snprintf(buf, sizeof buf, "%.3f", rest);
    }
  }
  std::string text = buf;
  // Trailing zeros of the fraction go, as Go drops them.
  if (text.find('.') != std::string::npos) {
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
  }
  return text + (ms < 1000 ? "ms" : "s");
}

class MockRateLimit {
 public:
  using Clock = std::chrono::steady_clock;
  using Headers = std::vector<std::pair<std::string, std::string>>;

  explicit MockRateLimit(const MockLimitConfig& config) : config_(config) {
    auto add = [](std::vector<Bucket>* to, double limit, double period_s) {
      if (limit > 0) to->push_back(Bucket{limit, limit / period_s, limit});
    };
    add(&requests_, config.requests_per_s, 1);
    add(&requests_, config.requests_per_min, 60);
    add(&tokens_, config.tokens_per_s, 1);
    add(&tokens_, config.tokens_per_min, 60);
  }

  bool enabled() const { return config_.any(); }

  // Charges one request of `tokens` at `now`; false (and nothing charged) if
  // a limit refuses it. `*headers` gets the headers to send either way;
  // `*retry_ms` how long until the request would pass.
  bool Admit(Clock::time_point now, double tokens, Headers* headers, double* retry_ms) {
    std::lock_guard<std::mutex> lock(mu_);
    double dt = started_ ? std::chrono::duration<double>(now - last_).count() : 0;
    started_ = true;
    last_ = now;
    for (Bucket* b : All()) b->level = std::min(b->limit, b->level + b->rate * std::max(0.0, dt));
    double wait_s = 0;
    for (Bucket& b : requests_) {
      if (b.level < 1) wait_s = std::max(wait_s, (1 - b.level) / b.rate);
    }
    for (Bucket& b : tokens_) {
      double need = std::min(tokens, b.limit);
      if (b.level < need) wait_s = std::max(wait_s, (need - b.level) / b.rate);
    }
    bool admitted = wait_s == 0;
    if (admitted) {
      for (Bucket& b : requests_) b.level -= 1;
      for (Bucket& b : tokens_) b.level -= tokens;
    }
    *retry_ms = wait_s * 1000;
    if (config_.headers) {
      AddHeaders(requests_, "requests", headers);
      AddHeaders(tokens_, "tokens", headers);
      if (!admitted) {
        headers->emplace_back("retry-after-ms",
                              std::to_string(static_cast<int64_t>(std::ceil(*retry_ms))));
      }
    }
    return admitted;
  }

 private:
  struct Bucket {
    double limit;
    double rate;  // per second
    double level;
  };

  std::vector<Bucket*> All() {
    std::vector<Bucket*> all;
    for (Bucket& b : requests_) all.push_back(&b);
    for (Bucket& b : tokens_) all.push_back(&b);
    return all;
  }

  // The tightest bucket of a kind (least left for its size) speaks for it.
  static void AddHeaders(const std::vector<Bucket>& buckets, const std::string& kind,
                         Headers* headers) {
    const Bucket* tightest = nullptr;
    for (const Bucket& b : buckets) {
      if (tightest == nullptr || b.level / b.limit < tightest->level / tightest->limit) {
        tightest = &b;
      }
    }
    if (tightest == nullptr) return;
    double remaining = std::max(0.0, std::floor(tightest->level));
    double reset_ms = (tightest->limit - tightest->level) / tightest->rate * 1000;
    headers->emplace_back("x-ratelimit-limit-" + kind,
                          std::to_string(static_cast<int64_t>(tightest->limit)));
    headers->emplace_back("x-ratelimit-remaining-" + kind,
                          std::to_string(static_cast<int64_t>(remaining)));
    headers->emplace_back("x-ratelimit-reset-" + kind, GoDuration(reset_ms));
  }

  const MockLimitConfig config_;
  std::mutex mu_;
  bool started_ = false;          // guarded by mu_
  Clock::time_point last_;        // guarded by mu_
  std::vector<Bucket> requests_;  // guarded by mu_
  std::vector<Bucket> tokens_;    // guarded by mu_
};

class MockOutage {
 public:
  using Clock = std::chrono::steady_clock;

  // An outage from `at_s` to `at_s + for_s` seconds after `start`; none if
  // for_s <= 0.
  MockOutage(Clock::time_point start, double at_s, double for_s)
      : start_(start + ToDuration(at_s)), end_(start + ToDuration(at_s + std::max(0.0, for_s))) {}

  // Switched on or off by hand (POST /admin/outage), whatever the schedule says.
  void Set(bool on) { forced_ = on ? 1 : 0; }
  void Clear() { forced_ = -1; }

  bool Down(Clock::time_point now) const {
    int forced = forced_.load();
    if (forced >= 0) return forced == 1;
    return now >= start_ && now < end_;
  }

 private:
  static Clock::duration ToDuration(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }
  const Clock::time_point start_;
  const Clock::time_point end_;
  std::atomic<int> forced_{-1};  // -1: follow the schedule
};

}  // namespace fanmap

#endif  // FANMAP_TESTS_MOCK_LLM_MOCK_LIMITS_H_
