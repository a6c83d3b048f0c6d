#include "worker/chat_record.h"

#include "common/json_text.h"
#include "common/record_fields.h"

namespace fanmap {
namespace {

std::string Dump(const nlohmann::json& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Present and not empty: vLLM sends "tool_calls":[] with every message.
bool Present(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && !it->is_null() && !(it->is_array() && it->empty()) &&
         !(it->is_object() && it->empty()) &&
         !(it->is_string() && it->get_ref<const std::string&>().empty());
}

void CopyString(const nlohmann::json& object, const char* key, Result::Extra* extra) {
  auto it = object.find(key);
  if (it != object.end() && it->is_string()) (*extra)[key] = it->get<std::string>();
}

}  // namespace

Status ReadChatReply(const std::string& body, std::string* value, bool* value_is_json,
                     Result::Extra* extra) {
  if (!JsonDepthWithin(body)) {
    return Status::Error("response nested deeper than " + std::to_string(kMaxJsonDepth) +
                         " levels");
  }
  nlohmann::json response = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (response.is_discarded()) return Status::Error("response is not JSON");
  if (!response.is_object() || !response.contains("choices") || !response["choices"].is_array() ||
      response["choices"].empty() || !response["choices"][0].is_object()) {
    return Status::Error("no choices[0]");
  }
  const nlohmann::json& choice = response["choices"][0];
  if (!choice.contains("message") || !choice["message"].is_object()) {
    return Status::Error("no choices[0].message object");
  }
  const nlohmann::json& message = choice["message"];
  // Text alone is the result; anything more (tool calls next to text or an
  // empty one, as vLLM and Ollama send them, a refusal, content as a list
  // of parts) makes the whole message the result: nothing said is dropped.
  auto content = message.find("content");
  bool more_than_text = Present(message, "tool_calls") || Present(message, "function_call") ||
                        Present(message, "refusal");
  if (content != message.end() && content->is_string() && !more_than_text) {
    *value = content->get<std::string>();
    *value_is_json = false;
  } else if (more_than_text || Present(message, "content")) {
    *value = Dump(message);
    *value_is_json = true;
  } else {
    return Status::Error("choices[0].message has no content, tool_calls, function_call or refusal");
  }
  CopyString(choice, "finish_reason", extra);
  CopyString(response, "model", extra);
  CopyString(response, "id", extra);
  auto usage = response.find("usage");
  if (usage != response.end() && usage->is_object()) {
    for (const char* name : {"prompt_tokens", "completion_tokens", "total_tokens"}) {
      auto field = usage->find(name);
      if (field != usage->end() && field->is_number_integer()) {
        (*extra)[name] = field->get<int64_t>();
      }
    }
  }
  return Status::Ok();
}

}  // namespace fanmap
