// PipePayload: streams items through long-lived co-processes
// ("fanmap --pipe CMD").
//
// Each co-process runs `/bin/sh -c CMD` in its own process group and is
// started when an item first needs it. An item is written to its stdin as one
// line (the item and "\n"; JSON-lines items are single-line JSON text); each
// line the co-process writes to stdout is the answer to its OLDEST unanswered
// item, without the "\n" (and without one trailing "\r"; a last line without
// "\n" counts once the co-process exits 0 or closes its stdout): by default the
// item's result text, a success; with Options::answers kJson, one JSON object
// that says whether the item succeeded (worker/pipe_answer.h). Its stderr is read
// continuously, so a chatty co-process never blocks on it; the last 2000
// bytes go into error results as "stderr".
//
// Windows. Items are written ahead of the answers, up to a window per
// co-process, so that the co-process never waits for a round trip through the
// worker loop. A fast co-process's answers are read at most every
// millisecond (PipeReadPaced below), so that it does not wake the worker
// for each line. The window follows the measured time per answer: deep (up to
// Options::max_window) when answers take microseconds, one item when they take
// milliseconds or more, so that an item waits behind others for about
// Options::queue_budget at most (and a task deadline still means something).
// A command that answers at end of input gets PipeFlushPolicy::batch() items
// instead when that is more: a batch that grows with each prompt flush.
// A result's elapsed_us is the co-process's time per answer when it was
// answered: what the item cost, not how long it queued behind its window.
// Three spans are left out, as they are not the items' cost: the silence
// before a close (it may have been idleness: answers that follow a close
// share the time since the close), the flush and exit that follow a prompt
// close, and a co-process's start-up. Answers that paid for the last two are
// taken to cost no more than the least time per answer seen so far (the
// first ever cannot be helped), and the window follows only answers written
// while items keep coming in. A slow command that buffers its output thus
// looks cheaper to the coordinator than it is.
//
// Slots. running() is not the number of unanswered items but the number of
// slots in use: unanswered items divided by the window, rounded down. The
// worker loop starts items while running() < slots, so with S slots the
// payload holds up to S windows, spread over at most S co-processes (a new
// one starts only when every existing one holds a full window). The default
// single slot gives one co-process with a deep window, the fastest way to
// stream cheap items; with slow items (window 1), S slots are S co-processes
// working in parallel. outstanding() is the number of unanswered items.
//
// What the command must do: answer each input line with exactly one output
// line, in order. Flushing each answer is best (answers then flow as they are
// made) but not required. A command whose stdout is block-buffered (sed, awk,
// tr, Python without -u, anything using C stdio on a pipe) keeps its last
// answers in a buffer while it waits for more input, and the coordinator
// never says that no more items will come. So when a co-process holds items,
// has read all of its input and has written nothing (on stdout or stderr)
// for a quiet period, its stdin is closed: it sees end-of-input, flushes and
// exits, and its answers go to the items it held. Later items go to a fresh
// co-process, including those that arrive while it finishes.
// PipeFlushPolicy below decides when, and learns from what follows; the
// quiet period is never shorter than the command's start-up time, as last
// measured, up to kMaxStartupQuietMicros (PipePayload::QuietMicros). Anything
// meant for humans belongs on stderr: a stray stdout line shifts every later
// answer to the wrong item, and so does a summary line at end-of-input.
//
// Failures:
//   - An item containing "\n" or "\r" is an error result and is not sent
//     (Python's text stdin would split it into two lines).
//   - A co-process that exits, is killed or closes its stdout: the answers it
//     wrote first still count; every item it still held becomes a retryable
//     error ("co-process exited with code 1 while holding this item", "...
//     killed by signal 9 ...", "co-process exited with code 0 with 3 item(s)
//     unanswered", with " after its input was closed" when the payload had
//     closed it; "co-process closed its stdout ..." if it is still alive
//     0.1 s after that, and is then killed) with "exit_code" or "signal" and
//     "stderr". The next items go to a fresh co-process. One whose input was
//     closed and that has answered all it held is killed if it has not
//     exited 0.1 s later (it left something running on its stdout).
//   - Cancel(index) kills the co-process holding `index`; `index` gets no
//     result (the loop reports the timeout), the others it held become
//     retryable errors.
//   - A co-process whose input was closed (for silence) and that exits 0
//     with fewer answers than items dropped lines (grep -v, sed d): which
//     ones cannot be known, so none of the answers it wrote after the close
//     goes to an item (they wait for one per item held, or for its exit).
//     Every item it held gets the non-retryable error "co-process wrote fewer
//     lines than it was given items (...)", and so does every later item, as
//     for too many lines below. Answers read before the close were matched
//     as they came: a command that drops a line while its input is open is
//     found out only if its exit leaves items unanswered.
//   - A co-process that writes more lines than it was given items breaks the
//     protocol: it is killed and the items it held get the non-retryable error
//     "co-process wrote more lines than it was given items" (with "(the extra
//     lines came after its input was closed)" if they did: a summary printed
//     at end of input). So does every later item: answers can no longer be
//     matched to items, and a fresh copy of the same command would do the
//     same.
//   - An answer longer than 64 MiB is an error for its item; the co-process is
//     killed and its other items become retryable errors.
//
// The process must ignore SIGPIPE (the worker does): a co-process may close
// its stdin while items are being written to it. Nothing here waits for a
// co-process except Shutdown() (a grace period) and the killing of one, which
// lasts as long as the kernel takes to end it; the quiet period is a poll
// timeout.
//
// Not thread-safe; driven by the worker's single poll loop.
#ifndef FANMAP_WORKER_PAYLOAD_PIPE_H_
#define FANMAP_WORKER_PAYLOAD_PIPE_H_

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "worker/payload.h"
#include "worker/pipe_answer.h"

