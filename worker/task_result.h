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
// The bytes of a result's text: its value and every string field.
size_t TextBytes(const Result& result);
// A result whose text (value and string fields) passes kMaxResultFieldsBytes
// could not be sent (the coordinator would drop the frame, and the worker
// with it): it becomes an error result that says how large it was. Returns
// true if it did.
bool FailIfTooLarge(Result* result);

}  // namespace fanmap

#endif  // FANMAP_WORKER_TASK_RESULT_H_
