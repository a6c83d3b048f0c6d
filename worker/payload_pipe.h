// PipePayload: streams items through long-lived co-processes
// ("fanmap --pipe CMD").
//
// Each co-process runs `/bin/sh -c CMD` in its own process group and is
// started when an item first needs it. An item is written to its stdin as one
// line (the item and "\n"; JSON-lines items are single-line JSON text); each
// line the co-process writes to stdout is the answer to its OLDEST unanswered
// item, without the "\n" (and without one trailing "\r"). Its stderr is read
// continuously, so a chatty co-process never blocks on it; the last 2000
// bytes go into error results as "stderr".
//
// Windows. Items are written ahead of the answers, up to a window per
// co-process, so that the co-process never waits for a round trip through the
// worker loop. The window follows the measured time per answer: deep (up to
// Options::max_window) when answers take microseconds, one item when they take
// milliseconds or more, so that an item waits behind others for about
// Options::queue_budget at most (and a task deadline still means something).
// A result's elapsed_us is the co-process's time per answer when it was
// answered: what the item cost, not how long it queued behind its window.
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
// line, in order, and flush its stdout after each answer (or at least before
// it blocks reading more input). A command whose stdout is block-buffered
// (Python without -u or flush=True, C stdio writing to a pipe) keeps answers
// in its buffer while it waits for items that the payload writes only once
// those answers arrive: both wait until the task deadline (without one,
// forever). Anything meant for humans belongs on stderr: a stray stdout line
// shifts every later answer to the wrong item.
//
// Failures:
//   - An item containing "\n" or "\r" is an error result and is not sent
//     (Python's text stdin would split it into two lines).
//   - A co-process that exits, is killed or closes its stdout: the answers it
//     wrote first still count; every item it still held becomes a retryable
//     error ("co-process exited with code 1 while holding this item", "...
//     killed by signal 9 ...", "co-process exited with code 0 with 3 item(s)
//     unanswered"; "co-process closed its stdout ..." if it is still alive
//     0.1 s after that, and is then killed) with "exit_code" or "signal" and
//     "stderr". The next items go to a fresh co-process.
//   - Cancel(index) kills the co-process holding `index`; `index` gets no
//     result (the loop reports the timeout), the others it held become
//     retryable errors.
//   - A co-process that writes more lines than it was given items breaks the
//     protocol: it is killed and the items it held get the non-retryable error
//     "co-process wrote more lines than it was given items". So does every
//     later item: answers can no longer be matched to items, and a fresh copy
//     of the same command would do the same.
//   - An answer longer than 64 MiB is an error for its item; the co-process is
//     killed and its other items become retryable errors.
//
// The process must ignore SIGPIPE (the worker does): a co-process may close
// its stdin while items are being written to it. Nothing here waits for a
// co-process except Shutdown() (a grace period) and the killing of one, which
// lasts as long as the kernel takes to end it.
//
// Not thread-safe; driven by the worker's single poll loop.
#ifndef FANMAP_WORKER_PAYLOAD_PIPE_H_
#define FANMAP_WORKER_PAYLOAD_PIPE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "worker/payload.h"

namespace fanmap {

class PipePayload : public Payload {
 public:
  struct Options {
    // Bounds of the window per co-process. Equal bounds fix it (tests).
    size_t min_window = 1;
    size_t max_window = 1024;
    // How long an item may wait behind the others of its window.
    std::chrono::microseconds queue_budget{2000};
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
  // Items a co-process may hold now.
  size_t window() const;

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
  void Flush(CoProcess* co);
  void Step(CoProcess* co);
  // Turns complete stdout lines into results. Returns false if that ended
  // the co-process (protocol violation, oversized answer).
  bool TakeAnswers(CoProcess* co);
  // The co-process exited or closed its stdout.
  void End(CoProcess* co, bool exited);
  // Kills the co-process and fails every item it holds with `error`.
  void Abandon(CoProcess* co, const std::string& error, bool retryable);
  void FailHeld(CoProcess* co, const std::string& error, bool retryable, Result::Extra extra);
  void RemoveDone();

  const std::string command_;
  ResultSink* const sink_;
  const Options options_;
  std::vector<std::unique_ptr<CoProcess>> co_processes_;
  std::vector<PollRef> poll_refs_;
  std::vector<CoProcess*> touched_;  // scratch for Advance()
  size_t outstanding_ = 0;
  double answer_micros_ = 0;  // mean time per answer; 0 until measured
  std::string broken_;        // set once the protocol was broken: fails every item
};

// The payload for a "pipe" job, with default options.
std::unique_ptr<Payload> MakePipePayload(std::string command, ResultSink* sink);

}  // namespace fanmap

#endif  // FANMAP_WORKER_PAYLOAD_PIPE_H_
