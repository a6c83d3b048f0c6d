// The coordinator: reads items, dispatches them to workers with credit,
// reorders results and writes one record per item.
//
// One thread, one poll loop over the task socket, a signalfd and the input.
// Returns the process exit status (common/exit_status.h); usage and start-up
// errors are printed on stderr and give kExitUsage.
#ifndef FANMAP_COORDINATOR_COORDINATOR_H_
#define FANMAP_COORDINATOR_COORDINATOR_H_

#include "coordinator/config.h"

namespace fanmap {

int RunCoordinator(const Config& config);

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_COORDINATOR_H_
