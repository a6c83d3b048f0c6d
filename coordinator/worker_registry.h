// WorkerRegistry: the workers that said HELLO in this run, found by their
// ZeroMQ routing id or by their id in O(1).
//
// A worker's id is never reused within a run, so a slot that names a worker
// which has left simply finds nobody. The registry owns the Worker records;
// pointers stay valid until Remove() of that worker. Not thread-safe (the
// coordinator has one thread).
#ifndef FANMAP_COORDINATOR_WORKER_REGISTRY_H_
#define FANMAP_COORDINATOR_WORKER_REGISTRY_H_

#include <sys/types.h>

#include <cstdint>
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
  uint64_t completed = 0;  // results that closed one of its attempts
};

class WorkerRegistry {
 public:
  // Adds a worker; its id is the next unused one.
  Worker& Add(std::string routing_id);
  Worker* Find(const std::string& routing_id);
  Worker* Find(WorkerId id);
  const Worker* Find(WorkerId id) const;
  void Remove(WorkerId id);

  // In joining order (the order dispatch takes turns in).
  const std::vector<Worker*>& all() const { return order_; }
  size_t size() const { return order_.size(); }
  bool empty() const { return order_.empty(); }

 private:
  WorkerId next_id_ = 1;
  std::unordered_map<WorkerId, std::unique_ptr<Worker>> by_id_;
  std::unordered_map<std::string, WorkerId> by_routing_id_;
  std::vector<Worker*> order_;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_WORKER_REGISTRY_H_
