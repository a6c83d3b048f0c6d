// The process exit codes of fanmap, in one place (the command-line contract).
#ifndef FANMAP_COMMON_EXIT_STATUS_H_
#define FANMAP_COMMON_EXIT_STATUS_H_

namespace fanmap {

enum ExitStatus : int {
  kExitOk = 0,            // every item succeeded
  kExitItemsFailed = 1,   // some items failed; their records were written
  kExitUsage = 2,         // usage or input error, nothing (more) processed
  kExitInterrupted = 130  // SIGINT/SIGTERM; every finished record was written
};

}  // namespace fanmap

#endif  // FANMAP_COMMON_EXIT_STATUS_H_
