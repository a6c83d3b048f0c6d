// ExecPayload: runs a command per task ("fanmap -- CMD ARGS...").
//
// The command is a CommandTemplate (worker/replacement.h): GNU parallel's
// replacement strings ({} {.} {/} {//} {/.} {#} {%} {N}...) are replaced by
// the task's arguments, and "{}" is appended when there is none. Several
// words run without a shell; one word with shell syntax runs as `sh -c`,
// values quoted. The task's item is the one argument, or with the job option
// "arg_table" an EncodeArgTable() of several (sources, columns, -n/-X).
// Each command runs in its own process group with stdin from /dev/null and
// FANMAP_SEQ (the job number, {#}) and FANMAP_SLOT ({%}) in its environment.
//
// Result: stdout without one final newline, or with "verbatim_output" as
// written (and the whole stderr in "stderr", the stdout of a failed command
// in "stdout"); "tag" prefixes each line with the arguments and a tab. A
// non-zero exit or a death by signal is an error result carrying "exit_code"
// (or "signal") and the tail of stderr in "stderr". "dry_run" gives the
// command line as the result instead of running it; "joblog" adds the
// command line ("command") and the wall-clock start ("start_us").
#ifndef FANMAP_WORKER_PAYLOAD_EXEC_H_
#define FANMAP_WORKER_PAYLOAD_EXEC_H_

#include <memory>

#include "worker/payload.h"

namespace fanmap {

std::unique_ptr<Payload> MakeExecPayload(const JobSpec& job, ResultSink* sink);

}  // namespace fanmap

#endif  // FANMAP_WORKER_PAYLOAD_EXEC_H_
