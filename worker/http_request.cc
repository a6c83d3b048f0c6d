#include "worker/http_request.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>
#include <vector>

#include "common/job_keys.h"
#include "common/json_text.h"
#include "common/record_fields.h"
#include "worker/chat_record.h"
#include "worker/task_result.h"

namespace fanmap {
namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr char kRedacted[] = "[REDACTED]";

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? a[i] - 'A' + 'a' : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? b[i] - 'A' + 'a' : b[i];
    if (x != y) return false;
  }
  return true;
}

// RFC 9110 token: method and header names.
bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// Header values may hold tabs but no other control character: a CR or LF
// would let a value start a header (or a request) of its own.
bool HasControlChar(std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return true;
  }
  return false;
}

bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

bool ParseDouble(const std::string& s, double* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

const std::string* Find(const JobSpec& job, const std::string& key) {
  auto it = job.options.find(key);
  return it == job.options.end() ? nullptr : &it->second;
}

Status CheckUrl(const std::string& url, bool* https) {
  if (HasControlChar(url) || url.find(' ') != std::string::npos) {
    return Status::Error("URL '" + url + "' contains spaces or control characters");
  }
  CURLU* parsed = curl_url();
  if (parsed == nullptr) return Status::Error("out of memory");
  Status status;
  char* scheme = nullptr;
  char* host = nullptr;
  if (curl_url_set(parsed, CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
      curl_url_get(parsed, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
    status = Status::Error("'" + url + "' is not a URL (expected http://HOST/... or https://...)");
  } else if (std::string_view(scheme) != "http" && std::string_view(scheme) != "https") {
    status = Status::Error("URL '" + url + "' must start with http:// or https://");
  } else if (curl_url_get(parsed, CURLUPART_HOST, &host, 0) != CURLUE_OK || *host == '\0') {
    status = Status::Error("URL '" + url + "' has no host");
  } else {
    *https = std::string_view(scheme) == "https";
  }
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(parsed);
  return status;
}

// Splits the "headers" option into validated "Name: value" lines.
Status ParseUserHeaders(const std::string& text, std::vector<std::string>* out) {
  size_t from = 0;
  while (from <= text.size()) {
    size_t end = text.find('\n', from);
    if (end == std::string::npos) end = text.size();
    std::string_view line = Trim(std::string_view(text).substr(from, end - from));
    from = end + 1;
    if (line.empty()) continue;
    size_t colon = line.find(':');
    std::string_view name = colon == std::string_view::npos ? line : Trim(line.substr(0, colon));
    // Values are not echoed: a header may carry a credential.
    if (colon == std::string_view::npos || !IsToken(name)) {
      return Status::Error("header '" + std::string(name) + "' is not 'Name: value'");
    }
    std::string_view value = Trim(line.substr(colon + 1));
    if (HasControlChar(value)) {
      return Status::Error("header '" + std::string(name) +
                           "' has control characters in its value");
    }
    // An empty value makes curl drop a header it would add (as curl -H 'Accept:').
    out->push_back(std::string(name) + ":" + (value.empty() ? "" : " " + std::string(value)));
  }
  return Status::Ok();
}

bool HasHeader(const std::vector<std::string>& headers, std::string_view name) {
  for (const std::string& h : headers) {
    std::string_view line(h);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && EqualsIgnoreCase(line.substr(0, colon), name)) {
      return true;
    }
  }
  return false;
}

// Removes whitespace between JSON tokens. `text` must be valid JSON, so any
// whitespace outside strings is insignificant (inside strings it is escaped).
std::string CompactJson(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (IsSpace(c)) {
      continue;
    }
    out.push_back(c);
  }
  return out;
}

// Why a failed attempt failed, for the coordinator's summary and breaker.
FailureCause FailureCauseOf(long status, CURLcode code) {
  if (code == CURLE_OK) {
    if (status == 429) return FailureCause::kThrottled;
    if (status == 408 || status >= 500) return FailureCause::kServerError;
    return FailureCause::kOther;
  }
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return FailureCause::kTimeout;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return FailureCause::kConnection;
    default:
      return FailureCause::kOther;
  }
}

// 501 (the method is not implemented) and 505 (nor the HTTP version): the
// same request gets the same answer.
bool IsRetryableStatus(long status) {
  return status == 408 || status == 429 || (status >= 500 && status != 501 && status != 505);
}

// Failures that the same request cannot overcome on another attempt.
bool IsRetryableCurlCode(CURLcode code) {
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:  // (also a reply that is not HTTP: a TLS port)
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_TOO_MANY_REDIRECTS:
      return false;
    default:
      return true;
  }
}

