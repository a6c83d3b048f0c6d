// Payload: what a worker does with one task (builtin, exec, ...).
//
// A payload runs inside the worker's single-threaded poll loop and must never
// block it: long work is either asynchronous (a timer, a child process, a
// socket) polled through the descriptors it adds, or cut into slices that
// Advance() runs a little at a time. The loop does not know which payload it
// drives.
//
// Each loop iteration:
//   1. AddPollItems() appends the descriptors the payload waits on and lowers
//      *timeout_ms to the time of its next deadline (0 = runnable now).
//   2. zmq::poll() runs over the loop's and the payload's items.
//   3. Advance() gets the polled items it added (with revents set) and moves
//      its tasks forward; finished tasks are appended to the sink.
//
// Start() may finish a task at once (append to the sink before returning).
// The loop calls Start() only while running() < the worker's slots.
#ifndef FANMAP_WORKER_PAYLOAD_H_
#define FANMAP_WORKER_PAYLOAD_H_

#include <zmq.h>

#include <memory>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "worker/job_check.h"
#include "worker/task_result.h"

namespace fanmap {

// Where payloads put finished tasks; owned by the worker loop.
using ResultSink = std::vector<Result>;

class Payload {
 public:
  virtual ~Payload() = default;

  virtual void Start(Task task) = 0;
  virtual void AddPollItems(std::vector<zmq_pollitem_t>* items, long* timeout_ms) {}
  // `items` points at the entries this payload added in AddPollItems, in order.
  virtual void Advance(const zmq_pollitem_t* items, size_t count) {}
  // Ends the running task `index` now (its deadline passed) and appends
  // nothing for it: the loop reports the timeout. Ending it may end other
  // tasks too (a co-process holds several); those are appended to the sink as
  // retryable errors. Unknown or finished indexes are ignored.
  virtual void Cancel(uint64_t index) = 0;
  // Slots in use: for most payloads the tasks started and not yet in the
  // sink; a co-process payload counts a child with a full window as one.
  virtual size_t running() const = 0;
  // Ends every running task without a result (worker shutdown): children are
  // killed and reaped. Safe to call twice.
  virtual void Shutdown() {}
};

// Builds the payload a JOB message describes; results go to `sink`, which
// must outlive the payload. An unknown kind or bad arguments give an error.
Status MakePayload(const JobSpec& job, ResultSink* sink, std::unique_ptr<Payload>* out);

}  // namespace fanmap

#endif  // FANMAP_WORKER_PAYLOAD_H_
