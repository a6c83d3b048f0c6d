// The worker process: connects to a coordinator, receives its job, runs tasks
// through a Payload and sends results back, in one single-threaded poll loop.
#ifndef FANMAP_WORKER_WORKER_H_
#define FANMAP_WORKER_WORKER_H_

#include <string>

namespace fanmap {

struct WorkerConfig {
  std::string endpoint;        // e.g. "tcp://127.0.0.1:5555" or "ipc:///tmp/x"
  unsigned slots = 0;          // tasks in flight; 0 = the job's default
  std::string name;            // shown by the coordinator; default host:pid
  int connect_timeout_s = 60;  // give up if no job arrives within this; 0 = wait forever
  bool quiet = false;          // no log lines on stderr
};

// Runs until the coordinator says STOP (returns 0), refuses us (2), goes
// silent past the liveness timeout (1), or SIGTERM/SIGINT arrive (130).
// Children started by payloads are killed and reaped before returning.
int RunWorker(const WorkerConfig& config);

}  // namespace fanmap

#endif  // FANMAP_WORKER_WORKER_H_
