// When the worker sends the results it has ready.
//
// Cheap tasks (a co-process answering a line every few microseconds) finish
// one or two per wake-up of the worker's loop. Sent at once, each would
// travel in a RESULTS frame of its own, and the coordinator would answer
// each frame with a TASKS frame of one task: a million frames each way for a
// million items, and more CPU in ZeroMQ's threads than in the tasks. So
// while the tasks take less than kHoldBelowTaskMicros on average and more
// are running or queued, results wait up to kResultHoldMicros for others to
// share their frame. The coordinator's credit covers 10 ms of such tasks
// ahead (coordinator/credit.h), so the wait never starves the worker. Slower
// tasks (HTTP requests, commands) are sent as soon as they finish, and so is
// the last result before the worker goes idle.
#ifndef FANMAP_WORKER_RESULT_HOLD_H_
#define FANMAP_WORKER_RESULT_HOLD_H_

#include <cstdint>

namespace fanmap {

constexpr double kHoldBelowTaskMicros = 1000;
constexpr int64_t kResultHoldMicros = 1000;

// How much longer ready results may wait, in microseconds (0: send them
// now). `mean_task_us`: the mean time of recent tasks (negative: none yet);
// `idle`: no task is running or queued; `waited_us`: how long the oldest
// ready result has waited.
int64_t ResultHoldMicros(double mean_task_us, bool idle, int64_t waited_us);

}  // namespace fanmap

#endif  // FANMAP_WORKER_RESULT_HOLD_H_
