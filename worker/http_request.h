// The pure half of the HTTP payload: what to send for an item and what a
// response means. No I/O happens here; HttpPayload (payload_http.h) moves the
// bytes with libcurl.
//
// Job options (all strings, as JobSpec carries them):
//   method        request method, default POST. GET and HEAD send no body.
//   headers       "Name: value" lines joined by "\n"; they override the
//                 defaults (Content-Type, Authorization) of the same name.
//   chat_model    present: OpenAI chat completions mode (see BuildRequestBody).
//   system, max_tokens, temperature   chat defaults added to each request.
//   api_key       sent as "Authorization: Bearer KEY". It is a secret: no
//                 Status message or Result produced here contains it (it is
//                 replaced by "[REDACTED]" wherever a server echoes it).
//   input_format  "lines" (the item is text), "jsonl" (the item is JSON) or
//                 "openai-batch" (a Batch API line: worker/batch_format.h;
//                 not with chat_model).
//   timeout_ms    per-request limit.
//
// Thread-safety: everything here is a pure function of its arguments.
#ifndef FANMAP_WORKER_HTTP_REQUEST_H_
#define FANMAP_WORKER_HTTP_REQUEST_H_

#include <curl/curl.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "worker/http_transport.h"

namespace fanmap {

// A response body larger than this fails the task (the value travels in one
// frame and is held in memory).
constexpr size_t kMaxHttpBodyBytes = 64 << 20;
// Error texts carry at most this much of a response body.
constexpr size_t kHttpExcerptBytes = 500;
// Retry-After values are clamped to [0, kMaxRetryAfterS].
constexpr int64_t kMaxRetryAfterS = 600;

struct HttpOptions {
  std::string url;
  bool https = false;  // else cleartext http://
  std::string method = "POST";
  // Every request's headers, ready for curl: defaults first, then the user's.
  std::vector<std::string> headers;
  bool jsonl_input = false;
  // input_format "openai-batch" (worker/batch_format.h): each item is a
  // Batch API line; `url` is the base its path is appended to.
  bool batch = false;
  int64_t timeout_ms = 0;      // 0 = no limit
  std::string api_key;         // empty = no Authorization header from us
  TransportOptions transport;  // TLS trust, HTTP version (http_transport.h)

  bool chat = false;
  std::string chat_model;
  std::string system;  // empty = none
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature;

  // False for GET and HEAD.
  bool SendsBody() const { return method != "GET" && method != "HEAD"; }
};

// Reads and checks an "http" job: the URL must be http:// or https:// with a
// host, the method a plain token, headers "Name: value" without control
// characters, max_tokens a positive integer, temperature a number >= 0,
// timeout_ms a non-negative integer. Errors name the bad option but never
// contain the API key.
Status ParseHttpOptions(const JobSpec& job, HttpOptions* out);

// The request body for `item`.
//
// Generic mode: the item itself (a jsonl item is already its JSON text).
//
// Chat mode: a text item (lines input, or a jsonl item that is a JSON string)
// becomes {"model", "messages": [{system}?, {user: item}], "max_tokens"?,
// "temperature"?}. A jsonl object with "messages" (an array) is sent as it is,
// with "model", a system message, "max_tokens" and "temperature" added only
// where absent; its "custom_id" and "metadata" are taken out of the request
// into `*record_fields` (worker/chat_record.h; may be null). Any other item
// is a non-ok Status naming the problem: sending it again cannot help.
Status BuildRequestBody(const HttpOptions& options, std::string item, std::string* body,
                        Result::Extra* record_fields);
Status BuildRequestBody(const HttpOptions& options, std::string item, std::string* body);

// What one attempt produced, as libcurl reports it.
struct HttpResponse {
  CURLcode curl_code = CURLE_OK;
  std::string curl_error;  // CURLOPT_ERRORBUFFER text; may be empty
  long status = 0;         // 0 = no response
  std::string body;
  int64_t retry_after_s = 0;  // CURLINFO_RETRY_AFTER; negative for a past date
  bool body_too_large = false;
  int64_t latency_ms = -1;  // CURLINFO_TOTAL_TIME_T; -1 = unknown
  // From the headers (rate_limit_headers.h): the server's rate limits, and
  // the delay it asks for (retry-after-ms or Retry-After; wins over
  // retry_after_s when set).
  ServerLimits limits;
  std::optional<uint64_t> retry_after_ms;
};

// Whether libcurl refused a response header line longer than its
// CURL_MAX_HTTP_HEADER (HTTP/1.1 only; over HTTP/2 nghttp2 refuses long
// headers as a stream error, retried): CURLE_OUT_OF_MEMORY once the status
// line has come. A true allocation failure at that point reads the same.
bool HeaderLineTooLong(const HttpResponse& response);

// Turns one attempt into the task's Result:
//   2xx            ok. Generic: value = body, embedded as JSON when it is a
//                  JSON value (compacted onto one line), else a string. Chat:
//                  value = choices[0].message.content (or the message as
//                  JSON), finish_reason, model, id and token counts
//                  (worker/chat_record.h); a body without a usable message
//                  is a non-retryable error.
//   408, 429, 5xx  retryable "HTTP <code>: <body excerpt>", retry_after_ms
//                  from retry-after-ms or Retry-After.
//   other status   non-retryable, same text.
//   curl failure   retryable with curl's text (connection refused, timeouts,
//                  resets, empty replies...), except failures that another
//                  attempt cannot fix (malformed URL, certificate rejected,
//                  body over kMaxHttpBodyBytes, HeaderLineTooLong: "response
//                  header line larger than 100 KiB"). A certificate the server's
//                  TLS handshake fails is also `fatal`, with a text naming
//                  the host and the problem (http_transport.h).
// Every result with a status carries extra["status"], "latency_ms" (the
// attempt's time from start to the whole response, as curl measured it) and
// the server's `limits`; a failure says its `cause` (FailureCause). The API key is
// redacted from the value and every text.
Result ClassifyResponse(const HttpOptions& options, const Task& task, HttpResponse response);

// Replaces every occurrence of `secret` in `*text` (nothing if it is empty).
void Redact(const std::string& secret, std::string* text);
// The same for JSON text, where escapes (\u002d) may spell `secret` too: if
// `*text` is JSON with escapes, its decoded strings and keys are searched,
// and the text is written again (compact) when one held it.
void RedactJsonText(const std::string& secret, std::string* text);
// Drops a leading UTF-8 byte order mark from a response body.
void DropByteOrderMark(std::string* body);

// At most `max` bytes of `text`, cut on a UTF-8 character boundary and ending
// in "..." when cut; surrounding whitespace is dropped.
std::string Excerpt(const std::string& text, size_t max = kHttpExcerptBytes);

}  // namespace fanmap

#endif  // FANMAP_WORKER_HTTP_REQUEST_H_
