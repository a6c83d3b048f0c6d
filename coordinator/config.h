// Config: everything a coordinator run needs, filled from the command line.
#ifndef FANMAP_COORDINATOR_CONFIG_H_
#define FANMAP_COORDINATOR_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "coordinator/arg_assembler.h"
#include "coordinator/halt_policy.h"
#include "coordinator/record_writer.h"

namespace fanmap {

// kOpenAiBatch: each line a Batch API request (worker/batch_format.h); the
// output is then the Batch API's output format (record_writer.h).
enum class InputFormat { kLines, kJsonl, kOpenAiBatch };
enum class ProgressMode { kAuto, kAlways, kNever };

struct Config {
  std::string input_path;   // "" = stdin
  std::string output_path;  // "" = stdout
  InputFormat input_format = InputFormat::kLines;
  OutputFormat output_format = OutputFormat::kJsonl;
  int workers = -1;    // local workers; -1 = number of CPUs
  unsigned slots = 0;  // per worker; 0 = the payload's default
  bool unordered = false;
  std::vector<std::string> listen;  // extra endpoints remote workers connect to
  ProgressMode progress = ProgressMode::kAuto;
  size_t window = 0;                 // read-ahead in items; 0 = automatic
  int heartbeat_ms = 5000;           // a worker silent this long is dead
  int retries = 2;                   // extra attempts after a retryable failure or a lost worker
  int64_t retry_for_ms = 0;          // no retry this long after an item's first attempt; 0 = none
  std::string summary_path;          // --summary FILE: the run's summary as JSON
  bool quiet = false;                // no summary on stderr
  int64_t task_timeout_ms = 0;       // per attempt; 0 = none
  HaltSpec halt;                     // --halt (fail-fast applies whatever it says)
  bool speculate = false;            // back up stragglers on idle workers (--speculate)
  bool resume = false;               // keep the records already in output_path
  bool resume_failed = false;        // ... and run their failed items again
  double rate_per_s = 0;             // requests per second over all workers; 0 = no limit
  int64_t tokens_per_min = 0;        // estimated LLM tokens per minute; 0 = no limit
  std::string curve_secret_path;     // CurveZMQ: the coordinator secret key file
  std::string authorized_keys_path;  // ... and the workers public keys (file or folder)
  bool insecure = false;             // allow listening beyond loopback without keys
  JobSpec job;                       // what workers run
  std::string worker_path;           // "" = fanmap-worker next to fanmap
  std::string status_address;        // --status HOST:PORT: serve the live view; "" = off
  ArgInput arg_input;                // GNU parallel's sources, delimiter, -n/-X
  std::string joblog_path;           // --joblog FILE; "" = none
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_CONFIG_H_
