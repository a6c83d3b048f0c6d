// Progress: a one-line progress display on stderr, redrawn at most ten times
// a second: done/total, percent, rate, ETA, failures and workers.
//
// The line is fitted to the terminal's width (asked of the terminal at each
// redraw, so it follows window size changes) and never wraps. When the
// records go to the same terminal, the coordinator calls BeforeOutput()
// before writing them, so that a record never lands on the progress line.
//
// Not thread-safe; the poll loop owns it.
#ifndef FANMAP_COORDINATOR_PROGRESS_H_
#define FANMAP_COORDINATOR_PROGRESS_H_

#include <cstddef>
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
  // Chat runs: LLM tokens so far and answers refused with 429.
  bool chat = false;
  uint64_t tokens = 0;
  uint64_t throttled = 0;
};

// The progress line for `counts` after `elapsed_s` seconds, for a terminal
// `columns` wide: printable ASCII (so bytes = columns), at most columns - 1
// characters so that it never wraps, empty if columns < 2. What does not fit
// goes, least important first: slots and hosts; a chat run's 429 count; the
// bar shrinks, then goes; "failed 0"; workers; a chat run's tokens/s; ETA (or
// elapsed); a non-zero failure count; percent; rate; the total. done is cut
// last.
std::string FormatProgressLine(const ProgressCounts& counts, double elapsed_s, size_t columns);

// The width of the terminal on `fd` (TIOCGWINSZ); if `fd` is no terminal,
// $COLUMNS if it is a number from 1 to 10000; else 80.
size_t TerminalColumns(int fd);

class Progress {
 public:
  // Draws on `fd`, which it does not own. A disabled Progress draws nothing.
  Progress(bool enabled, int fd);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Tells where the records go. If `records_fd` is the terminal this
  // Progress draws on (the same device, even through another open of it or
  // /dev/tty) or the same pipe or file (e.g. 2>&1 with --progress=always),
  // BeforeOutput() erases the line; otherwise BeforeOutput() does nothing.
  // Decided once, by fstat(2), when called; nothing shared until then.
  void set_shares_terminal_with(int records_fd);
  bool shares_terminal() const { return shares_terminal_; }

  // Draws for a terminal `columns` wide instead of asking the terminal at
  // each redraw; 0 (the default) asks again. For tests.
  void set_columns(size_t columns) { columns_ = columns; }

  // Redraws if 100 ms passed since the last draw, or if the line was erased
  // since (Clear(), BeforeOutput()). `now_us` is NowMicros().
  void Update(const ProgressCounts& counts);
  void Update(const ProgressCounts& counts, int64_t now_us);

  // Call before writing records: if the line is shown and the records go to
  // the same terminal, erases it ("\r\x1b[K"); the next Update() draws it
  // again, below them. Cheap when there is nothing to do, so it may be
  // called before every write that might reach the terminal.
  void BeforeOutput();

  // Erases the shown line, so that a log line on stderr can take its place;
  // the next Update() draws it again.
  void Clear();

  // Draws the final state and ends the line, which stays.
  void Finish(const ProgressCounts& counts);
  void Finish(const ProgressCounts& counts, int64_t now_us);

  // Whether the line is on the terminal now (drawn, not erased or finished).
  bool shown() const { return shown_; }

 private:
  void Draw(const ProgressCounts& counts, int64_t now_us);

  bool enabled_;
  int fd_;
  int64_t start_us_;
  int64_t last_draw_us_ = 0;
  bool redraw_now_ = true;  // nothing drawn yet, or the line was erased
  bool shown_ = false;
  bool shares_terminal_ = false;
  size_t columns_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_PROGRESS_H_
