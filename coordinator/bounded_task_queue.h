// BoundedTaskQueue: the status server's connection pool (an httplib
// TaskQueue): a fixed number of threads and a bounded queue of accepted
// connections.
//
// httplib's own ThreadPool queues every connection it accepts, without
// bound: anyone who can reach the status address could open thousands of
// idle connections and use up the coordinator's file descriptors, which its
// workers' sockets and its output need. Here enqueue() waits while the queue
// is full, so the listening thread stops accepting, and further connections
// wait in (then are refused by) the kernel's backlog instead.
//
// Thread-safe. The threads are started by the constructor (they inherit the
// caller's signal mask) and joined by shutdown(), after the queue is drained.
#ifndef FANMAP_COORDINATOR_BOUNDED_TASK_QUEUE_H_
#define FANMAP_COORDINATOR_BOUNDED_TASK_QUEUE_H_

#include <httplib.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fanmap {

class BoundedTaskQueue : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(size_t threads, size_t max_queued);
  ~BoundedTaskQueue() override;  // shutdown() if not done
  BoundedTaskQueue(const BoundedTaskQueue&) = delete;
  BoundedTaskQueue& operator=(const BoundedTaskQueue&) = delete;

  // Queues `fn` to run on one of the threads; waits while max_queued tasks
  // wait already.
  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then joins the threads. Safe to call twice.
  void shutdown() override;

  size_t queued() const;

 private:
  void Work();

  const size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable ready_;            // a task was queued, or shutdown
  std::condition_variable room_;             // a task left the queue
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool shutdown_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_BOUNDED_TASK_QUEUE_H_
