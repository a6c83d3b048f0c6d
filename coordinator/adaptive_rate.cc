#include "coordinator/adaptive_rate.h"

#include <algorithm>
#include <cmath>

namespace fanmap {
namespace {

constexpr int64_t kSecondUs = 1000000;
// Slow start ends when dispatch sends less than this share of its rate.
constexpr double kNotBinding = 0.25;
// Without --rate, a limit that has held nothing back for a second is lifted.
constexpr double kLiftBelow = 0.5;
// Cuts this long apart belong to different episodes (OnOutageOver).
constexpr int64_t kCutEpisodeUs = 5 * kSecondUs;

}  // namespace

AdaptiveRate::AdaptiveRate(double configured_rate)
    : max_rate_(configured_rate),
      rate_(configured_rate > 0 ? configured_rate : kStartRate),
      slow_start_(configured_rate <= 0) {}

AdaptiveRate::Bin& AdaptiveRate::BinAt(int64_t us) {
  int64_t id = us / kBinUs;
  Bin& bin = bins_[static_cast<size_t>(id % static_cast<int64_t>(kBins))];
  if (bin.id != id) bin = Bin{id, 0, 0, 0};
  return bin;
}

void AdaptiveRate::Count(int64_t from_us, int64_t to_us, double* sent, double* refused) const {
  *sent = *refused = 0;
  int64_t from = from_us / kBinUs, to = to_us / kBinUs;
  for (const Bin& bin : bins_) {
    if (bin.id >= from && bin.id <= to) {
      *sent += bin.sent;
      *refused += bin.refused;
    }
  }
}

void AdaptiveRate::Grow(int64_t now_us) {
  if (last_us_ < 0) {
    start_us_ = last_us_ = now_us;
    return;
  }
  double dt = std::max<int64_t>(0, now_us - last_us_) / 1e6;
  last_us_ = now_us;
  if (rate_before_cuts_ >= 0 && now_us - last_cut_us_ > kCutEpisodeUs) rate_before_cuts_ = -1;
  if (slow_start_) {
    rate_ *= std::exp2(dt * 1e6 / kDoublingUs);
    double sent, refused;
    Count(now_us - 2 * kDoublingUs, now_us, &sent, &refused);
    double sending = sent * kSecondUs / (2.0 * kDoublingUs + kBinUs);
    if ((now_us - start_us_ >= 4 * kDoublingUs && sending < kNotBinding * rate_) || rate_ > 1e7) {
      slow_start_ = false;
      rate_ = max_rate_;  // none
    }
    return;
  }
  if (rate_ <= 0 || (max_rate_ > 0 && rate_ >= max_rate_)) return;
  // Probing: slowly just after a cut, where the limit was found, and faster
  // and faster the longer nothing is refused.
  double since_s = last_cut_us_ < 0 ? 1e3 : (now_us - last_cut_us_) / 1e6;
  double speedup = 1 + (since_s / kSpeedupS) * (since_s / kSpeedupS);
  // Well below what the server was seen to accept: back there fast.
  double growth = rate_ < kNearCeiling * ceiling_ ? kMaxGrowth : kProbe * speedup;
  rate_ *= 1 + std::min(kMaxGrowth, growth) * dt;
  if (max_rate_ > 0) {
    rate_ = std::min(rate_, max_rate_);
    return;
  }
  double sent, refused;
  Count(now_us - kSecondUs, now_us, &sent, &refused);
  if (now_us - last_cut_us_ > 2 * kSecondUs && sent < kLiftBelow * rate_) rate_ = 0;
}

double AdaptiveRate::CutFactor(double sent, double refused) const {
  if (deep_) return kDeepCut;
  // A stray refusal among many accepted requests (a server that refuses
  // bursts, not a rate) costs a small cut, in proportion.
  double share = sent > 0 ? refused / sent : 1;
  return share < kStrayShare ? std::max(kCut, 1 - 2 * share) : kCut;
}

double AdaptiveRate::CurrentRate(int64_t now_us) const {
  if (rate_ > 0) return rate_;
  // No limit: what was sent over the last second.
  double sent, ignored;
  Count(now_us - kSecondUs, now_us, &sent, &ignored);
  return std::max(kMinRate, sent);
}

void AdaptiveRate::OnSent(int64_t now_us) {
  if (first_sent_us_ < 0) first_sent_us_ = now_us;
  BinAt(now_us).sent += 1;
  int64_t bin = now_us / kBinUs;
  if (bin > log_last_bin_) {
    // Each interval is written once, the empty ones in between too.
    int64_t from = std::max(log_last_bin_ + 1, bin - static_cast<int64_t>(kLogBins) + 1);
    for (int64_t b = from; b <= bin; ++b)
      sent_before_[static_cast<size_t>(b) % kLogBins] = total_sent_;
    log_last_bin_ = bin;
  }
  total_sent_ += 1;
}

double AdaptiveRate::PaceTo(const HeaderBucket& b, bool fresh, int64_t now_us) const {
  if (!b.known) return 0;
  // Where the bucket is now: it refills, and our sends take from it.
  double level = std::min(
      b.limit, b.level + b.refill * (now_us - b.at_us) / 1e6 - (total_sent_ - b.sent) * b.unit);
  if (b.refill <= 0) return fresh && level <= 0 ? kMinRate : 0;  // full: no limit yet
  double refill = b.refill * (1 - kHeaderMargin);
  // What is left beyond the refill goes over the next second; an overdraft
  // is paid back as fast.
  return std::max(kMinRate, fresh ? refill + level : refill);
}

double AdaptiveRate::SentSince(int64_t us) const {
  int64_t bin = us / kBinUs;
  if (bin > log_last_bin_) return 0;
  if (log_last_bin_ - bin >= static_cast<int64_t>(kLogBins)) return -1;
  return total_sent_ - sent_before_[static_cast<size_t>(bin) % kLogBins];
}

void AdaptiveRate::OnAnswer(int64_t now_us, int64_t sent_us, bool refused) {
  Grow(now_us);
  if (!refused) {
    BinAt(now_us).answered_ok += 1;
    return;
  }
  Bin& bin = bins_[static_cast<size_t>((sent_us / kBinUs) % static_cast<int64_t>(kBins))];
  if (bin.id == sent_us / kBinUs) bin.refused += 1;
  // What the server accepted of the requests sent in the kEstimateUs up to
  // this one: their refusals, sent no later, are back by now (if refusals
  // take equally long), and the rest were accepted.
  // Only since the first request of the run, or the first after an outage:
  // a refusal a few milliseconds in says nothing of the window's time before
  // it (an estimate over it cut runs against nginx's limit_req without
  // burst, 500 requests/s, down to 19/s, and they took 12 s to grow back),
  // and an outage's probes are not what the server accepts now.
  int64_t from_us = std::max((sent_us - kEstimateUs) / kBinUs * kBinUs, first_sent_us_);
  double sent, refused_then;
  Count(from_us, sent_us, &sent, &refused_then);
  // Per second of the time those bins cover: to the end of this one's bin,
  // or now (Count counts whole bins).
  int64_t to_us = std::min(now_us, (sent_us / kBinUs + 1) * kBinUs);
  double span_s = std::max<int64_t>(kBinUs, to_us - from_us) / 1e6;
  double accepted = std::max(0.0, sent - refused_then) / span_s;
  if (sent_us <= last_cut_us_) {
    // Requests sent before the last cut were sent too fast for the old rate,
    // not the new one: they cut no more. But refusals come back in batches,
    // and the rest of the batch refines the estimate of the first.
    if (now_us < refine_until_us_) {
      rate_ = std::clamp(accepted, std::max(kMaxCut * rate_before_cut_, kMinRate),
                         std::max(CutFactor(sent, refused_then) * rate_before_cut_, kMinRate));
    }
    return;
  }
  double current = CurrentRate(now_us);
  if (rate_before_cuts_ < 0) rate_before_cuts_ = slow_start_ ? 0 : rate_;
  rate_before_cut_ = current;
  // Refusals that keep coming after a cut, or that end slow start (which
  // overshoots by up to the rate times the time refusals take to come
  // back), call for a deeper cut.
  deep_ = slow_start_;
  rate_ = std::max(
      {std::min(current * CutFactor(sent, refused_then), accepted), current * kMaxCut, kMinRate});
  // What the server answered over the last second, by answer time: it is
  // what it allows when it has just refused (its bucket is empty).
  double ok_last_second = 0;
  int64_t from = (now_us - kSecondUs) / kBinUs;
  for (const Bin& b : bins_) {
    if (b.id >= from && b.id <= now_us / kBinUs) ok_last_second += b.answered_ok;
  }
  ceiling_ = std::min(current, ok_last_second);
  slow_start_ = false;
  last_cut_us_ = now_us;
  refine_until_us_ = now_us + kEstimateUs;
}

void AdaptiveRate::OnOverloaded(int64_t now_us, int64_t sent_us) {
  Grow(now_us);
  if (sent_us <= last_cut_us_) return;
  double current = CurrentRate(now_us);
  if (rate_before_cuts_ < 0) rate_before_cuts_ = slow_start_ ? 0 : rate_;
  rate_before_cut_ = current;
  deep_ = false;
  rate_ = std::max(current * kCut, kMinRate);
  ceiling_ = current;
  slow_start_ = false;
  last_cut_us_ = now_us;
  refine_until_us_ = 0;
}

void AdaptiveRate::OnServerLimits(int64_t now_us, int64_t sent_us, const ServerLimits& limits,
                                  double in_flight, double tokens_per_request) {
  // The headers tell the bucket as the server counted the request in (when
  // it was sent); it has refilled since, and taken what was sent since.
  const double age_s = std::max<int64_t>(0, now_us - sent_us) / 1e6;
  // (The answered request itself counts, and those before it in its
  // kBinUs: they are in `remaining` already. It errs on the safe side.)
  double sent_since = SentSince(sent_us);
  if (sent_since < 0) sent_since = in_flight;
  auto observe = [&](const std::optional<uint64_t>& limit, const std::optional<uint64_t>& remaining,
                     const std::optional<uint64_t>& reset_ms, double unit, HeaderBucket* b) {
    if (!limit || !remaining || *limit == 0) {
      *b = HeaderBucket{};
      return;
    }
    double l = static_cast<double>(*limit), r = static_cast<double>(*remaining);
    if (!b->known || b->limit != l) *b = HeaderBucket{};  // another limit: learn it anew
    b->known = true;
    b->limit = l;
    b->refill = 0;
    if (reset_ms && *reset_ms > 0 && r < l) {
      // The reset is when the bucket is full again, from what it holds,
      // which `remaining` rounds down: the refill is (l - r - 1) / reset to
      // (l - r) / reset (a limit of 5/s was taken for up to 6.25/s). The
      // middle, averaged over the headers: no single one (a reset rounded
      // to the second, say) decides it for the rest of the run.
      double middle = std::max(0.0, l - r - 0.5) / (*reset_ms / 1e3);
      b->refill_average = b->refill_average > 0
                              ? (1 - kRefillWeight) * b->refill_average + kRefillWeight * middle
                              : middle;
      b->refill = b->refill_average;
    }
    b->unit = unit;
    b->level = std::min(l, r + b->refill * age_s - sent_since * unit);
    b->at_us = now_us;
    b->sent = total_sent_;
  };
  observe(limits.limit_requests, limits.remaining_requests, limits.reset_requests_ms, 1,
          &header_requests_);
  observe(limits.limit_tokens, limits.remaining_tokens, limits.reset_tokens_ms, tokens_per_request,
          &header_tokens_);
  header_until_us_ = now_us + kHeaderFreshUs;
  // The server says what it allows: no need to feel for it.
  if (slow_start_) {
    slow_start_ = false;
    rate_ = max_rate_;
  }
}

void AdaptiveRate::OnOutageOver(int64_t now_us) {
  Grow(now_us);
  if (rate_before_cuts_ >= 0) {
    rate_ = rate_before_cuts_ > 0 ? rate_before_cuts_ : max_rate_;
    rate_before_cuts_ = -1;
  }
  // Refusals of requests sent during the outage must not cut again, nor
  // refine its cuts; and the pause, when nothing was sent, is no time the
  // server refused anything in.
  last_cut_us_ = now_us;
  refine_until_us_ = 0;
  first_sent_us_ = -1;
}

double AdaptiveRate::RequestRate(int64_t now_us) {
  Grow(now_us);
  double rate = rate_;
  // Stale headers (no answer for a while: a slow server) leave the rate
  // the bucket refills at, not none: that was a burst of refusals.
  double header = PaceTo(header_requests_, now_us < header_until_us_, now_us);
  if (header > 0) rate = rate > 0 ? std::min(rate, header) : header;
  if (max_rate_ > 0) rate = rate > 0 ? std::min(rate, max_rate_) : max_rate_;
  return rate;
}

double AdaptiveRate::TokenRate(int64_t now_us) const {
  return PaceTo(header_tokens_, now_us < header_until_us_, now_us);
}

}  // namespace fanmap
