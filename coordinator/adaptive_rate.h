// AdaptiveRate: the request rate a run should keep, learnt from the server's
// answers; RateLimiter paces dispatch over all workers to it.
//
// - Slow start (no --rate): the rate begins at kStartRate and doubles every
//   kDoublingUs until the server refuses a request or the rate is no longer
//   what holds dispatch back (then it is lifted: no limit). So a run against
//   a limited server does not open with a burst of refusals, and a run
//   against an unlimited one is paced for a few hundred milliseconds only.
// - AIMD on refusals (HTTP 429) without rate-limit headers: one cut
//   per window (only a refusal of a request sent after the last cut cuts
//   again, so a burst of refusals of requests already in flight counts once)
//   to the smaller of kCut times the rate (kDeepCut when it ends slow start;
//   1 - 2 x the refused share when under kStrayShare of the requests were
//   refused: a server that refuses bursts, not a rate) and what the server
//   accepted of
//   the requests sent in the kEstimateUs before the refused one (sent minus
//   refused: their refusals are back when refusals take equally long; per
//   second of the time they were sent in, which starts at the run's first
//   request, or the first after an outage), but
//   never below kMaxCut of it; the rest of a batch of refusals refines that
//   estimate for kEstimateUs. The rate then grows back by kMaxGrowth per
//   second up to kNearCeiling of what the server answered in the second
//   before the cut (its ceiling), then by kProbe per second, faster the
//   longer nothing is refused (by (1 + (t / kSpeedupS)^2), at most
//   kMaxGrowth), so that a run under a fixed server limit converges to it
//   and a cut too deep recovers.
// - Rate-limit headers (x-ratelimit-*): the server's budget is a bucket that
//   refills at (limit - remaining) / reset; the rate is paced to that refill
//   (less kHeaderMargin) plus what remains beyond the requests already in
//   flight, spread over a second, so that the budget is used without running
//   out. The headers tell the bucket as the server counted the request in,
//   its time in flight ago: what remains now is what they said, plus the
//   refill since, less the requests sent since (the send log). Headers end
//   slow start; stale ones (kHeaderFreshUs without an answer) leave the
//   refill rate, not none. Same for tokens.
//
// Times are microseconds on the caller's clock; no I/O. Not thread-safe.
#ifndef FANMAP_COORDINATOR_ADAPTIVE_RATE_H_
#define FANMAP_COORDINATOR_ADAPTIVE_RATE_H_

#include <algorithm>
#include <array>
#include <cstdint>

#include "common/protocol.h"

namespace fanmap {

class AdaptiveRate {
 public:
  static constexpr double kStartRate = 1000;      // requests/s at the start of slow start
  static constexpr int64_t kDoublingUs = 100000;  // slow start doubles this often
  static constexpr double kMinRate = 0.5;         // requests/s: never stop entirely
  static constexpr double kCut = 0.9;             // at most this share is kept after a cut
  static constexpr double kDeepCut = 0.5;         // after slow start, or a second after a cut
  static constexpr double kStrayShare = 0.05;     // fewer refused than this: a small cut
  static constexpr double kMaxCut = 0.1;          // never cut below this share
  static constexpr double kProbe = 0.03;          // growth per second just after a cut
  static constexpr double kSpeedupS = 3;          // ... doubled after this long without refusals
  static constexpr double kNearCeiling = 0.9;     // below this share of the ceiling: kMaxGrowth
  static constexpr double kMaxGrowth = 0.5;       // ... but never more than this per second
  static constexpr int64_t kEstimateUs = 100000;  // sends looked at to estimate the server's rate
  static constexpr int64_t kHeaderFreshUs = 2000000;  // header-derived rates last this long
  static constexpr double kHeaderMargin = 0.02;  // share of the refill never planned to be used
  static constexpr double kRefillWeight = 0.2;   // a header's share of the refill estimate

  // `configured_rate`: --rate (0: none, and then slow start).
  explicit AdaptiveRate(double configured_rate);

