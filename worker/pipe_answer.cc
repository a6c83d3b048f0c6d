#include "worker/pipe_answer.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/json_text.h"
#include "common/printable.h"

namespace fanmap {
namespace {

constexpr char kExpectedKeys[] = "ok, result, error, retryable, traceback";

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t SkipSpace(std::string_view text, size_t pos) {
  while (pos < text.size() && IsSpace(text[pos])) ++pos;
  return pos;
}

// The end of the string that starts at text[pos] ('"'), past its closing
// quote. `text` is known to be valid JSON.
size_t StringEnd(std::string_view text, size_t pos) {
  for (++pos; pos < text.size(); ++pos) {
    if (text[pos] == '\\') {
      ++pos;
    } else if (text[pos] == '"') {
      return pos + 1;
    }
  }
  return text.size();
}

// The end of the JSON value that starts at text[pos]. `text` is known to be
// valid JSON, so brackets need only be counted, not matched: a loop, never a
// recursion, however deep the nesting.
size_t ValueEnd(std::string_view text, size_t pos) {
  char first = text[pos];
  if (first == '"') return StringEnd(text, pos);
  if (first != '{' && first != '[') {
    while (pos < text.size() && !IsSpace(text[pos]) && text[pos] != ',' && text[pos] != '}' &&
           text[pos] != ']') {
      ++pos;
    }
    return pos;
  }
  size_t depth = 0;
  while (pos < text.size()) {
    char c = text[pos];
    if (c == '"') {
      pos = StringEnd(text, pos);
      continue;
    }
    if (c == '{' || c == '[') ++depth;
    if ((c == '}' || c == ']') && --depth == 0) return pos + 1;
    ++pos;
  }
  return pos;
}

// The text of a JSON string literal (valid, quotes included).
std::string DecodeString(std::string_view literal) {
  std::string_view inner = literal.substr(1, literal.size() - 2);
  if (inner.find('\\') == std::string_view::npos) return std::string(inner);
  return nlohmann::json::parse(literal).get<std::string>();
}

const char* TypeName(char first) {
  switch (first) {
    case '[':
      return "an array";
    case '"':
      return "a string";
    case 't':
    case 'f':
      return "a boolean";
    case 'n':
      return "null";
    default:
      return "a number";
  }
}

// The spans of the answer's members, or the reason it is not an answer.
struct Members {
  std::optional<std::string_view> ok, result, error, retryable, traceback;
};

std::string ReadMembers(std::string_view line, Members* m) {
  if (SkipSpace(line, 0) == line.size()) return "an empty line";
  std::string why;
  if (!IsJsonValue(line, &why)) return "not JSON (" + why + ")";
  size_t pos = SkipSpace(line, 0);
  // nlohmann skips a leading UTF-8 byte-order mark; so must the scan.
  if (line.substr(pos, 3) == "\xEF\xBB\xBF") pos = SkipSpace(line, pos + 3);
  if (line[pos] != '{') return std::string(TypeName(line[pos])) + ", not an object";
  pos = SkipSpace(line, pos + 1);
  while (line[pos] != '}') {
    size_t key_end = StringEnd(line, pos);
    std::string key = DecodeString(line.substr(pos, key_end - pos));
    pos = SkipSpace(line, SkipSpace(line, key_end) + 1);  // past ':'
    size_t value_end = ValueEnd(line, pos);
    std::string_view value = line.substr(pos, value_end - pos);
    std::optional<std::string_view>* slot = key == "ok"          ? &m->ok
                                            : key == "result"    ? &m->result
                                            : key == "error"     ? &m->error
                                            : key == "retryable" ? &m->retryable
                                            : key == "traceback" ? &m->traceback
                                                                 : nullptr;
    if (slot == nullptr) {
      return "unknown key \"" + Printable(key, 40) + "\" (expected " + kExpectedKeys + ")";
    }
    if (slot->has_value()) return "\"" + key + "\" given twice";
    *slot = value;
    pos = SkipSpace(line, value_end);
    if (line[pos] == ',') pos = SkipSpace(line, pos + 1);
  }
  return std::string();
}

// Checks the members against the two shapes of an answer.
std::string CheckMembers(const Members& m) {
  if (!m.ok.has_value()) return "no \"ok\"";
  if (*m.ok != "true" && *m.ok != "false") return "\"ok\" is not true or false";
  if (*m.ok == "true") {
    if (!m.result.has_value()) return "\"ok\":true without \"result\"";
    if (m.error.has_value() || m.retryable.has_value() || m.traceback.has_value()) {
      return "\"error\", \"retryable\" and \"traceback\" belong to \"ok\":false answers";
    }
    return std::string();
  }
  if (m.result.has_value()) return "\"result\" belongs to \"ok\":true answers";
  if (!m.error.has_value()) return "\"ok\":false without \"error\"";
  if (m.error->front() != '"') return "\"error\" is not a string";
  if (m.retryable.has_value() && *m.retryable != "true" && *m.retryable != "false") {
    return "\"retryable\" is not true or false";
  }
  if (m.traceback.has_value() && m.traceback->front() != '"') {
    return "\"traceback\" is not a string";
  }
  return std::string();
}

// ReadJsonAnswer's work; returns why `line` is not an answer, or "".
std::string ReadAnswer(std::string_view line, Result* result) {
  Members m;
  std::string why = ReadMembers(line, &m);
  if (why.empty()) why = CheckMembers(m);
  if (!why.empty()) return why;
  result->ok = *m.ok == "true";
  if (result->ok) {
    if (m.result->front() == '"') {
      result->value = DecodeString(*m.result);
    } else {
      result->value.assign(m.result->data(), m.result->size());
      result->value_is_json = true;
    }
    return std::string();
  }
  result->value = DecodeString(*m.error);
  result->retryable = m.retryable.has_value() && *m.retryable == "true";
  if (m.traceback.has_value()) result->extra["traceback"] = DecodeString(*m.traceback);
  return std::string();
}

}  // namespace

void ReadJsonAnswer(std::string_view line, Result* result) {
  result->extra.clear();
  result->value_is_json = false;
  result->retryable = false;
  std::string why;
  try {
    why = ReadAnswer(line, result);
  } catch (const nlohmann::json::exception& e) {
    // Not expected: the line was validated before its strings were decoded.
    why = std::string("unreadable (") + e.what() + ")";
  }
  if (why.empty()) return;
  result->ok = false;
  result->value_is_json = false;
  result->retryable = false;
  result->extra.clear();
  result->value = "co-process answer is not a --pipe-answers json object: " + why +
                  " (the line: " + Printable(line, 120) + ")";
}

const char* PipeAnswerFormatName(PipeAnswerFormat format) {
  return format == PipeAnswerFormat::kJson ? "json" : "lines";
}

bool ParsePipeAnswerFormat(std::string_view name, PipeAnswerFormat* format) {
  if (name == "lines") {
    *format = PipeAnswerFormat::kLines;
  } else if (name == "json") {
    *format = PipeAnswerFormat::kJson;
  } else {
    return false;
  }
  return true;
}

}  // namespace fanmap