std::string StatusText(long status, const std::string& body) {
  std::string text = "HTTP " + std::to_string(status);
  std::string excerpt = Excerpt(body);
  if (!excerpt.empty()) text += ": " + excerpt;
  return text;
}

OrderedJson Message(const char* role, const std::string& content) {
  OrderedJson message = OrderedJson::object();
  message["role"] = role;
  message["content"] = content;
  return message;
}

std::string ChatBody(const HttpOptions& options, const std::string& text) {
  OrderedJson request;
  request["model"] = options.chat_model;
  OrderedJson messages = OrderedJson::array();
  if (!options.system.empty()) {
    messages.push_back(Message("system", options.system));
  }
  messages.push_back(Message("user", text));
  request["messages"] = std::move(messages);
  if (options.max_tokens) request["max_tokens"] = *options.max_tokens;
  if (options.temperature) request["temperature"] = *options.temperature;
  // Lines input is not checked for UTF-8; a bad byte becomes U+FFFD rather
  // than an exception.
  return request.dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
}

Status ChatBodyFromJson(const HttpOptions& options, const std::string& item, std::string* body,
                        Result::Extra* fields) {
  if (!JsonDepthWithin(item)) {
    return Status::Error("jsonl item nested deeper than " + std::to_string(kMaxJsonDepth) +
                         " levels");
  }
  OrderedJson request = OrderedJson::parse(item, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return Status::Error("jsonl item is not valid JSON");
  if (request.is_string()) {
    *body = ChatBody(options, request.get<std::string>());
    return Status::Ok();
  }
  if (!request.is_object() || !request.contains("messages") || !request["messages"].is_array()) {
    return Status::Error(
        "a --chat jsonl item must be a JSON string or an object with a \"messages\" array");
  }
  TakeItemFields(&request, fields);
  if (!request.contains("model")) request["model"] = options.chat_model;
  OrderedJson& messages = request["messages"];
  if (!options.system.empty()) {
    bool has_system = false;
    for (const OrderedJson& m : messages) {
      if (m.is_object() && m.contains("role") && m["role"] == "system") has_system = true;
    }
    if (!has_system) {
      messages.insert(messages.begin(), Message("system", options.system));
    }
  }
  if (options.max_tokens && !request.contains("max_tokens")) {
    request["max_tokens"] = *options.max_tokens;
  }
  if (options.temperature && !request.contains("temperature")) {
    request["temperature"] = *options.temperature;
  }
  *body = request.dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
  return Status::Ok();
}

}  // namespace

Status ParseHttpOptions(const JobSpec& job, HttpOptions* out) {
  HttpOptions options;
  if (job.argv.size() != 1) return Status::Error("http job needs exactly one URL");
  options.url = job.argv[0];
  Status status = CheckUrl(options.url, &options.https);
  if (!status.ok()) return status;
  status = ParseTransportOptions(job, options.url, &options.transport);
  if (!status.ok()) return status;

  if (const std::string* method = Find(job, job_key::kMethod)) options.method = *method;
  if (!IsToken(options.method)) {
    return Status::Error("method '" + options.method + "' is not an HTTP method name");
  }

  if (const std::string* format = Find(job, job_key::kInputFormat)) {
    if (*format != "lines" && *format != "jsonl" && *format != "openai-batch") {
      return Status::Error("input_format '" + *format + "' is not lines, jsonl or openai-batch");
    }
    options.batch = *format == "openai-batch";
    options.jsonl_input = *format != "lines";
  }
  if (const std::string* timeout = Find(job, job_key::kTimeoutMs)) {
    if (!ParseInt(*timeout, &options.timeout_ms) || options.timeout_ms < 0) {
      return Status::Error("timeout_ms '" + *timeout + "' is not a number of milliseconds");
    }
  }
  if (const std::string* key = Find(job, job_key::kApiKey)) {
    // Not echoed, not even in part.
    if (HasControlChar(*key)) return Status::Error("the API key contains control characters");
    options.api_key = *key;
  }

  if (const std::string* model = Find(job, job_key::kChatModel)) {
    if (model->empty()) return Status::Error("chat_model is empty");
    options.chat = true;
    options.chat_model = *model;
    if (const std::string* system = Find(job, job_key::kSystem)) options.system = *system;
    if (const std::string* text = Find(job, job_key::kMaxTokens)) {
      int64_t n = 0;
      if (!ParseInt(*text, &n) || n <= 0) {
        return Status::Error("max_tokens '" + *text + "' is not a positive integer");
      }
      options.max_tokens = n;
    }
    if (const std::string* text = Find(job, job_key::kTemperature)) {
      double t = 0;
      if (!ParseDouble(*text, &t) || t < 0) {
        return Status::Error("temperature '" + *text + "' is not a number >= 0");
      }
      options.temperature = t;
    }
  }

  if (options.batch && (options.chat || options.method != "POST")) {
    return Status::Error("openai-batch input carries whole POST requests: no chat_model or method");
  }

  std::vector<std::string> user;
  if (const std::string* headers = Find(job, job_key::kHeaders)) {
    status = ParseUserHeaders(*headers, &user);
    if (!status.ok()) return status;
  }
  if (!HasHeader(user, "Content-Type")) {
    options.headers.push_back(options.chat || options.jsonl_input ? "Content-Type: application/json"
                                                                  : "Content-Type: text/plain");
  }
  if (!options.api_key.empty() && !HasHeader(user, "Authorization")) {
    options.headers.push_back("Authorization: Bearer " + options.api_key);
  }
  // curl would otherwise hold bodies over 1 MiB for up to a second waiting
  // for "100 Continue".
  if (!HasHeader(user, "Expect")) options.headers.push_back("Expect:");
  options.headers.insert(options.headers.end(), user.begin(), user.end());

  *out = std::move(options);
  return Status::Ok();
}

