#include "worker/payload.h"

#include "worker/payload_builtin.h"
#include "worker/payload_exec.h"
#include "worker/payload_http.h"
#include "worker/payload_pipe.h"

namespace fanmap {

Status MakePayload(const JobSpec& job, ResultSink* sink, std::unique_ptr<Payload>* out) {
  Status valid = ValidateJob(job);
  if (!valid.ok()) return valid;
  if (job.kind == "builtin") return MakeBuiltinPayload(job.argv[0], sink, out);
  if (job.kind == "exec") {
    *out = MakeExecPayload(job, sink);
    return Status::Ok();
  }
  if (job.kind == "pipe") {
    *out = MakePipePayload(job, sink);
    return Status::Ok();
  }
  return MakeHttpPayload(job, sink, out);
}

}  // namespace fanmap
