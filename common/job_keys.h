// The keys of a JOB's options map (common/protocol.h), named once for both
// binaries: the coordinator sets them, the worker and its payloads read them.
// Every value travels as a string; numbers are decimal.
#ifndef FANMAP_COMMON_JOB_KEYS_H_
#define FANMAP_COMMON_JOB_KEYS_H_

namespace fanmap {
namespace job_key {

// Milliseconds of silence after which either side gives the other up.
constexpr char kLivenessMs[] = "liveness_ms";
// Per-attempt task timeout in milliseconds; absent = none.
constexpr char kTimeoutMs[] = "timeout_ms";
// "lines" or "jsonl": how an item's text is to be read.
constexpr char kInputFormat[] = "input_format";
// --http: request method, extra headers ("Name: value" lines), bearer key.
constexpr char kMethod[] = "method";
constexpr char kHeaders[] = "headers";
constexpr char kApiKey[] = "api_key";
// --chat: model, system message, max_tokens, temperature.
constexpr char kChatModel[] = "chat_model";
constexpr char kSystem[] = "system";
constexpr char kMaxTokens[] = "max_tokens";
constexpr char kTemperature[] = "temperature";
// --http transport (worker/http_transport.h): PEM text of extra trusted CAs
// (--cacert), and "1.1" to refuse HTTP/2 (--http1.1).
constexpr char kCaCertPem[] = "cacert_pem";
constexpr char kHttpVersion[] = "http_version";
// --pipe-answers: "json" when each answer line is a JSON object saying
// whether the item succeeded (worker/pipe_answer.h); absent or "lines": each
// line is a successful result's text.
constexpr char kPipeAnswers[] = "pipe_answers";

// exec, GNU parallel's options (each "1" when on, absent when off):
// items are EncodeArgTable()s (common/arg_table.h) rather than one argument.
constexpr char kArgTable[] = "arg_table";
// -I STR: the string that stands for the arguments instead of "{}".
constexpr char kReplaceStr[] = "replace_str";
// -X: repeat a word holding a replacement string for each item.
constexpr char kContextReplace[] = "context_replace";
// --output-format stdout: stdout as written, whole stderr, failed stdout.
constexpr char kVerbatimOutput[] = "verbatim_output";
// --tag: each output line starts with the arguments and a tab.
constexpr char kTag[] = "tag";
// --dry-run: the result is the command line; nothing runs.
constexpr char kDryRun[] = "dry_run";
// --joblog: results carry the command line and its wall-clock start.
constexpr char kJoblog[] = "joblog";

}  // namespace job_key

// Environment variable a coordinator gives each local worker: the number of
// job slots ({%}, FANMAP_SLOT) of the workers before it, so that slots count
// 1..workers*slots over all of them. Absent (remote workers): 0.
constexpr char kSlotBaseEnv[] = "FANMAP_SLOT_BASE";
}  // namespace fanmap

#endif  // FANMAP_COMMON_JOB_KEYS_H_
