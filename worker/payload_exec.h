// ExecPayload: runs a command per item ("fanmap -- CMD ARGS...").
//
// Arguments equal to or containing "{}" have it replaced by the item; if no
// argument contains "{}", the item is appended as the last argument. No shell
// is involved. Each command runs in its own process group with stdin from
// /dev/null; its stdout (without one final newline) is the result. A non-zero
// exit or a death by signal is an error result carrying "exit_code" (or
// "signal") and the tail of stderr in "stderr".
#ifndef FANMAP_WORKER_PAYLOAD_EXEC_H_
#define FANMAP_WORKER_PAYLOAD_EXEC_H_

#include <memory>
#include <string>
#include <vector>

#include "worker/payload.h"

namespace fanmap {

std::unique_ptr<Payload> MakeExecPayload(std::vector<std::string> argv, ResultSink* sink);

// Builds the argv for one item (exposed for tests).
std::vector<std::string> ExpandArgv(const std::vector<std::string>& argv, const std::string& item);

}  // namespace fanmap

#endif  // FANMAP_WORKER_PAYLOAD_EXEC_H_
