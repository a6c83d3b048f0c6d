// Helpers that fill the Result of one task, shared by the payloads and by
// the HTTP response classifier.
#ifndef FANMAP_WORKER_TASK_RESULT_H_
#define FANMAP_WORKER_TASK_RESULT_H_

#include <cstdint>
#include <string>

#include "common/protocol.h"

namespace fanmap {

Result OkResult(const Task& task, std::string value);
Result ErrorResult(const Task& task, std::string error);
// An error worth another attempt (timeout, crash, overload).
Result RetryableError(const Task& task, std::string error, uint32_t retry_after_ms = 0);

}  // namespace fanmap

#endif  // FANMAP_WORKER_TASK_RESULT_H_
