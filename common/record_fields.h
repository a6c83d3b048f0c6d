// Record fields that hold JSON: how a worker asks for a value of
// Result::extra (which the protocol carries as an int or a string) to be
// written into the record as JSON rather than as a string.
//
// A string extra whose key ends in kJsonFieldSuffix ("metadata:json") is a
// JSON text; the record gets it under the key without the suffix
// ("metadata") as that JSON value. The coordinator does not trust it: before
// the record is written, SanitizeJsonFields turns any such value that is not
// exactly one JSON value on one line into a plain string field.
#ifndef FANMAP_COMMON_RECORD_FIELDS_H_
#define FANMAP_COMMON_RECORD_FIELDS_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/protocol.h"

namespace fanmap {

constexpr std::string_view kJsonFieldSuffix = ":json";

// The record's name for extra key `key`: `key` without kJsonFieldSuffix.
// `*is_json` tells whether the suffix was there.
std::string_view RecordFieldName(std::string_view key, bool* is_json);

// The extra key that carries `name` as JSON ("metadata" -> "metadata:json").
inline std::string JsonFieldKey(std::string_view name) {
  return std::string(name) + std::string(kJsonFieldSuffix);
}

// Replaces each JSON field whose value is not one JSON value on one line (or
// is an int) by a string field of the record's name.
void SanitizeJsonFields(Result::Extra* extra);

// Moves "custom_id" and "metadata" out of the request object `*request` into
// `*fields` (`fields` may be null): a record carries them from its item. A
// string custom_id is a string field; anything else a JSON one.
void TakeItemFields(nlohmann::ordered_json* request, Result::Extra* fields);

}  // namespace fanmap

#endif  // FANMAP_COMMON_RECORD_FIELDS_H_
