// LocalWorkers: the fanmap-worker processes a coordinator spawns on its own
// machine (-j N). Boost.Process stays inside local_workers.cc: its headers are
// heavy.
//
// All workers share one process group of their own, so a Ctrl-C at the
// terminal reaches only the coordinator, which then stops them in order.
// Workers are started with --parent-pid, so they also die with a coordinator
// that is killed outright. Destruction kills and reaps whatever is left.
#ifndef FANMAP_COORDINATOR_LOCAL_WORKERS_H_
#define FANMAP_COORDINATOR_LOCAL_WORKERS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace fanmap {

struct ExitedWorker {
  pid_t pid;
  std::string how;  // "exit code 3", "killed by signal 9"
  bool clean;       // exit code 0
};

class LocalWorkers {
 public:
  // `worker_path` is the fanmap-worker binary, `endpoint` what it connects to;
  // `extra_args` are added to every worker's command line.
  LocalWorkers(std::string worker_path, std::string endpoint, unsigned slots,
               std::vector<std::string> extra_args = {});
  ~LocalWorkers();
  LocalWorkers(const LocalWorkers&) = delete;
  LocalWorkers& operator=(const LocalWorkers&) = delete;

  // Starts one more worker; returns its pid through *pid.
  Status Spawn(pid_t* pid);
  // Reaps workers that have exited (cheap; call on SIGCHLD).
  std::vector<ExitedWorker> Reap();
  // Sends `signo` to one worker.
  void Signal(pid_t pid, int signo);
  // Waits up to `grace_ms` for every worker to exit, then SIGTERMs and finally
  // SIGKILLs what is left; every worker is reaped on return.
  void StopAll(int grace_ms);
  size_t running() const;
  // Pids of the workers not yet reaped.
  std::vector<pid_t> pids() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The fanmap-worker next to the running executable, or $FANMAP_WORKER.
std::string DefaultWorkerPath();

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_LOCAL_WORKERS_H_
