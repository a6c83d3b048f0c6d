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

void TakeItemFields(nlohmann::ordered_json* request, Result::Extra* fields) {
  for (const char* name : {"custom_id", "metadata"}) {
    auto it = request->find(name);
    if (it == request->end()) continue;
    if (fields != nullptr) {
      if (it->is_string() && std::string_view(name) == "custom_id") {
        (*fields)[name] = it->get<std::string>();
      } else {
        (*fields)[JsonFieldKey(name)] =
            it->dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
      }
    }
    request->erase(it);
  }
}

}  // namespace fanmap
