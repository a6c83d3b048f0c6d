#include "worker/task_result.h"

#include <utility>

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

}  // namespace fanmap
