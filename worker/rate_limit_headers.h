// What an HTTP answer says about the server's rate limits, read from its
// headers: OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}
// and the two forms of a retry delay, retry-after-ms and Retry-After.
//
// Header values are untrusted: a value that does not parse strictly (or is
// out of range) is ignored as if absent, never guessed at. Pure functions:
// safe to call from any thread.
#ifndef FANMAP_WORKER_RATE_LIMIT_HEADERS_H_
#define FANMAP_WORKER_RATE_LIMIT_HEADERS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/protocol.h"

namespace fanmap {

// Parses OpenAI's duration format, as Go's time.Duration prints it: one or
// more <number><unit> terms, units h, m, s, ms, us (or µs), ns, in that
// order and each at most once; the number is decimal, with an optional
// fraction ("1s", "6m0s", "20ms", "1m30.5s", "0s"). A bare number is taken
// as seconds (some servers send "1" or "0.5"). Returns milliseconds, rounded
// up (a wait must never end early), or nullopt for anything else: empty,
// negative, a unit out of order or repeated, garbage, or over
// kMaxLimitResetMs.
std::optional<uint64_t> ParseRateLimitDuration(std::string_view text);

// Looks a header up by its (case-insensitive) name; nullopt if absent.
using HeaderLookup = std::function<std::optional<std::string>(const char* name)>;

// The x-ratelimit-* headers of one answer. Counts must be plain decimal
// integers; a remaining count above its limit drops both (the answer
// contradicts itself).
ServerLimits ReadServerLimits(const HeaderLookup& header);

// The delay the answer asks for before another request, in milliseconds:
// retry-after-ms (a decimal number of milliseconds, OpenAI's) if present and
// valid, else `retry_after_s` (what libcurl parsed from Retry-After, either
// form), clamped to [0, max_ms]; a number of either too large to read is
// max_ms. nullopt if neither says anything.
std::optional<uint64_t> ReadRetryAfterMs(const HeaderLookup& header, int64_t retry_after_s,
                                         uint64_t max_ms);

}  // namespace fanmap

#endif  // FANMAP_WORKER_RATE_LIMIT_HEADERS_H_
