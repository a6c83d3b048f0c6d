#include "worker/result_hold.h"

namespace fanmap {

int64_t ResultHoldMicros(double mean_task_us, bool idle, int64_t waited_us) {
  if (idle || mean_task_us < 0 || mean_task_us >= kHoldBelowTaskMicros) return 0;
  return waited_us >= kResultHoldMicros ? 0 : kResultHoldMicros - waited_us;
}

}  // namespace fanmap