  // A request was sent at `now_us`.
  void OnSent(int64_t now_us);
  // The answer to a request sent at `sent_us` came at `now_us`; `refused`:
  // 429, the server asks us to slow down.
  void OnAnswer(int64_t now_us, int64_t sent_us, bool refused);
  // A request sent at `sent_us` was answered 503 at `now_us`: the server is
  // overloaded, or down. A gentle cut (kCut, one per window) that leaves
  // telling an outage (every request fails) to the CircuitBreaker.
  void OnOverloaded(int64_t now_us, int64_t sent_us);
  // The answer to a request sent at `sent_us` carried rate-limit headers:
  // the server's stock as it counted that request in. `in_flight`: requests
  // sent and not answered (what is on its way, if `sent_us` is older than
  // the send log); `tokens_per_request`: the estimated tokens of one.
  void OnServerLimits(int64_t now_us, int64_t sent_us, const ServerLimits& limits, double in_flight,
                      double tokens_per_request);
  // A run-wide outage is over: the cuts its refusals made are undone.
  void OnOutageOver(int64_t now_us);

  // Requests/s to pace at (0: no limit), as of `now_us`.
  double RequestRate(int64_t now_us);
  // Tokens/s to pace at from the token headers (0: no limit).
  double TokenRate(int64_t now_us) const;

  bool slow_start() const { return slow_start_; }
  double ceiling() const { return ceiling_; }

 private:
  static constexpr int64_t kBinUs = 10000;
  static constexpr size_t kBins = 128;  // 1.28 s of sends, by send time

  struct Bin {
    int64_t id = -1;         // which kBinUs interval it counts
    double sent = 0;         // requests sent in it
    double refused = 0;      // ... that were refused
    double answered_ok = 0;  // answers in it that were not refusals
  };
  Bin& BinAt(int64_t us);
  // Sent and refused in [from_us, to_us), by send time.
  void Count(int64_t from_us, int64_t to_us, double* sent, double* refused) const;
  void Grow(int64_t now_us);
  // The share of the rate a cut keeps, given `refused` of `sent` requests.
  double CutFactor(double sent, double refused) const;
  // The rate in force, or without one, the rate requests were sent at.
  double CurrentRate(int64_t now_us) const;
  // Requests sent since `us` (over by at most a kBinUs's worth); -1 if `us`
  // is older than the send log.
  double SentSince(int64_t us) const;

  // A server's bucket as its last headers told it.
  struct HeaderBucket {
    bool known = false;  // the headers gave its limit and what remains
    double limit = 0;
    double refill = 0;          // per second; 0: the bucket was full (refill unknown)
    double refill_average = 0;  // of the refills the headers so far told
    double unit = 1;            // of the bucket per request sent (tokens: their estimate)
    double level = 0;           // what it held at `at_us`, when `sent` requests had been sent
    int64_t at_us = 0;
    double sent = 0;
  };
  // The rate `b` allows at `now_us`: its refill, plus what it holds beyond
  // that (less our sends since) over the next second while `fresh`.
  double PaceTo(const HeaderBucket& b, bool fresh, int64_t now_us) const;

  const double max_rate_;
  double rate_;  // AIMD or slow-start rate; 0 = none
  bool slow_start_;
  int64_t start_us_ = -1;
  int64_t first_sent_us_ = -1;  // the first request of the run, or since an outage
  int64_t last_us_ = -1;
  int64_t last_cut_us_ = -1;
  double rate_before_cuts_ = -1;  // -1: no cuts lately
  double rate_before_cut_ = 0;    // the rate the last cut cut
  int64_t refine_until_us_ = 0;   // refusals refine the last cut until then
  bool deep_ = false;             // the last cut ended slow start
  double ceiling_ = 0;            // what the server accepted when it last refused
  std::array<Bin, kBins> bins_{};
  // The send log: how many requests had been sent when each kBinUs
  // interval began, for the last kLogBins of them (41 s).
  static constexpr size_t kLogBins = 4096;
  std::array<double, kLogBins> sent_before_{};
  int64_t log_last_bin_ = -1;
  double total_sent_ = 0;
  HeaderBucket header_requests_;
  HeaderBucket header_tokens_;
  int64_t header_until_us_ = -1;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_ADAPTIVE_RATE_H_
