#include "coordinator/progress.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common/clock.h"

namespace fanmap {
namespace {

constexpr int64_t kRedrawMicros = 100000;
constexpr size_t kBarWidth = 24;
constexpr size_t kMinBarWidth = 8;
constexpr size_t kDefaultColumns = 80;
constexpr size_t kMaxColumns = 10000;

std::string Duration(double seconds) {
  // Also catches NaN and infinity, which a cast to long would make undefined.
  if (!(seconds < 9999.0 * 3600)) return ">9999h";
  long s = seconds > 0 ? static_cast<long>(seconds + 0.5) : 0;
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

std::string Uint(uint64_t v) { return std::to_string(v); }

std::string Bar(double frac, size_t width) {
  size_t filled = static_cast<size_t>(frac * width);
  if (filled > width) filled = width;
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

// One field of the line, in display order; the lowest priority goes first.
struct Field {
  std::string text;
  int priority;
};

// Priorities; the count (done/total) is never dropped, only shortened.
constexpr int kSlotsPriority = 10;
constexpr int kThrottledPriority = 20;
constexpr int kTokensPriority = 60;
constexpr int kBarPriority = 30;
constexpr int kNoFailuresPriority = 40;
constexpr int kWorkersPriority = 50;
constexpr int kTimePriority = 70;
constexpr int kFailuresPriority = 75;
constexpr int kPercentPriority = 80;
constexpr int kRatePriority = 90;
constexpr int kCountPriority = 1000;

size_t Length(const std::vector<Field>& fields) {
  size_t n = 0;
  for (const Field& f : fields) n += f.text.size() + 1;
  return n == 0 ? 0 : n - 1;
}

bool IsDevTty(const struct stat& st) {
  return S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 0;
}

bool SameOutput(int a, int b) {
  struct stat sa, sb;
  if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0) return false;
  if (S_ISCHR(sa.st_mode) && S_ISCHR(sb.st_mode)) {
    if (sa.st_rdev == sb.st_rdev) return true;
    // /dev/tty is whichever terminal controls us, likely the other one; an
    // unneeded erase costs one redraw, a missing one garbles a record.
    return (IsDevTty(sa) && isatty(b)) || (IsDevTty(sb) && isatty(a));
  }
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    // A display is not worth blocking or failing for: drop the rest.
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

std::string FormatProgressLine(const ProgressCounts& c, double elapsed_s, size_t columns) {
  if (columns < 2) return "";
  const size_t max = columns - 1;
  double rate = elapsed_s > 0 ? c.done / elapsed_s : 0;
  char buf[64];

  std::vector<Field> fields;
  size_t bar_index = SIZE_MAX;
  double frac = 0;
  std::string total_part;  // what the count loses first: "/total" or " done"
  if (c.total > 0) {
    frac = c.done >= c.total ? 1.0 : static_cast<double>(c.done) / c.total;
    bar_index = fields.size();
    fields.push_back({Bar(frac, kBarWidth), kBarPriority});
    total_part = "/" + Uint(c.total);
  } else {
    total_part = " done";
  }
  size_t count_index = fields.size();
  fields.push_back({Uint(c.done) + total_part, kCountPriority});
  if (c.total > 0) {
    std::snprintf(buf, sizeof buf, "%5.1f%%", frac * 100);
    fields.push_back({buf, kPercentPriority});
  }
  // %.0f of a huge rate would print hundreds of digits.
  std::snprintf(buf, sizeof buf, rate < 1e15 ? "%.0f/s" : "%.2e/s", rate);
  fields.push_back({buf, kRatePriority});
  if (c.total > 0 && rate > 0 && c.done < c.total) {
    fields.push_back({"ETA " + Duration((c.total - c.done) / rate), kTimePriority});
  } else {
    fields.push_back({"in " + Duration(elapsed_s), kTimePriority});
  }
  if (c.chat) {
    double tokens_rate = elapsed_s > 0 ? c.tokens / elapsed_s : 0;
    std::snprintf(buf, sizeof buf, tokens_rate < 1e15 ? "%.0f tok/s" : "%.2e tok/s", tokens_rate);
    fields.push_back({buf, kTokensPriority});
    fields.push_back({"429s " + Uint(c.throttled), kThrottledPriority});
  }
  fields.push_back(
      {"failed " + Uint(c.failed), c.failed > 0 ? kFailuresPriority : kNoFailuresPriority});
  fields.push_back({"workers " + Uint(c.workers), kWorkersPriority});
  if (c.hosts > 1 || c.slots > c.workers) {
    fields.push_back(
        {"(" + Uint(c.slots) + " slots on " + Uint(c.hosts) + (c.hosts == 1 ? " host)" : " hosts)"),
         kSlotsPriority});
  }

  size_t bar_width = kBarWidth;
  while (Length(fields) > max) {
    size_t lowest = 0;
    for (size_t i = 1; i < fields.size(); ++i) {
      if (fields[i].priority < fields[lowest].priority) lowest = i;
    }
    if (fields[lowest].priority == kCountPriority) break;
    if (lowest == bar_index && bar_width > kMinBarWidth) {
      // A shorter bar says nearly as much as a full one: shrink it first.
      size_t excess = Length(fields) - max;
      bar_width = bar_width - kMinBarWidth > excess ? bar_width - excess : kMinBarWidth;
      fields[lowest].text = Bar(frac, bar_width);
      continue;
    }
    fields.erase(fields.begin() + lowest);
    if (lowest < count_index) --count_index;
    if (lowest == bar_index) bar_index = SIZE_MAX;
  }
  std::string& count = fields[count_index].text;
  if (Length(fields) > max) count.resize(count.size() - total_part.size());

  std::string line;
  for (const Field& f : fields) {
    if (!line.empty()) line += ' ';
    line += f.text;
  }
  if (line.size() > max) line.resize(max);
  return line;
}

size_t TerminalColumns(int fd) {
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* env = std::getenv("COLUMNS")) {
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(env, &end, 10);
    if (errno == 0 && end != env && *end == '\0' && env[0] != '-' && v >= 1 && v <= kMaxColumns)
      return v;
  }
  return kDefaultColumns;
}

Progress::Progress(bool enabled, int fd) : enabled_(enabled), fd_(fd), start_us_(NowMicros()) {}

void Progress::set_shares_terminal_with(int records_fd) {
  shares_terminal_ = SameOutput(fd_, records_fd);
}

void Progress::Draw(const ProgressCounts& counts, int64_t now_us) {
  last_draw_us_ = now_us;
  redraw_now_ = false;
  // Asked at each draw, so the line follows a resized window (SIGWINCH)
  // without a signal handler; draws are few.
  size_t columns = columns_ > 0 ? columns_ : TerminalColumns(fd_);
  // "\r" and "erase to end of line" keep redraws on one terminal line; the
  // line is shorter than the terminal, so it never wraps onto a second.
  WriteAll(fd_, "\r" + FormatProgressLine(counts, (now_us - start_us_) / 1e6, columns) + "\x1b[K");
  shown_ = true;
}

void Progress::Update(const ProgressCounts& counts) { Update(counts, NowMicros()); }

void Progress::Update(const ProgressCounts& counts, int64_t now_us) {
  if (!enabled_) return;
  if (!redraw_now_ && now_us - last_draw_us_ < kRedrawMicros) return;
  Draw(counts, now_us);
}

void Progress::BeforeOutput() {
  if (shares_terminal_) Clear();
}

void Progress::Clear() {
  if (!enabled_ || !shown_) return;
  WriteAll(fd_, "\r\x1b[K");
  shown_ = false;
  redraw_now_ = true;
}

void Progress::Finish(const ProgressCounts& counts) { Finish(counts, NowMicros()); }

void Progress::Finish(const ProgressCounts& counts, int64_t now_us) {
  if (!enabled_) return;
  Draw(counts, now_us);
  WriteAll(fd_, "\n");
  shown_ = false;
}

}  // namespace fanmap
