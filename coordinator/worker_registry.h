// WorkerRegistry: the workers that said HELLO in this run, found by their
// ZeroMQ routing id or by their id in O(1).
//
// A worker's id is never reused within a run, so a slot that names a worker
// which has left simply finds nobody. The registry owns the Worker records;
// pointers stay valid until Remove() of that worker. The last
// kKeptDeparted workers that left are kept, with why they left, for the
// status view. Not thread-safe (the coordinator has one thread).
#ifndef FANMAP_COORDINATOR_WORKER_REGISTRY_H_
#define FANMAP_COORDINATOR_WORKER_REGISTRY_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/protocol.h"
#include "coordinator/credit.h"

namespace fanmap {

using WorkerId = uint32_t;  // 0 = nobody

struct Worker {
  WorkerId id = 0;
  std::string routing_id;  // the ROUTER's name for its connection
  Hello hello;             // as the peer sent it: print only through Printable()
  WorkerCredit credit{1};
  pid_t local_pid = 0;  // non-zero for a worker this coordinator spawned (proven)
  int64_t last_heard_ms = 0;
  int64_t last_sent_ms = 0;
  // Result silence: the last result that closed one of its attempts, and
  // when it last went from holding nothing to holding tasks.
  int64_t last_result_ms = 0;
  int64_t busy_since_ms = 0;
  uint64_t completed = 0;    // results that closed one of its attempts
  uint64_t accepted = 0;     // ... and completed their item: the records it produced
  uint64_t task_micros = 0;  // payload time of the `completed` results, summed
  // The suspect item this worker runs alone (Scheduler::Fits), if any: its
  // index and attempt. Checked lazily: it ends when that attempt closes.
  bool isolating = false;
  uint64_t isolated_index = 0;
  uint32_t isolated_attempt = 0;
};

// A worker that left the run, as it was when it left, and why.
struct DepartedWorker {
  Worker worker;
  std::string why;  // e.g. "silent for 5000 ms", "released", "left (shutting down)"
};

class WorkerRegistry {
 public:
  // Adds a worker; its id is the next unused one.
  Worker& Add(std::string routing_id);
  Worker* Find(const std::string& routing_id);
  Worker* Find(WorkerId id);
  const Worker* Find(WorkerId id) const;
  // Removes the worker; it is kept in departed() with `why`.
  void Remove(WorkerId id, std::string why);

  // In joining order (the order dispatch takes turns in).
  const std::vector<Worker*>& all() const { return order_; }
  size_t size() const { return order_.size(); }
  bool empty() const { return order_.empty(); }

  static constexpr size_t kKeptDeparted = 1000;
  // The workers that left, oldest first: the last kKeptDeparted of them.
  const std::deque<DepartedWorker>& departed() const { return departed_; }
  // All the workers that left, including those no longer kept.
  uint64_t departed_count() const { return departed_count_; }

 private:
  WorkerId next_id_ = 1;
  std::unordered_map<WorkerId, std::unique_ptr<Worker>> by_id_;
  std::unordered_map<std::string, WorkerId> by_routing_id_;
  std::vector<Worker*> order_;
  std::deque<DepartedWorker> departed_;
  uint64_t departed_count_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_WORKER_REGISTRY_H_