Status BuildRequestBody(const HttpOptions& options, std::string item, std::string* body) {
  return BuildRequestBody(options, std::move(item), body, nullptr);
}

Status BuildRequestBody(const HttpOptions& options, std::string item, std::string* body,
                        Result::Extra* record_fields) {
  if (!options.chat) {
    *body = std::move(item);
    return Status::Ok();
  }
  if (!options.jsonl_input) {
    *body = ChatBody(options, item);
    return Status::Ok();
  }
  return ChatBodyFromJson(options, item, body, record_fields);
}

bool HeaderLineTooLong(const HttpResponse& response) {
  return response.curl_code == CURLE_OUT_OF_MEMORY && response.status != 0;
}

Result ClassifyResponse(const HttpOptions& options, const Task& task, HttpResponse response) {
  // Before the body is read, embedded or quoted in an error.
  RedactJsonText(options.api_key, &response.body);
  Redact(options.api_key, &response.curl_error);
  Result result;
  if (response.body_too_large) {
    result = ErrorResult(
        task, "response larger than " + std::to_string(kMaxHttpBodyBytes >> 20) + " MiB");
  } else if (IsCertificateError(response.curl_code)) {
    result = ErrorResult(
        task, CertificateErrorText(options.transport, response.curl_code, response.curl_error));
    // Every request to this server fails alike until the user acts.
    result.fatal = true;
  } else if (HeaderLineTooLong(response)) {
    // The server's doing: the same request gets the same answer.
    result = ErrorResult(
        task, "response header line larger than " + std::to_string(CURL_MAX_HTTP_HEADER >> 10) +
                  " KiB (libcurl: " + curl_easy_strerror(response.curl_code) + ")");
  } else if (response.curl_code != CURLE_OK) {
    std::string text = curl_easy_strerror(response.curl_code);
    if (!response.curl_error.empty() && response.curl_error != text) {
      text += ": " + response.curl_error;
    }
    result = IsRetryableCurlCode(response.curl_code) ? RetryableError(task, std::move(text))
                                                     : ErrorResult(task, std::move(text));
  } else if (response.status >= 200 && response.status <= 299) {
    if (options.chat) {
      std::string value;
      bool value_is_json = false;
      Result::Extra fields;
      Status parsed = ReadChatReply(response.body, &value, &value_is_json, &fields);
      if (parsed.ok()) {
        // Decoded from the reply: escapes no longer hide the key.
        if (value_is_json) {
          RedactJsonText(options.api_key, &value);
        } else {
          Redact(options.api_key, &value);
        }
        for (auto& [name, field] : fields) {
          if (auto* text = std::get_if<std::string>(&field)) RedactJsonText(options.api_key, text);
        }
        result = OkResult(task, std::move(value));
        result.value_is_json = value_is_json;
        result.extra = std::move(fields);
      } else {
        result = ErrorResult(
            task, parsed.message() + " in " + StatusText(response.status, response.body));
      }
    } else if (IsJsonValue(response.body, nullptr)) {
      DropByteOrderMark(&response.body);
      // The record embeds the value as it is: it must stay on one line.
      bool multiline = response.body.find_first_of("\r\n") != std::string::npos;
      result =
          OkResult(task, multiline ? CompactJson(response.body) : std::string(Trim(response.body)));
      result.value_is_json = true;
    } else {
      result = OkResult(task, std::move(response.body));
    }
  } else if (response.status > 0 && IsRetryableStatus(response.status)) {
    int64_t seconds = std::clamp<int64_t>(response.retry_after_s, 0, kMaxRetryAfterS);
    uint64_t delay_ms = response.retry_after_ms
                            ? std::min<uint64_t>(*response.retry_after_ms, kMaxRetryAfterS * 1000)
                            : static_cast<uint64_t>(seconds) * 1000;
    result = RetryableError(task, StatusText(response.status, response.body),
                            static_cast<uint32_t>(delay_ms));
  } else if (response.status > 0) {
    result = ErrorResult(task, StatusText(response.status, response.body));
    // The server refused our credentials: every request will be refused.
    result.fatal = response.status == 401 || response.status == 403;
  } else {
    result = ErrorResult(task, "no HTTP status in the response");
  }
  if (response.status > 0) result.extra["status"] = static_cast<int64_t>(response.status);
  if (response.status > 0 && response.latency_ms >= 0)
    result.extra["latency_ms"] = response.latency_ms;
  if (!result.ok) result.cause = FailureCauseOf(response.status, response.curl_code);
  result.limits = response.limits;
  return result;
}

