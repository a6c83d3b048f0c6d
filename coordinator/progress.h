// Progress: a one-line progress display on stderr, redrawn at most ten times
// a second: done/total, percent, rate, ETA, failures and workers.
#ifndef FANMAP_COORDINATOR_PROGRESS_H_
#define FANMAP_COORDINATOR_PROGRESS_H_

#include <cstdint>
#include <string>

namespace fanmap {

struct ProgressCounts {
  uint64_t done = 0;
  uint64_t total = 0;  // 0 = unknown
  uint64_t failed = 0;
  size_t workers = 0;
  size_t hosts = 0;
  size_t slots = 0;
};

class Progress {
 public:
  // A disabled Progress draws nothing.
  Progress(bool enabled, int fd);

  // Redraws if enough time passed since the last draw.
  void Update(const ProgressCounts& counts);
  // Erases the drawn line, so that a log line can take its place; the next
  // Update() draws it again.
  void Clear();
  // Draws the final state and ends the line.
  void Finish(const ProgressCounts& counts);

  // The line shown for `counts` after `elapsed_s` seconds (exposed for tests).
  static std::string Render(const ProgressCounts& counts, double elapsed_s);

 private:
  void Draw(const ProgressCounts& counts);

  bool enabled_;
  int fd_;
  int64_t start_us_;
  int64_t last_draw_us_ = 0;
  bool drawn_ = false;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_PROGRESS_H_
