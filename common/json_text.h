// Small JSON helpers for the hot output path.
//
// Records are written for every item, a million times a second, so string
// escaping is done here by hand instead of building a JSON document per
// record. Parsing (validation of jsonl input) uses nlohmann::json.
#ifndef FANMAP_COMMON_JSON_TEXT_H_
#define FANMAP_COMMON_JSON_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace fanmap {

// Appends `text` to `out` as a quoted JSON string. Bytes that are not valid
// UTF-8 are replaced by U+FFFD so that the output is always valid JSON.
void AppendJsonString(std::string_view text, std::string* out);

// True if `text` is exactly one JSON value (surrounding whitespace allowed).
// On failure, `*error` (if not null) says why, e.g. "syntax error at byte 7".
// A NUL byte is never JSON (nlohmann's parser would stop there and accept
// what came before, and the record would embed the rest as it is).
bool IsJsonValue(std::string_view text, std::string* error);

// Arrays and objects nested deeper than this are refused wherever JSON that
// arrives is parsed and written out again: nlohmann's dump() recurses once a
// level, and 150,000 levels (300 KB) overflowed a worker's stack.
constexpr size_t kMaxJsonDepth = 1000;

// True if no array or object in `text` is nested deeper than `max_depth`
// (text that is not JSON counts its brackets outside strings all the same).
bool JsonDepthWithin(std::string_view text, size_t max_depth = kMaxJsonDepth);

}  // namespace fanmap

#endif  // FANMAP_COMMON_JSON_TEXT_H_