namespace fanmap {

// PipeFlushPolicy: when PipePayload closes the stdin of a silent co-process,
// and what it learns from what follows. Pure decisions on durations in
// microseconds; the payload measures them and acts.
//
// A co-process that holds items, has read all of its input and writes
// nothing is either waiting for more input with its answers in a buffer, or
// working on a slow item; from outside the two look the same. Closing its
// stdin is right for both: a buffering one flushes and exits at once, a slow
// one finishes its items and exits, and either way every answer comes. Only
// the cost differs: a co-process started afresh for the next items. So the
// quiet period before a close adapts:
//   - It starts at the minimum (Options::quiet_period, kQuietPeriod by
//     default).
//   - Prompt flush: the first output (or the exit) came less than half the
//     minimum after the close (or less than half the silence before the
//     close, when the policy's quiet period was longer). The co-process was waiting with its
//     answers buffered: the command answers at end of input. The quiet period halves (not below the
//     minimum). If it was the minimum, batch() grows to kBatchGrowth times the items the co-process
//     held, so that a buffering filter gets big batches after a few flushes (and, with enough items
//     ahead of it, fills its buffer and answers as it goes); after a longer wait the items may have
//     cost that long, and the batch stays.
//   - Late flush: the co-process was still working. The next quiet period is
//     at least twice the silence it needed (before and after the close), up
//     to kMaxQuietPeriod, and batch() halves unless the answer came within
//     kSlowExitQuiets minimum quiet periods (a slow exit, not work). A co-process that takes 2 s
//     per item and flushes is closed once after kQuietPeriod, answers 2 s
//     later, and is left alone from then on.
//   - Line by line: a co-process that has answered everything it held with
//     its stdin open waits at least kLineByLineQuietPeriod, and the command
//     is no longer taken for one that answers at end of input (batch() is 0
//     until the next prompt flush).
// Not thread-safe.
class PipeFlushPolicy {
 public:
  // The default minimum quiet period. Long enough that a co-process that
  // answers as it goes is not closed because the scheduler kept it off the
  // CPU for a moment (a time slice is a few ms; on a busy machine, several
  // runnable processes per core stretch that to tens of ms), and short
  // enough that the last items of a buffering filter wait little: each batch
  // such a filter cannot answer before its input ends costs one quiet period.
  static constexpr std::chrono::milliseconds kQuietPeriod{30};
  // The least quiet period of a co-process that has answered line by line:
  // its silence means work, not a full buffer.
  static constexpr std::chrono::milliseconds kLineByLineQuietPeriod{250};
  // The longest: slower items get a fresh co-process each (correct, slower).
  static constexpr std::chrono::seconds kMaxQuietPeriod{60};
  // A prompt flush at the minimum quiet period grows the batch to this many
  // times the items the co-process held. Each growth costs a restart of the
  // command (tens of ms for Python), but a prompt flush only bounds the
  // items' cost by the quiet period (which waits out the command's start-up,
  // up to a second): a steeper growth would give a buffering command of
  // slow items long batches (a --timeout counts from an item's start) and
  // fewer co-processes than --slots.
  static constexpr size_t kBatchGrowth = 4;
  // A late flush that came within this many minimum quiet periods of the
  // close is a slow exit (a busy machine), not work: the batch stays.
  static constexpr int64_t kSlowExitQuiets = 2;

