// Small JSON helpers for the hot output path.
//
// Records are written for every item, a million times a second, so string
// escaping is done here by hand instead of building a JSON document per
// record. Parsing (validation of jsonl input) uses nlohmann::json.
#ifndef FANMAP_COMMON_JSON_TEXT_H_
#define FANMAP_COMMON_JSON_TEXT_H_

#include <string>
#include <string_view>

namespace fanmap {

// Appends `text` to `out` as a quoted JSON string. Bytes that are not valid
// UTF-8 are replaced by U+FFFD so that the output is always valid JSON.
void AppendJsonString(std::string_view text, std::string* out);

// True if `text` is exactly one JSON value (surrounding whitespace allowed).
// On failure, `*error` (if not null) says why, e.g. "syntax error at byte 7".
bool IsJsonValue(std::string_view text, std::string* error);

}  // namespace fanmap

#endif  // FANMAP_COMMON_JSON_TEXT_H_
