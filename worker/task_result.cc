#include "worker/task_result.h"

#include <utility>
#include <variant>

namespace fanmap {

namespace {

Result ResultOf(const Task& task, bool ok, std::string value) {
  Result r;
  r.index = task.index;
  r.attempt = task.attempt;
  r.ok = ok;
  r.value = std::move(value);
  return r;
}

}  // namespace

Result OkResult(const Task& task, std::string value) {
  return ResultOf(task, true, std::move(value));
}

Result ErrorResult(const Task& task, std::string error) {
  return ResultOf(task, false, std::move(error));
}

Result RetryableError(const Task& task, std::string error, uint32_t retry_after_ms) {
  Result r = ErrorResult(task, std::move(error));
  r.retryable = true;
  r.retry_after_ms = retry_after_ms;
  return r;
}

size_t TextBytes(const Result& result) {
  size_t bytes = result.value.size();
  for (const auto& [key, field] : result.extra) {
    if (const auto* text = std::get_if<std::string>(&field)) bytes += text->size();
  }
  return bytes;
}

bool FailIfTooLarge(Result* result) {
  size_t bytes = TextBytes(*result);
  if (bytes <= kMaxResultFieldsBytes) return false;
  result->ok = false;
  result->retryable = false;  // the same task makes the same output
  result->fatal = false;
  result->value_is_json = false;
  result->cause = FailureCause::kOther;
  result->value = "result of " + std::to_string(bytes) + " bytes, more than the " +
                  std::to_string(kMaxResultFieldsBytes >> 20) + " MiB a result may hold";
  // Numbers (an exit status, token counts) stay; the text goes.
  for (auto it = result->extra.begin(); it != result->extra.end();) {
    it = std::holds_alternative<std::string>(it->second) ? result->extra.erase(it) : std::next(it);
  }
  return true;
}

}  // namespace fanmap
