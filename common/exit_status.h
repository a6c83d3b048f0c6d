// The process exit codes of fanmap, in one place (the command-line contract).
#ifndef FANMAP_COMMON_EXIT_STATUS_H_
#define FANMAP_COMMON_EXIT_STATUS_H_

namespace fanmap {

enum ExitStatus : int {
  kExitOk = 0,            // every item succeeded
  kExitItemsFailed = 1,   // some items failed; their records were written
  kExitUsage = 2,         // usage or input error, nothing (more) processed
  kExitRuntime = 3,       // the run could not go on: workers keep failing, output unwritable
  kExitInterrupted = 130,  // SIGINT/SIGTERM/SIGHUP; every finished record was written
  kExitOutputClosed = 141  // the reader of the records went away (| head): 128 + SIGPIPE
};

}  // namespace fanmap

#endif  // FANMAP_COMMON_EXIT_STATUS_H_