  // `min_quiet`: the first and least quiet period. `max_batch`: the most
  // items batch() asks for.
  PipeFlushPolicy(std::chrono::microseconds min_quiet, size_t max_batch);

  // How long a co-process that holds items and has read all of its input
  // may write nothing before its stdin is closed. `line_by_line`: it has
  // answered everything it held, with its stdin open, at least once.
  int64_t QuietMicros(bool line_by_line) const;
  // A co-process that held `batch` items had its stdin closed after
  // `quiet_us` of silence; its first output, or its exit, came `after_us`
  // after the close. Returns true if that was prompt: within half the
  // minimum quiet period, or within half the silence before the close (the
  // close, not the end of its work, is what made it answer). Judged against
  // the minimum alone, a busy machine's slow exits (a block-buffered python3
  // filter took 20-40 ms to flush and exit while both CPUs were busy) were
  // late each time: the quiet period doubled each time up to kMaxQuietPeriod
  // and the batch halved to one item, and 100,000 lines that take 2 s once
  // took ten minutes.
  // `own_quiet_us`: the policy's own quiet period at the close, without the
  // line-by-line floor (QuietMicros(false)); -1: the one in force now.
  bool OnFlushed(int64_t quiet_us, int64_t after_us, size_t batch, int64_t own_quiet_us = -1);
  // A co-process answered everything it held with its stdin open.
  void OnLineByLine() { answers_at_end_ = false; }
  // Items a co-process may hold when the command has shown that it answers
  // at end of input (its last close was prompt); 0 otherwise.
  size_t batch() const { return answers_at_end_ ? batch_ : 0; }

