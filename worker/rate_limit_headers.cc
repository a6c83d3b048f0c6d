#include "worker/rate_limit_headers.h"

#include <algorithm>
#include <cmath>

namespace fanmap {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A decimal integer of at most 18 significant digits (no sign, no spaces
// inside; leading zeros are allowed).
std::optional<uint64_t> ParseCount(std::string_view s) {
  s = Trim(s);
  while (s.size() > 1 && s.front() == '0') s.remove_prefix(1);
  if (s.empty() || s.size() > 18) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// Digits only (after one "+" where `plus` allows it: libcurl accepts one in
// Retry-After, ParseCount never does), and more significant ones than
// ParseCount reads: a count beyond any wait worth keeping.
bool IsHugeCount(std::string_view s, bool plus) {
  s = Trim(s);
  if (plus && !s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  size_t first = s.find_first_not_of('0');
  return first != std::string_view::npos && s.size() - first > 18;
}

struct Unit {
  std::string_view name;
  double ms;
};

// Longest names first where one is a prefix of another ("ms" before "m").
constexpr Unit kUnits[] = {{"h", 3600000.0}, {"ms", 1.0},       {"m", 60000.0},    {"s", 1000.0},
                           {"us", 1e-3},     {"\u00b5s", 1e-3}, {"\u03bcs", 1e-3}, {"ns", 1e-6}};

// Rank of a unit in the order terms must come in (h, m, s, ms, us, ns).
int Rank(std::string_view unit) {
  if (unit == "h") return 0;
  if (unit == "m") return 1;
  if (unit == "s") return 2;
  if (unit == "ms") return 3;
  if (unit == "us" || unit == "\u00b5s" || unit == "\u03bcs") return 4;
  return 5;  // ns
}

}  // namespace

std::optional<uint64_t> ParseRateLimitDuration(std::string_view text) {
  std::string_view s = Trim(text);
  if (s.empty() || s.size() > 64) return std::nullopt;
  double total_ms = 0;
  int last_rank = -1;
  bool bare = true;
  while (!s.empty()) {
    // <digits>[.<digits>]
    size_t n = 0;
    while (n < s.size() && IsDigit(s[n])) ++n;
    size_t int_digits = n;
    size_t frac_digits = 0;
    if (n < s.size() && s[n] == '.') {
      ++n;
      while (n < s.size() && IsDigit(s[n])) ++n, ++frac_digits;
    }
    if (int_digits == 0 || (n > int_digits && frac_digits == 0)) return std::nullopt;
    double number = std::stod(std::string(s.substr(0, n)));
    s.remove_prefix(n);
    if (s.empty() && bare) {  // a bare number: seconds
      total_ms = number * 1000.0;
      break;
    }
    bare = false;
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (s.substr(0, u.name.size()) == u.name) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) return std::nullopt;
    int rank = Rank(unit->name);
    if (rank <= last_rank) return std::nullopt;  // out of order or repeated
    last_rank = rank;
    s.remove_prefix(unit->name.size());
    total_ms += number * unit->ms;
    if (total_ms > static_cast<double>(kMaxLimitResetMs)) return std::nullopt;
  }
  if (!(total_ms >= 0) || total_ms > static_cast<double>(kMaxLimitResetMs)) return std::nullopt;
  // Rounded up, but not past what the text says by float noise.
  return static_cast<uint64_t>(std::ceil(total_ms - 1e-9));
}

ServerLimits ReadServerLimits(const HeaderLookup& header) {
  ServerLimits limits;
  auto count = [&header](const char* name) -> std::optional<uint64_t> {
    std::optional<std::string> value = header(name);
    if (!value) return std::nullopt;
    std::optional<uint64_t> v = ParseCount(*value);
    if (v && *v > kMaxLimitCount) return std::nullopt;
    return v;
  };
  auto duration = [&header](const char* name) -> std::optional<uint64_t> {
    std::optional<std::string> value = header(name);
    return value ? ParseRateLimitDuration(*value) : std::nullopt;
  };
  limits.limit_requests = count("x-ratelimit-limit-requests");
  limits.remaining_requests = count("x-ratelimit-remaining-requests");
  limits.reset_requests_ms = duration("x-ratelimit-reset-requests");
  limits.limit_tokens = count("x-ratelimit-limit-tokens");
  limits.remaining_tokens = count("x-ratelimit-remaining-tokens");
  limits.reset_tokens_ms = duration("x-ratelimit-reset-tokens");
  if (limits.limit_requests && limits.remaining_requests &&
      *limits.remaining_requests > *limits.limit_requests) {
    limits.limit_requests.reset();
    limits.remaining_requests.reset();
  }
  if (limits.limit_tokens && limits.remaining_tokens &&
      *limits.remaining_tokens > *limits.limit_tokens) {
    limits.limit_tokens.reset();
    limits.remaining_tokens.reset();
  }
  return limits;
}

std::optional<uint64_t> ReadRetryAfterMs(const HeaderLookup& header, int64_t retry_after_s,
                                         uint64_t max_ms) {
  if (std::optional<std::string> value = header("retry-after-ms")) {
    std::string_view s = Trim(*value);
    // A decimal number of milliseconds; OpenAI sends integers, a fraction
    // is rounded up.
    size_t dot = s.find('.');
    std::optional<uint64_t> whole = ParseCount(s.substr(0, dot));
    bool fraction_ok = true;
    bool fraction_nonzero = false;
    if (dot != std::string_view::npos) {
      std::string_view frac = s.substr(dot + 1);
      fraction_ok = !frac.empty() && frac.size() <= 9;
      for (char c : frac) {
        fraction_ok = fraction_ok && IsDigit(c);
        fraction_nonzero = fraction_nonzero || c != '0';
      }
    }
    if (whole && fraction_ok) return std::min<uint64_t>(*whole + fraction_nonzero, max_ms);
    // Unsigned, as ParseCount reads it: "+5" is no more read than "+5000...".
    if (IsHugeCount(s.substr(0, dot), /*plus=*/false) && fraction_ok) return max_ms;
  }
  if (retry_after_s > 0) {
    // In seconds first: libcurl reads up to 2^63 s, which in ms would wrap.
    uint64_t seconds = static_cast<uint64_t>(retry_after_s);
    return seconds >= max_ms / 1000 ? max_ms : std::min<uint64_t>(seconds * 1000, max_ms);
  }
  if (std::optional<std::string> value = header("retry-after")) {
    // Seconds past what libcurl reads (it then says 0): the longest wait,
    // not "now".
    if (IsHugeCount(*value, /*plus=*/true)) return max_ms;
    // A Retry-After of 0 (or a date in the past) says "now": worth telling
    // apart from no header only when the header is there.
    return 0;
  }
  return std::nullopt;
}

}  // namespace fanmap
