#include "common/record_fields.h"

#include <vector>

#include "common/json_text.h"

namespace fanmap {

std::string_view RecordFieldName(std::string_view key, bool* is_json) {
  *is_json = key.size() > kJsonFieldSuffix.size() &&
             key.substr(key.size() - kJsonFieldSuffix.size()) == kJsonFieldSuffix;
  return *is_json ? key.substr(0, key.size() - kJsonFieldSuffix.size()) : key;
}

void SanitizeJsonFields(Result::Extra* extra) {
  std::vector<std::string> bad;
  for (const auto& [key, value] : *extra) {
    bool is_json = false;
    RecordFieldName(key, &is_json);
    if (!is_json) continue;
    const std::string* text = std::get_if<std::string>(&value);
    if (text == nullptr || text->find_first_of("\r\n") != std::string::npos ||
        !IsJsonValue(*text, nullptr)) {
      bad.push_back(key);
    }
  }
  for (const std::string& key : bad) {
    auto it = extra->find(key);
    bool is_json = false;
    std::string name(RecordFieldName(key, &is_json));
    auto value = std::move(it->second);
    extra->erase(it);
    if (const int64_t* number = std::get_if<int64_t>(&value)) {
      (*extra)[name] = std::to_string(*number);
    } else {
      (*extra)[name] = std::move(std::get<std::string>(value));
    }
  }
}

}  // namespace fanmap
