#include "coordinator/progress.h"

#include <unistd.h>

#include <cstdio>

#include "common/clock.h"

namespace fanmap {
namespace {

constexpr int64_t kRedrawMicros = 100000;

std::string Duration(double seconds) {
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

}  // namespace

Progress::Progress(bool enabled, int fd) : enabled_(enabled), fd_(fd), start_us_(NowMicros()) {}

std::string Progress::Render(const ProgressCounts& c, double elapsed_s) {
  double rate = elapsed_s > 0 ? c.done / elapsed_s : 0;
  char buf[256];
  std::string line;
  if (c.total > 0) {
    const int kWidth = 24;
    double frac = c.done >= c.total ? 1.0 : static_cast<double>(c.done) / c.total;
    int filled = static_cast<int>(frac * kWidth);
    line = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
    std::snprintf(buf, sizeof buf, "%llu/%llu %5.1f%% ", static_cast<unsigned long long>(c.done),
                  static_cast<unsigned long long>(c.total), frac * 100);
    line += buf;
  } else {
    std::snprintf(buf, sizeof buf, "%llu done ", static_cast<unsigned long long>(c.done));
    line += buf;
  }
  std::snprintf(buf, sizeof buf, "%.0f/s ", rate);
  line += buf;
  if (c.total > 0 && rate > 0 && c.done < c.total) {
    line += "ETA " + Duration((c.total - c.done) / rate) + " ";
  } else {
    line += "in " + Duration(elapsed_s) + " ";
  }
  std::snprintf(buf, sizeof buf, "failed %llu workers %zu",
                static_cast<unsigned long long>(c.failed), c.workers);
  line += buf;
  if (c.hosts > 1 || c.slots > c.workers) {
    std::snprintf(buf, sizeof buf, " (%zu slots on %zu host%s)", c.slots, c.hosts,
                  c.hosts == 1 ? "" : "s");
  } else {
    buf[0] = '\0';
  }
  line += buf;
  return line;
}

void Progress::Draw(const ProgressCounts& counts) {
  int64_t now = NowMicros();
  last_draw_us_ = now;
  // "\r" and "erase to end of line" keep redraws on one terminal line.
  std::string line = "\r" + Render(counts, (now - start_us_) / 1e6) + "\x1b[K";
  ssize_t ignored = write(fd_, line.data(), line.size());
  (void)ignored;
  drawn_ = true;
}

void Progress::Update(const ProgressCounts& counts) {
  if (!enabled_ || NowMicros() - last_draw_us_ < kRedrawMicros) return;
  Draw(counts);
}

void Progress::Clear() {
  if (!enabled_ || !drawn_) return;
  ssize_t ignored = write(fd_, "\r\x1b[K", 4);
  (void)ignored;
  last_draw_us_ = 0;
}

void Progress::Finish(const ProgressCounts& counts) {
  if (!enabled_) return;
  Draw(counts);
  ssize_t ignored = write(fd_, "\n", 1);
  (void)ignored;
}

}  // namespace fanmap
