#include "worker/batch_format.h"

#include <nlohmann/json.hpp>
#include <string_view>

#include "common/json_text.h"
#include "common/record_fields.h"

namespace fanmap {
namespace {

using Json = nlohmann::json;

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool IsCleanPath(std::string_view path) {
  for (char c : path) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '#') return false;
  }
  return true;
}

// "%2e"/"%2E" at `s`'s start: an encoded ".", which servers decode.
bool StartsWithEncodedDot(std::string_view s) {
  return s.size() >= 3 && s[0] == '%' && s[1] == '2' && (s[2] == 'e' || s[2] == 'E');
}

// "." or ".." with any of its dots percent-encoded; what follows a ";" is
// left out, as servers that take path parameters ("/..;/") read it.
bool IsDotSegment(std::string_view segment) {
  segment = segment.substr(0, segment.find(';'));
  int dots = 0;
  while (!segment.empty()) {
    if (segment[0] == '.') {
      segment.remove_prefix(1);
    } else if (StartsWithEncodedDot(segment)) {
      segment.remove_prefix(3);
    } else {
      return false;
    }
    ++dots;
  }
  return dots == 1 || dots == 2;
}

bool HasEncodedSlash(std::string_view s) {
  for (size_t i = 0; i + 2 < s.size(); ++i) {
    if (s[i] != '%') continue;
    char hi = s[i + 1], lo = static_cast<char>(s[i + 2] | 0x20);  // lower case
    if ((hi == '2' && lo == 'f') || (hi == '5' && lo == 'c')) return true;
  }
  return false;
}

// The path cannot climb out of the --http base path, where the API key
// goes: no "." or ".." segment (curl and servers resolve them, so
// "/v1/../../admin" would reach "/admin" with the key), none percent-encoded,
// no backslash (some servers read it as "/") and no encoded "/" or backslash
// before the query (some decode them before resolving dots). The query is not a path.
bool StaysUnderBase(std::string_view path) {
  if (path.find('\\') != std::string_view::npos) return false;
  path = path.substr(0, path.find('?'));
  if (HasEncodedSlash(path)) return false;
  while (!path.empty()) {
    path.remove_prefix(1);  // the "/"
    std::string_view segment = path.substr(0, path.find('/'));
    if (IsDotSegment(segment)) return false;
    path.remove_prefix(segment.size());
  }
  return true;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string BatchBaseUrl(const std::string& base) {
  // The path ends at a query (Azure's ?api-version=), which stays at the
  // end; a fragment is never sent.
  size_t end = base.find_first_of("?#");
  std::string out = base.substr(0, end);
  while (!out.empty() && out.back() == '/') out.pop_back();
  if (end != std::string::npos && base[end] == '?')
    out += base.substr(end, base.find('#', end) - end);
  return out;
}

Status ParseBatchLine(const std::string& base_url, const std::string& line, BatchRequest* out) {
  if (!JsonDepthWithin(line)) {
    return Status::Error("Batch line nested deeper than " + std::to_string(kMaxJsonDepth) +
                         " levels");
  }
  Json json = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Status::Error("Batch line is not valid JSON");
  if (!json.is_object()) {
    return Status::Error(
        "Batch line is not an object {\"custom_id\", \"method\", \"url\", \"body\"}");
  }
  auto custom_id = json.find("custom_id");
  if (custom_id == json.end()) return Status::Error("Batch line has no \"custom_id\"");
  if (!custom_id->is_string() || custom_id->get_ref<const std::string&>().empty()) {
    return Status::Error("Batch line's \"custom_id\" is not a non-empty string");
  }
  out->custom_id = custom_id->get<std::string>();
  auto method = json.find("method");
  if (method == json.end() || !method->is_string()) {
    return Status::Error("Batch line has no \"method\" string");
  }
  if (method->get_ref<const std::string&>() != "POST") {
    return Status::Error("Batch line's \"method\" is " + Dump(*method) +
                         ": the Batch format takes POST only");
  }
  auto url = json.find("url");
  if (url == json.end() || !url->is_string()) {
    return Status::Error("Batch line has no \"url\" string");
  }
  std::string_view path = url->get_ref<const std::string&>();
  if (path.empty() || path[0] != '/' || !IsCleanPath(path)) {
    return Status::Error("Batch line's \"url\" " + Dump(*url) +
                         " is not a path such as \"/v1/chat/completions\"");
  }
  if (!StaysUnderBase(path)) {
    return Status::Error("Batch line's \"url\" " + Dump(*url) +
                         " could leave the --http base path: it has a \".\" or \"..\" segment"
                         " (plain or %2e-encoded), a backslash, or an encoded \"/\" or backslash");
  }
  auto body = json.find("body");
  if (body == json.end() || !body->is_object()) {
    return Status::Error("Batch line's \"body\" is not a JSON object");
  }
  // "https://host/v1" + "/v1/chat/completions": one "/v1". The path goes
  // before the base's query, if it has one.
  size_t query = base_url.find('?');
  std::string_view base_path = std::string_view(base_url).substr(0, query);
  if (EndsWith(base_path, "/v1") && (path == "/v1" || path.substr(0, 4) == "/v1/")) {
    path.remove_prefix(3);
  }
  out->url = std::string(base_path) + std::string(path) +
             (query == std::string::npos ? std::string() : base_url.substr(query));
  out->body = Dump(*body);
  return Status::Ok();
}

std::string BatchResponseJson(long status, const std::string& request_id, const std::string& body) {
  // Ordered: the Batch API's field order, and the server's inside the body.
  using Ordered = nlohmann::ordered_json;
  Ordered response = Ordered::object();
  response["status_code"] = status;
  response["request_id"] = request_id.empty() ? Ordered(nullptr) : Ordered(request_id);
  // Too deep to write out again: kept as the text it was.
  Ordered parsed = JsonDepthWithin(body) ? Ordered::parse(body, nullptr, /*allow_exceptions=*/false)
                                         : Ordered(Ordered::value_t::discarded);
  response["body"] = parsed.is_discarded() ? Ordered(body) : std::move(parsed);
  return response.dump(-1, ' ', false, Ordered::error_handler_t::replace);
}

void MakeBatchResult(const std::string& custom_id, long status, const std::string& request_id,
                     const std::string& body, Result* result) {
  if (!custom_id.empty()) result->extra["custom_id"] = custom_id;
  if (status <= 0) return;
  std::string response = BatchResponseJson(status, request_id, body);
  if (result->ok) {
    result->value = std::move(response);
    result->value_is_json = true;
  } else {
    result->extra[JsonFieldKey("response")] = std::move(response);
  }
}

}  // namespace fanmap
