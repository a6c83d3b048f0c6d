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
  // After losing the coordinator (silence, a network cut) or being reset by
  // it, connect again and rejoin instead of exiting. Off for local workers,
  // which live and die with the coordinator that spawned them.
  bool rejoin = true;
  // CurveZMQ: our secret key file and the coordinator's public key (Z85 or a
  // file). Both or neither.
  std::string curve_secret_path;
  std::string server_key;
};

// Runs until the coordinator says STOP (returns 0), refuses us (2), goes
// silent past the liveness timeout without `rejoin` (1), no job arrives
// within connect_timeout_s (1), or SIGTERM/SIGINT arrive (130, after telling
// the coordinator BYE).
// Children started by payloads are killed and reaped before returning.
int RunWorker(const WorkerConfig& config);

}  // namespace fanmap

#endif  // FANMAP_WORKER_WORKER_H_
