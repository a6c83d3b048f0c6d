// FarmSnapshot: the state of a run at one moment, as the status view shows
// it (`--status`): item counts, rate, ETA, and every worker with its slots,
// tasks in flight, tasks done, mean task time, when it was last heard from
// and, for one that left, why.
//
// The coordinator takes a snapshot (TakeFarmSnapshot: copies of a few
// numbers and strings per worker, no formatting) and hands it to the status
// server's thread, which renders it as JSON (RenderStatusJson) or as
// Prometheus text metrics (RenderPrometheus) for each request. A snapshot is
// immutable once published, so the two threads share nothing else.
//
// What it holds is read-only data about the run: counts, times, worker names
// and hosts (as the workers claimed them in HELLO). Never an item, a result,
// a job option (an API key) or a key: anyone who can reach the status address
// can read it.
//
// Worker names and hosts are the peers' own words: the renderers pass them
// through Printable() and escape them for their format, so that a hostile
// name cannot break the JSON, the exposition format or the page.
#ifndef FANMAP_COORDINATOR_FARM_SNAPSHOT_H_
#define FANMAP_COORDINATOR_FARM_SNAPSHOT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/scheduler.h"

namespace fanmap {

enum class RunState : uint8_t {
  kRunning,   // taking and sending work
  kStopping,  // interrupted, halting or failed: only finishing what runs
};

struct WorkerView {
  uint32_t id = 0;     // unique within the run (names need not be)
  std::string name;    // raw, as the worker sent it
  std::string host;    // raw, as the worker sent it
  bool local = false;  // spawned by this coordinator
  uint32_t slots = 0;
  uint64_t in_flight = 0;   // tasks sent, not yet answered
  uint64_t tasks_done = 0;  // its results that completed their item (its records)
  uint64_t results = 0;     // results that closed one of its attempts (retryable failures too)
  double mean_task_ms = 0;  // payload time per result; 0 before the first
  int64_t last_seen_ms_ago = 0;
  std::string why_left;  // empty while it is in the run
};

struct FarmSnapshot {
  RunState state = RunState::kRunning;
  double elapsed_s = 0;
  uint64_t items_read = 0;
  uint64_t items_done = 0;  // records written
  uint64_t items_failed = 0;
  uint64_t items_retried = 0;  // attempts sent again after a failure or a lost worker
  uint64_t in_flight = 0;
  std::optional<uint64_t> items_total;  // known once the input is counted or read to its end
  std::vector<WorkerView> workers;      // in the run, in joining order
  std::vector<WorkerView> departed;     // the last ones that left, oldest first
  uint64_t departed_count = 0;          // all that left, including those not kept

  size_t hosts() const;
  uint64_t slots() const;
  // Records written per second since the start.
  double rate_per_s() const;
  // Seconds left at the rate so far; empty if the total or the rate is unknown.
  std::optional<double> eta_s() const;
};

// The coordinator's own counters, which the scheduler does not hold.
struct RunCounts {
  uint64_t done = 0;    // records written
  uint64_t failed = 0;  // ... of which failed
  uint64_t total = 0;   // items counted ahead (0 = not counted)
  bool input_done = false;
  RunState state = RunState::kRunning;
  int64_t started_us = 0;  // NowMicros() at the start of the run
};

// The state of the run now: `now_us` is NowMicros(). Cheap: no formatting.
FarmSnapshot TakeFarmSnapshot(const Scheduler& scheduler, const RunCounts& counts, int64_t now_us);

// The snapshot as one JSON object (README.md shows an example).
std::string RenderStatusJson(const FarmSnapshot& snapshot);

// The snapshot in the Prometheus text exposition format (version 0.0.4):
// fanmap_items_read_total, fanmap_items_done_total, ... each with its HELP and
// TYPE lines; per worker, series labelled id, worker and host.
std::string RenderPrometheus(const FarmSnapshot& snapshot);

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_FARM_SNAPSHOT_H_
