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

}  // namespace job_key
}  // namespace fanmap

#endif  // FANMAP_COMMON_JOB_KEYS_H_