 private:
  const int64_t min_quiet_us_;
  const size_t max_batch_;
  int64_t quiet_us_;
  size_t batch_ = 0;
  bool answers_at_end_ = false;
};

// The most a silent co-process waits for its start-up time's sake (see
// PipePayload::QuietMicros): every run's last batch pays the wait.
constexpr int64_t kMaxStartupQuietMicros = 1000000;
// How precisely a co-process's start-up is timed: its stdin is looked at
// every kStartupProbeMicros, or every kStartupProbeShare-th of the time since
// it was spawned if longer, until it has read some of what it was given.
constexpr int64_t kStartupProbeMicros = 2000;
constexpr int64_t kStartupProbeShare = 20;
inline int64_t StartupProbeMicros(int64_t since_spawn_us) {
  return std::max(kStartupProbeMicros, since_spawn_us / kStartupProbeShare);
}
// A co-process that answers in microseconds and flushes each answer
// (print(..., flush=True)) wakes the worker for every line; the worker then
// spends more time in poll() than the command in its work. One that answers
// faster than kPipePacedBelowMicros on average (`answer_micros`; 0: not
// measured) is read at most every kPipeReadPaceMicros (`since_read_us`: since
// it was last read), a few hundred answers at a time. Its window
// (Options::queue_budget, 2 ms) holds more work than that, so it does not
// wait for input meanwhile. Not paced: a co-process that owes nothing (a
// line from it then is an error, seen at once), one whose input is closed,
// and one whose last read took a buffer-full (PipeReadFull). A command that
// writes its answers a buffer at a time (sed, awk, Python without -u) wakes
// the worker once per buffer, not per line, so reading it late saves
// nothing; it only holds the buffer's items back, and with them the input
// that would fill the next buffer. While its stdout is polled, a read of
// kPipeFullReadBytes or more is such a buffer: a stdio buffer's worth (C
// stdio flushes 4 KiB at a time on a pipe, Python 8 KiB). A paced read (its
// stdout was not polled) takes what a whole pace gathered, a few KiB from a
// command that flushes short lines, and counts as full only at a quarter of
// its pipe's capacity, kPipePacedFullReadBytes at most (the pipe, not the
// command, would then set the pace: a co-process whose pipe is small, as
// past the user's pipe-user-pages-soft, fills it within a pace). Were it
// judged like a polled read, every other read of such a command would be
// unpaced and the worker would wake for the next line written (two wakes a
// millisecond instead of one).
constexpr size_t kPipeFullReadBytes = 4 << 10;
constexpr size_t kPipePacedFullReadBytes = 16 << 10;
constexpr double kPipePacedBelowMicros = 50;
constexpr int64_t kPipeReadPaceMicros = 1000;
bool PipeReadPaced(double answer_micros, int64_t since_read_us);
// Whether a read of `bytes` from a co-process's stdout took a buffer-full
// (see above): `paced` says its stdout was not polled; `pipe_bytes` is the
// capacity of that pipe (used only when paced).
bool PipeReadFull(size_t bytes, bool paced, size_t pipe_bytes);
// The time per answer that sizes the window (see Windows), after answers that
// took `each` microseconds each (the time since the previous read, shared)
// were read. It follows a moving average. But a paced co-process that
// answered everything it held (`drained`) sat waiting for input part of that
// time: `each` is then only an upper bound, and the window it gives was too
// small. Averaged in, it keeps the window just as small: the co-process
// drains it between two paced reads, answers look slower than they are, and
// the window stays where it was (a Python filter that flushes each line ran
// at half its speed, idle half the time). So a drain at least halves the
// estimate, and the window grows until the co-process holds more than it can
// answer between two reads.
double NextAnswerMicros(double answer_micros, double each, bool drained);

class PipePayload : public Payload {
 public:
  struct Options {
    // Bounds of the window per co-process. Equal bounds fix it (tests). The
    // coordinator sends a worker at most 2048 tasks beyond its slots.
    size_t min_window = 1;
    size_t max_window = 4096;
    // How long an item may wait behind the others of its window.
    std::chrono::microseconds queue_budget{2000};
    // The first and least quiet period (PipeFlushPolicy).
    std::chrono::microseconds quiet_period{PipeFlushPolicy::kQuietPeriod};
    // How answer lines are read (worker/pipe_answer.h); each co-process
    // finds its name in its environment (kPipeAnswersEnv).
    PipeAnswerFormat answers = PipeAnswerFormat::kLines;
  };

  // `command` is run by /bin/sh -c; nothing starts before the first Start().
  // Results go to `sink`, which must outlive the payload.
  PipePayload(std::string command, ResultSink* sink, Options options);
  PipePayload(const PipePayload&) = delete;
  PipePayload& operator=(const PipePayload&) = delete;
  // Kills and reaps every co-process.
  ~PipePayload() override;

  void Start(Task task) override;
  void AddPollItems(std::vector<zmq_pollitem_t>* items, long* timeout_ms) override;
  void Advance(const zmq_pollitem_t* items, size_t count) override;
  void Cancel(uint64_t index) override;
  // Slots in use: outstanding() / window(), rounded down (see above).
  size_t running() const override;
  // Closes the co-processes' stdin, gives them a moment to exit, then kills
  // and reaps them. Items still held get no result.
  void Shutdown() override;