void DropByteOrderMark(std::string* body) {
  // JSON parsers skip a UTF-8 byte order mark (some servers send one); a
  // record that embeds the body must not start its value with it.
  if (body->rfind("\xEF\xBB\xBF", 0) == 0) body->erase(0, 3);
}

namespace {

// Writes JSON text back as a SAX parser reads it, with `secret` redacted in
// every string and key: iterative however deep the text nests, and no
// document in memory. Keys keep their order (and repeats), numbers their
// spelling; strings are written again, escaped as JSON requires.
class RedactingWriter : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit RedactingWriter(const std::string& secret) : secret_(secret) {}

  bool null() override { return Value("null"); }
  bool boolean(bool value) override { return Value(value ? "true" : "false"); }
  bool number_integer(number_integer_t value) override { return Value(std::to_string(value)); }
  bool number_unsigned(number_unsigned_t value) override { return Value(std::to_string(value)); }
  bool number_float(number_float_t, const string_t& spelling) override { return Value(spelling); }
  bool string(string_t& value) override { return Value(Quoted(value)); }
  bool binary(binary_t&) override { return false; }  // not in JSON text
  bool start_object(std::size_t) override { return Open("{"); }
  bool key(string_t& value) override {
    Separate();
    out_ += Quoted(value);
    out_ += ':';
    after_key_ = true;
    return true;
  }
  bool end_object() override { return Close('}'); }
  bool start_array(std::size_t) override { return Open("["); }
  bool end_array() override { return Close(']'); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

  bool redacted() const { return redacted_; }
  std::string& out() { return out_; }

 private:
  void Separate() {
    if (after_key_) {
      after_key_ = false;
    } else if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
  }
  bool Value(std::string_view text) {
    Separate();
    out_ += text;
    return true;
  }
  bool Open(std::string_view bracket) {
    Value(bracket);
    first_.push_back(true);
    return true;
  }
  bool Close(char bracket) {
    out_ += bracket;
    first_.pop_back();
    return true;
  }
  std::string Quoted(std::string text) {
    if (text.find(secret_) != std::string::npos) {
      Redact(secret_, &text);
      redacted_ = true;
    }
    return nlohmann::json(std::move(text))
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  const std::string& secret_;
  std::string out_;
  std::vector<bool> first_;  // per open object or array: nothing written in it yet
  bool after_key_ = false;
  bool redacted_ = false;
};

}  // namespace

void RedactJsonText(const std::string& secret, std::string* text) {
  Redact(secret, text);
  // Escapes (\u002d, \/) may spell the secret in a way that the plain
  // search misses and a JSON reader decodes.
  if (secret.empty() || text->find('\\') == std::string::npos) return;
  RedactingWriter writer(secret);
  if (!nlohmann::json::sax_parse(*text, &writer) || !writer.redacted()) return;
  *text = std::move(writer.out());
}

void Redact(const std::string& secret, std::string* text) {
  if (secret.empty()) return;
  size_t pos = text->find(secret);
  while (pos != std::string::npos) {
    text->replace(pos, secret.size(), kRedacted);
    pos = text->find(secret, pos + sizeof kRedacted - 1);
  }
}

std::string Excerpt(const std::string& text, size_t max) {
  std::string_view s = Trim(text);
  if (s.size() <= max) return std::string(s);
  constexpr std::string_view kEllipsis = "...";
  size_t cut = max > kEllipsis.size() ? max - kEllipsis.size() : 0;
  // Never split a UTF-8 sequence: s[cut] must start a character.
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(Trim(s.substr(0, cut))) + std::string(kEllipsis);
}

}  // namespace fanmap
