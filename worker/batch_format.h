// The OpenAI Batch API's file format (fanmap --input-format openai-batch):
// the pure half, what a line asks for and what its result says. No I/O.
//
// Input line: {"custom_id": "...", "method": "POST", "url": "/v1/chat/completions",
//              "body": {...}}
//   custom_id  a non-empty string
//   method     "POST" (the only method the Batch API takes)
//   url        a path starting with "/" (printable ASCII, no spaces, no "#"),
//              appended to --http's base URL; a base URL ending in "/v1"
//              takes "/v1/..." paths without doubling "/v1". It cannot leave
//              the base path, which the API key is sent to: no "." or ".."
//              segment, plain or percent-encoded ("%2e", "%2E"), no
//              backslash, no encoded "/" or backslash ("%2f", "%5c") before
//              the query
//   body       a JSON object: the request, sent as it is
// A line that breaks any of these is an error result naming the field (its
// custom_id in the record when it has one), and is never sent.
//
// Output record (record_writer.h's openai-batch format): the worker reports
// the response as a JSON object {"status_code", "request_id", "body"}: the
// value of an ok result (2xx), the "response" JSON field of a failed one (any
// other status); "custom_id" is a record field of both.
#ifndef FANMAP_WORKER_BATCH_FORMAT_H_
#define FANMAP_WORKER_BATCH_FORMAT_H_

#include <string>

#include "common/protocol.h"
#include "common/status.h"

namespace fanmap {

struct BatchRequest {
  std::string custom_id;
  std::string url;   // the full URL: base + the line's url
  std::string body;  // compact JSON
};

// The base URL's form that lines' paths are inserted into: `base` without a
// trailing "/" on its path, or its fragment; a query stays, and
// ParseBatchLine puts the path before it.
std::string BatchBaseUrl(const std::string& base);

// Reads one line. On error, `*out` may hold the custom_id if the line had a
// valid one (so the error record can name it), and the Status says which
// field is wrong.
Status ParseBatchLine(const std::string& base_url, const std::string& line, BatchRequest* out);

// The Batch API's "response" object for a reply: status_code, request_id
// (null when the server sent no x-request-id), and the body (embedded as JSON
// when it is JSON, else a string). One line.
std::string BatchResponseJson(long status, const std::string& request_id, const std::string& body);

// Turns the result of one attempt (ClassifyResponse's, for the same reply)
// into the Batch record's: custom_id added, and for a reply with a status the
// response object as the value (ok) or as the "response" JSON field (failed).
void MakeBatchResult(const std::string& custom_id, long status, const std::string& request_id,
                     const std::string& body, Result* result);

}  // namespace fanmap

#endif  // FANMAP_WORKER_BATCH_FORMAT_H_