  // Items started and not yet in the sink.
  size_t outstanding() const { return outstanding_; }
  // Co-processes alive now.
  size_t co_processes() const { return co_processes_.size(); }
  // Items a co-process may hold now: what the time per answer allows (see
  // Windows), or more for a command that answers at end of input
  // (PipeFlushPolicy::batch()).
  size_t window() const;
  // Co-processes whose stdin was closed for silence and that have not ended.
  size_t flushing() const;
  // The flush policy's quiet period for a command that answers at the end
  // of its input (PipeFlushPolicy::QuietMicros), without the wait for the
  // command's start-up (QuietMicros).
  int64_t flush_quiet_micros() const { return policy_.QuietMicros(false); }

 private:
  struct CoProcess;
  // Which co-process a polled item belongs to, recorded by AddPollItems().
  struct PollRef {
    CoProcess* co;
    bool is_pidfd;
  };

  // The least loaded co-process that accepts items and holds less than a
  // window, or nullptr.
  CoProcess* Pick();
  Status Spawn(CoProcess** out);
  // True if `co`'s stdout is not to be polled now (PipeReadPaced); it is
  // read when kPipeReadPaceMicros have passed since it last was.
  bool Paced(const CoProcess& co, int64_t now) const;
  void Flush(CoProcess* co);
  void Step(CoProcess* co);
  // Turns complete stdout lines into results. Returns false if that ended
  // the co-process (protocol violation, oversized answer). After its input
  // was closed, answers wait for one per item held, unless `at_end` (End).
  bool TakeAnswers(CoProcess* co, bool at_end = false);
  // The co-process exited or closed its stdout.
  void End(CoProcess* co, bool exited);
  // Kills the co-process and fails every item it holds with `error`.
  void Abandon(CoProcess* co, const std::string& error, bool retryable);
  void FailHeld(CoProcess* co, const std::string& error, bool retryable, Result::Extra extra);
  void RemoveDone();
  // True if `co` holds items, has read all of its input and has been silent
  // for its quiet period. Its silence restarts if it has unread input.
  bool Silent(CoProcess* co, int64_t now);
  // Closes the stdin of a silent co-process, so that it flushes and exits.
  void EndInput(CoProcess* co, int64_t now);
  // Tells the policy how the close of `co` ended: `now` is its first output
  // or its exit.
  void NoteFlush(CoProcess* co, int64_t now);
  // `co` was given input and has neither read any of it nor answered yet:
  // it is looked at every StartupProbeMicros() meanwhile.
  bool Starting(const CoProcess& co) const;
  // `co` is seen, at `now`, to have read input or to answer: the first
  // time, the command's start-up time is taken from it.
  void NoteStarted(CoProcess* co, int64_t now);
  // How long `co` may be silent before its stdin is closed: the policy's
  // quiet period, but no less than the command's start-up time (up to
  // kMaxStartupQuietMicros). Closing it costs a fresh co-process's start-up,
  // so waiting that long first loses at most twice what the better choice
  // would (rent or buy). It matters with several workers: one blocked while
  // the run's ordering window waits for another worker's restart must not
  // close its own co-process meanwhile, or the two restart in turn.
  int64_t QuietMicros(const CoProcess& co) const;

  const std::string command_;
  ResultSink* const sink_;
  const Options options_;
  std::vector<std::unique_ptr<CoProcess>> co_processes_;
  std::vector<PollRef> poll_refs_;
  std::vector<CoProcess*> touched_;  // scratch for Advance()
  size_t outstanding_ = 0;
  double answer_micros_ = 0;  // mean time per answer; 0 until measured
  double least_micros_ = 0;   // least time per answer seen, after a close too
  int64_t startup_us_ = 0;    // the last co-process's start-up time, measured
  PipeFlushPolicy policy_;
  std::string broken_;  // set once the protocol was broken: fails every item
};

// The payload for a "pipe" job (already validated, see ValidateJob): its
// command, and the answer format its options name; other options default.
std::unique_ptr<Payload> MakePipePayload(const JobSpec& job, ResultSink* sink);

}  // namespace fanmap

#endif  // FANMAP_WORKER_PAYLOAD_PIPE_H_
