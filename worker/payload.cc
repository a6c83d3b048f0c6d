#include "worker/payload.h"

#include "worker/payload_builtin.h"
#include "worker/payload_exec.h"
#include "worker/payload_http.h"
#include "worker/payload_pipe.h"

namespace fanmap {

Status MakePayload(const JobSpec& job, ResultSink* sink, std::unique_ptr<Payload>* out) {
  if (job.kind == "builtin") {
    if (job.argv.size() != 1) return Status::Error("builtin job needs exactly one spec");
    return MakeBuiltinPayload(job.argv[0], sink, out);
  }
  if (job.kind == "exec") {
    if (job.argv.empty()) return Status::Error("exec job needs a command");
    *out = MakeExecPayload(job.argv, sink);
    return Status::Ok();
  }
  if (job.kind == "pipe") {
    if (job.argv.size() != 1 || job.argv[0].empty()) {
      return Status::Error("pipe job needs a command");
    }
    *out = MakePipePayload(job.argv[0], sink);
    return Status::Ok();
  }
  if (job.kind == "http") return MakeHttpPayload(job, sink, out);
  return Status::Error("unknown payload kind '" + job.kind + "'");
}

Status ValidateJob(const JobSpec& job) {
  ResultSink sink;
  std::unique_ptr<Payload> payload;
  return MakePayload(job, &sink, &payload);
}

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
