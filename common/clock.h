// Monotonic time in the units the poll loops use.
#ifndef FANMAP_COMMON_CLOCK_H_
#define FANMAP_COMMON_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace fanmap {

using Clock = std::chrono::steady_clock;

inline int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

inline int64_t NowMillis() { return NowMicros() / 1000; }

}  // namespace fanmap

#endif  // FANMAP_COMMON_CLOCK_H_
