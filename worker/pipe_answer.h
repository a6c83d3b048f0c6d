// PipeAnswerFormat: how PipePayload reads the lines a `--pipe` co-process
// writes (`fanmap --pipe-answers lines|json`).
//
//   lines (the default): each line is an item's result text, always a
//     success. A co-process cannot report a failure except by dying.
//   json: each line is one JSON object, the item's outcome:
//       {"ok":true,"result":VALUE}
//       {"ok":false,"error":"TEXT"}  optionally with "retryable":true|false
//                                    (default false) and "traceback":"TEXT"
//     A string VALUE is the result text; any other JSON value becomes the
//     record's result as JSON (exactly the bytes the co-process wrote).
//     "error" is the record's error; "retryable":true makes fanmap try the
//     item again (up to --retries) instead of failing it at once;
//     "traceback" is copied into the record as "traceback". The check is
//     strict: anything else (not JSON, not an object, a missing or mistyped
//     key, an unknown or repeated key, "result" with "ok":false...) makes
//     the item a non-retryable error naming the problem and quoting the
//     start of the line. The line still answers its item, so one bad answer
//     never shifts the others.
//
// The co-process learns the format from the environment variable
// kPipeAnswersEnv, which PipePayload sets for every co-process it starts
// ("lines" or "json"), so that a helper such as `python3 -m fanmap.serve`
// answers in the format asked for.
//
// Thread-safe: pure functions.
#ifndef FANMAP_WORKER_PIPE_ANSWER_H_
#define FANMAP_WORKER_PIPE_ANSWER_H_

#include <cstdint>
#include <string_view>

#include "common/protocol.h"

namespace fanmap {

enum class PipeAnswerFormat : uint8_t { kLines, kJson };

// Set in each co-process's environment to PipeAnswerFormatName().
constexpr char kPipeAnswersEnv[] = "FANMAP_PIPE_ANSWERS";

// "lines" or "json".
const char* PipeAnswerFormatName(PipeAnswerFormat format);
// Parses "lines" or "json"; false (and *format unchanged) for anything else.
bool ParsePipeAnswerFormat(std::string_view name, PipeAnswerFormat* format);

// Fills the outcome of *result (ok, value, value_is_json, retryable and the
// "traceback" extra) from one json-format answer `line` (without its "\n"
// and trailing "\r"). Never fails: a line that is not a valid answer makes
// *result a non-retryable error saying why. index, attempt and elapsed_us
// are left as they are.
void ReadJsonAnswer(std::string_view line, Result* result);

}  // namespace fanmap

#endif  // FANMAP_WORKER_PIPE_ANSWER_H_
