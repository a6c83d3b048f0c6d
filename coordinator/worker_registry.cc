#include "coordinator/worker_registry.h"

#include <algorithm>

namespace fanmap {

Worker& WorkerRegistry::Add(std::string routing_id) {
  auto worker = std::make_unique<Worker>();
  worker->id = next_id_++;
  worker->routing_id = std::move(routing_id);
  Worker* w = worker.get();
  by_routing_id_[w->routing_id] = w->id;
  order_.push_back(w);
  by_id_[w->id] = std::move(worker);
  return *w;
}

Worker* WorkerRegistry::Find(const std::string& routing_id) {
  auto it = by_routing_id_.find(routing_id);
  return it == by_routing_id_.end() ? nullptr : Find(it->second);
}

Worker* WorkerRegistry::Find(WorkerId id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.get();
}

const Worker* WorkerRegistry::Find(WorkerId id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.get();
}

void WorkerRegistry::Remove(WorkerId id, std::string why) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  by_routing_id_.erase(it->second->routing_id);
  order_.erase(std::find(order_.begin(), order_.end(), it->second.get()));
  departed_.push_back(DepartedWorker{std::move(*it->second), std::move(why)});
  if (departed_.size() > kKeptDeparted) departed_.pop_front();
  ++departed_count_;
  by_id_.erase(it);
}

}  // namespace fanmap
