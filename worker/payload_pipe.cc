#include "worker/payload_pipe.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <string_view>
#include <utility>

#include "common/clock.h"
#include "common/job_keys.h"
#include "worker/child_process.h"

namespace fanmap {
namespace {

// Answers travel in one frame each; past this the co-process is stopped
// instead of letting one line exhaust the worker's memory.
constexpr size_t kMaxAnswerBytes = 64 << 20;
// At shutdown, co-processes get this long after end-of-input to exit.
constexpr std::chrono::milliseconds kShutdownGrace(200);
// The kernel closes a dying process's pipes a moment before its exit shows
// on the pidfd. A co-process whose stdout closed gets this long to show its
// exit (and so its exit code) before it is taken for one that merely closed
// stdout, and killed. So does one whose stdin was closed and that has
// answered everything it held.
constexpr int64_t kExitAfterEofMicros = 100000;
// Written input is dropped from the front of the buffer in steps this large,
// so that a co-process that reads slowly costs no quadratic copying.
constexpr size_t kCompactBytes = 1 << 20;
constexpr char kTooManyLines[] = "co-process wrote more lines than it was given items";
constexpr char kTooFewLines[] = "co-process wrote fewer lines than it was given items";

// Complete lines in `out`, counting on from `*counted` bytes known to hold
// `*lines` of them.
size_t CountLines(const std::string& out, size_t* counted, size_t* lines) {
  while (const void* found = std::memchr(out.data() + *counted, '\n', out.size() - *counted)) {
    *counted = static_cast<size_t>(static_cast<const char*>(found) - out.data()) + 1;
    ++*lines;
  }
  *counted = out.size();
  return *lines;
}

// Bytes written to `fd` (a pipe) that its reader has not read yet; 0 if
// unknown.
int UnreadBytes(int fd) {
  int n = 0;
  return ioctl(fd, FIONREAD, &n) == 0 ? n : 0;
}

// The capacity of a co-process's stdout pipe, asked at each paced read: the
// command may change it (F_SETPIPE_SZ).
size_t PipeBytes(const ChildProcess& child) {
  constexpr size_t kDefaultPipeBytes = 64 << 10;
  int fd = child.stdout_fd();
  int bytes = fd < 0 ? -1 : fcntl(fd, F_GETPIPE_SZ);
  return bytes > 0 ? static_cast<size_t>(bytes) : kDefaultPipeBytes;
}

}  // namespace

PipeFlushPolicy::PipeFlushPolicy(std::chrono::microseconds min_quiet, size_t max_batch)
    : min_quiet_us_(std::max<int64_t>(1, min_quiet.count())),
      max_batch_(std::max<size_t>(1, max_batch)),
      quiet_us_(min_quiet_us_) {}

int64_t PipeFlushPolicy::QuietMicros(bool line_by_line) const {
  if (!line_by_line) return quiet_us_;
  return std::max<int64_t>(quiet_us_, std::chrono::microseconds(kLineByLineQuietPeriod).count());
}

bool PipeFlushPolicy::OnFlushed(int64_t quiet_us, int64_t after_us, size_t batch,
                                int64_t own_quiet_us) {
  // A process that only has to flush and exit does so in well under a
  // millisecond (a few on a busy machine); half the minimum quiet period
  // leaves room for that and still sets it apart from a slow item. After a
  // longer silence that the policy itself asked for (not the floor of a
  // co-process that answered line by line, nor a start-up wait), an answer
  // within half of it is taken as one the close brought about. An item that
  // really took between 1 and 1.5 times that silence is misjudged once: the
  // quiet period halves, and its next close is late.
  int64_t own = own_quiet_us >= 0 ? own_quiet_us : quiet_us_;
  int64_t silence = std::min(std::max<int64_t>(0, quiet_us), own);
  if (after_us < std::max(min_quiet_us_, silence) / 2) {
    // Only a batch flushed after the minimum wait shows that items are cheap:
    // after a longer one, it may have spent that long on them. Growing the
    // batch then would grow the next wait with it. (The wait in force at its
    // close: another co-process's flushes may have changed it since.)
    if (own <= min_quiet_us_) {
      batch_ = std::min(max_batch_, std::max(batch_, kBatchGrowth * std::max<size_t>(1, batch)));
    }
    quiet_us_ = std::max(min_quiet_us_, quiet_us_ / 2);
    answers_at_end_ = true;
    return true;
  }
  int64_t needed = 2 * (std::max<int64_t>(0, quiet_us) + after_us);
  int64_t most = std::chrono::microseconds(kMaxQuietPeriod).count();
  quiet_us_ = std::min(most, std::max(quiet_us_, needed));
  // A slow exit (a busy machine keeps a finished process waiting for a CPU
  // for tens of ms) is no reason to give the command fewer items; work left
  // after the close is.
  if (after_us >= kSlowExitQuiets * min_quiet_us_) {
    batch_ = std::max<size_t>(1, std::min(batch_, batch / 2));
  }
  return false;
}

struct PipePayload::CoProcess {
  struct Held {
    uint64_t index;
    uint32_t attempt;
    uint64_t end;  // offset in the input stream just past the item's "\n"
  };

  std::unique_ptr<ChildProcess> child;
  std::deque<Held> held;  // oldest first: the next answer is held.front()'s
  std::string input;      // bytes queued for stdin; input[0, input_done) are written
  size_t input_done = 0;
  uint64_t queued_bytes = 0;          // input stream offset past the last queued item
  uint64_t written_bytes = 0;         // input stream offset the co-process may have read
  int64_t read_us = 0;                // when its output was last read
  bool read_full = false;             // ... and that read took a buffer-full (PipeReadFull)
  bool stdout_paced = false;          // AddPollItems left its stdout out (Paced())
  size_t scanned = 0;                 // leading bytes of stdout_data() known to hold no "\n"
  size_t counted = 0;                 // leading bytes of stdout_data() whose lines are counted
  size_t lines = 0;                   // ... in `lines` (answers waiting, see TakeAnswers)
  int64_t busy_since_us = 0;          // since when it owes the next answer
  uint64_t answered = 0;              // lines it has answered
  bool accepting = true;              // false once its stdin or stdout is closed
  int64_t stdout_closed_us = 0;       // when its stdout reached end-of-file; 0: open
  std::optional<uint64_t> cancelled;  // an item that must get no result
  // Its silence, and the close that may end it (PipeFlushPolicy).
  int64_t quiet_since_us = 0;   // its last output, or when it last got work
  bool line_by_line = false;    // has answered all it held, with its stdin open
  int64_t closed_us = 0;        // when its stdin was closed for silence; 0: never
  int64_t quiet_used_us = 0;    // the silence that preceded the close
  int64_t policy_quiet_us = 0;  // ... and the policy's part of it (no start-up floor)
  int64_t own_quiet_us = -1;    // ... without the line-by-line floor either
  size_t batch = 0;             // items it held at the close
  bool flush_noted = false;     // the policy has heard how the close ended
  bool prompt_flush = false;    // ... and it was prompt
  int64_t drained_us = 0;       // closed, and holding nothing since; 0: not yet
  int64_t spawned_us = 0;       // when it was started
  bool started = false;         // has been seen to read input, or has answered
  // Events of the current Advance().
  bool touched = false;
  bool exited = false;
  bool done = false;
};

PipePayload::PipePayload(std::string command, ResultSink* sink, Options options)
    : command_(std::move(command)),
      sink_(sink),
      options_(options),
      policy_(options.quiet_period,
              std::max(std::max<size_t>(1, options.min_window), options.max_window)) {}

// ~ChildProcess kills and reaps whatever is left.
PipePayload::~PipePayload() = default;

size_t PipePayload::window() const {
  size_t lo = std::max<size_t>(1, options_.min_window);
  size_t hi = std::max(lo, options_.max_window);
  size_t fit = lo;
  if (answer_micros_ > 0) {
    double by_time = static_cast<double>(options_.queue_budget.count()) / answer_micros_;
    fit =
        static_cast<size_t>(std::clamp(by_time, static_cast<double>(lo), static_cast<double>(hi)));
  }
  return std::clamp(std::max(fit, policy_.batch()), lo, hi);
}

size_t PipePayload::running() const { return outstanding_ / window(); }

size_t PipePayload::flushing() const {
  size_t n = 0;
  for (const auto& co : co_processes_) n += co->closed_us != 0 && !co->done;
  return n;
}

void PipePayload::Start(Task task) {
  if (task.item.find_first_of("\n\r") != std::string::npos) {
    sink_->push_back(ErrorResult(task, "item contains a line break, which --pipe cannot send"));
    return;
  }
  if (!broken_.empty()) {
    sink_->push_back(ErrorResult(task, broken_));
    // The command cannot start: no item of this job can succeed.
    sink_->back().fatal = true;
    return;
  }
  CoProcess* co = Pick();
  if (co == nullptr) {
    Status s = Spawn(&co);
    if (!s.ok()) {
      // Out of processes or descriptors: another attempt may find some.
      sink_->push_back(RetryableError(task, s.message()));
      return;
    }
  }
  if (co->held.empty()) co->busy_since_us = co->quiet_since_us = NowMicros();
  co->input.append(task.item);
  co->input.push_back('\n');
  co->queued_bytes += task.item.size() + 1;
  co->held.push_back(CoProcess::Held{task.index, task.attempt, co->queued_bytes});
  ++outstanding_;
}

PipePayload::CoProcess* PipePayload::Pick() {
  CoProcess* best = nullptr;
  for (const auto& co : co_processes_) {
    if (!co->accepting) continue;
    if (best == nullptr || co->held.size() < best->held.size()) best = co.get();
  }
  return best != nullptr && best->held.size() < window() ? best : nullptr;
}

Status PipePayload::Spawn(CoProcess** out) {
  auto co = std::make_unique<CoProcess>();
  ChildProcess::Options options;
  options.pipe_stdin = true;
  // Always set, so that a value inherited from an enclosing run never
  // decides the format.
  options.env.push_back(std::string(kPipeAnswersEnv) + "=" +
                        PipeAnswerFormatName(options_.answers));
  Status s = ChildProcess::Spawn({"/bin/sh", "-c", command_}, options, &co->child);
  if (!s.ok()) return s;
  co->spawned_us = NowMicros();
  *out = co.get();
  co_processes_.push_back(std::move(co));
  return Status::Ok();
}

bool PipeReadFull(size_t bytes, bool paced, size_t pipe_bytes) {
  if (!paced) return bytes >= kPipeFullReadBytes;
  return bytes >= std::clamp<size_t>(pipe_bytes / 4, 1, kPipePacedFullReadBytes);
}

bool PipeReadPaced(double answer_micros, int64_t since_read_us) {
  return answer_micros > 0 && answer_micros < kPipePacedBelowMicros && since_read_us >= 0 &&
         since_read_us < kPipeReadPaceMicros;
}

double NextAnswerMicros(double answer_micros, double each, bool drained) {
  double next = answer_micros <= 0 ? each : 0.8 * answer_micros + 0.2 * each;
  if (drained && next < kPipePacedBelowMicros) next = std::min(next, each / 2);
  return next;
}

bool PipePayload::Paced(const CoProcess& co, int64_t now) const {
  // Once its input is closed, or while it owes nothing, every line is read as
  // it comes; after a read that took a buffer-full, too (PipeReadFull).
  return co.closed_us == 0 && !co.held.empty() && co.read_us != 0 && !co.read_full &&
         PipeReadPaced(answer_micros_, now - co.read_us);
}

void PipePayload::Flush(CoProcess* co) {
  ChildProcess& child = *co->child;
  while (co->input_done < co->input.size() && child.stdin_fd() >= 0) {
    ssize_t n = write(child.stdin_fd(), co->input.data() + co->input_done,
                      co->input.size() - co->input_done);
    if (n > 0) {
      co->input_done += static_cast<size_t>(n);
      co->written_bytes += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // EPIPE: it closed its stdin, usually on its way out. What it holds is
    // settled when it exits (or times out); it gets nothing more.
    child.CloseStdin();
    co->accepting = false;
    co->input.clear();
    co->input_done = 0;
    return;
  }
  if (co->input_done == co->input.size()) {
    co->input.clear();
    co->input_done = 0;
  } else if (co->input_done >= kCompactBytes) {
    co->input.erase(0, co->input_done);
    co->input_done = 0;
  }
}

void PipePayload::AddPollItems(std::vector<zmq_pollitem_t>* items, long* timeout_ms) {
  poll_refs_.clear();
  for (const auto& co : co_processes_) {
    // The items Start() queued since the last round go out here, in one
    // write per co-process, instead of one write per item or a poll round
    // spent learning that an empty pipe is writable.
    Flush(co.get());
    ChildProcess& child = *co->child;
    bool paced = Paced(*co, NowMicros());
    co->stdout_paced = paced;
    for (int fd : {child.stdout_fd(), child.stderr_fd()}) {
      if (fd < 0 || (paced && fd == child.stdout_fd())) continue;
      items->push_back(zmq_pollitem_t{nullptr, fd, ZMQ_POLLIN, 0});
      poll_refs_.push_back(PollRef{co.get(), false});
    }
    if (co->input_done < co->input.size() && child.stdin_fd() >= 0) {
      items->push_back(zmq_pollitem_t{nullptr, child.stdin_fd(), ZMQ_POLLOUT, 0});
      poll_refs_.push_back(PollRef{co.get(), false});
    }
    if (!child.reaped()) {
      items->push_back(zmq_pollitem_t{nullptr, child.pidfd(), ZMQ_POLLIN, 0});
      poll_refs_.push_back(PollRef{co.get(), true});
    }
    int64_t due_us = 0;  // when Advance() must look at it again; 0: no need
    if (co->stdout_closed_us != 0) {
      due_us = co->stdout_closed_us + kExitAfterEofMicros;
    } else if (co->drained_us != 0) {
      due_us = co->drained_us + kExitAfterEofMicros;
    } else if (co->accepting && !co->held.empty() && co->input_done == co->input.size()) {
      due_us = co->quiet_since_us + QuietMicros(*co);
    }
    if (paced && (due_us == 0 || co->read_us + kPipeReadPaceMicros < due_us)) {
      due_us = co->read_us + kPipeReadPaceMicros;
    }
    if (Starting(*co)) {
      // Looked at again shortly, to time its start-up (NoteStarted).
      int64_t now = NowMicros();
      int64_t probe_us = now + StartupProbeMicros(now - co->spawned_us);
      if (due_us == 0 || probe_us < due_us) due_us = probe_us;
    }
    if (due_us != 0) {
      int64_t left_us = due_us - NowMicros();
      long left_ms = static_cast<long>(std::max<int64_t>(0, (left_us + 999) / 1000));
      if (*timeout_ms < 0 || left_ms < *timeout_ms) *timeout_ms = left_ms;
    }
  }
}

void PipePayload::Advance(const zmq_pollitem_t* items, size_t count) {
  // A mismatch means the co-processes changed since AddPollItems (Cancel,
  // Shutdown): the recorded pointers may be stale, so this round is skipped.
  if (count != poll_refs_.size()) return;
  touched_.clear();
  for (size_t i = 0; i < count; ++i) {
    // A closed peer shows as POLLHUP, which zmq_poll reports as ZMQ_POLLERR
    // rather than ZMQ_POLLIN or ZMQ_POLLOUT: any event means "look".
    if (items[i].revents == 0) continue;
    CoProcess* co = poll_refs_[i].co;
    if (poll_refs_[i].is_pidfd) co->exited = true;
    if (!co->touched) {
      co->touched = true;
      touched_.push_back(co);
    }
  }
  poll_refs_.clear();
  int64_t now = NowMicros();
  // A paced co-process's stdout was not polled: read it when its turn comes.
  for (const auto& co : co_processes_) {
    if (co->stdout_paced && !co->touched && !co->done && now - co->read_us >= kPipeReadPaceMicros) {
      co->touched = true;
      touched_.push_back(co.get());
    }
  }
  for (CoProcess* co : touched_) Step(co);
  now = NowMicros();
  for (const auto& co : co_processes_) {
    if (!Starting(*co)) continue;
    // Started once it reads: a command that reads a little at a time has
    // started when it takes the first bit, not when it has taken everything.
    int unread = UnreadBytes(co->child->stdin_fd());
    if (static_cast<uint64_t>(std::max(unread, 0)) < co->written_bytes) NoteStarted(co.get(), now);
  }
  for (const auto& co : co_processes_) {
    if (co->done) continue;
    if (co->stdout_closed_us != 0) {
      if (now - co->stdout_closed_us >= kExitAfterEofMicros) End(co.get(), false);
    } else if (co->drained_us != 0) {
      // Answered all it held after its input ended, yet still running: what
      // it started keeps its stdout open. Nothing more is owed.
      if (now - co->drained_us >= kExitAfterEofMicros) End(co.get(), false);
    } else if (Silent(co.get(), now)) {
      EndInput(co.get(), now);
    }
  }
  RemoveDone();
}

bool PipePayload::Silent(CoProcess* co, int64_t now) {
  ChildProcess& child = *co->child;
  if (!co->accepting || co->held.empty() || child.stdin_fd() < 0 ||
      co->input_done < co->input.size()) {
    return false;  // nothing owed, or a full pipe: it is not waiting for input
  }
  if (now - co->quiet_since_us < QuietMicros(*co)) return false;
  if (UnreadBytes(child.stdin_fd()) > 0) {
    // It has not read all it was given: busy, or still starting (Python
    // takes tens of ms, a program that loads a model much longer). Its
    // silence counts from now, so that a slow start is no reason to close.
    co->quiet_since_us = now;
    return false;
  }
  if (!co->started) {
    // Seen to have read only now (between two probes): its silence starts
    // now.
    NoteStarted(co, now);
    return false;
  }
  return true;
}

bool PipePayload::Starting(const CoProcess& co) const {
  return !co.started && !co.done && co.accepting && co.child->stdin_fd() >= 0 &&
         co.written_bytes > 0;
}

void PipePayload::NoteStarted(CoProcess* co, int64_t now) {
  if (co->started) return;
  co->started = true;
  startup_us_ = now - co->spawned_us;
  // Its start-up was not silence.
  co->quiet_since_us = std::max(co->quiet_since_us, now);
}

int64_t PipePayload::QuietMicros(const CoProcess& co) const {
  return std::max(policy_.QuietMicros(co.line_by_line),
                  std::min(startup_us_, kMaxStartupQuietMicros));
}

void PipePayload::EndInput(CoProcess* co, int64_t now) {
  co->child->CloseStdin();
  co->input.clear();
  co->input_done = 0;
  co->accepting = false;
  co->closed_us = now;
  co->quiet_used_us = now - co->quiet_since_us;
  co->policy_quiet_us = policy_.QuietMicros(co->line_by_line);
  co->own_quiet_us = policy_.QuietMicros(false);
  co->batch = co->held.size();
  // The answers that follow share the time since the close: the silence
  // before may have been idleness, waiting for input with full buffers.
  co->busy_since_us = now;
}

void PipePayload::NoteFlush(CoProcess* co, int64_t now) {
  if (co->closed_us == 0 || co->flush_noted) return;
  co->flush_noted = true;
  // The policy learns from its own quiet period: a longer wait for the
  // command's start-up's sake (QuietMicros) says nothing of its items.
  int64_t quiet_us = std::min(co->quiet_used_us, co->policy_quiet_us);
  co->prompt_flush = policy_.OnFlushed(quiet_us, now - co->closed_us, co->batch, co->own_quiet_us);
}

void PipePayload::Step(CoProcess* co) {
  co->touched = false;
  Flush(co);
  ChildProcess& child = *co->child;
  // Output on stderr counts too: a co-process that logs is not idle.
  size_t stdout_before = child.stdout_data().size();
  size_t before = stdout_before + child.stderr_data().size();
  child.ReadAvailable();
  co->read_us = NowMicros();
  // A round woken by its stdin or stderr may find nothing on stdout: that
  // says nothing of how the command writes.
  size_t got = child.stdout_data().size() - stdout_before;
  if (got > 0) {
    co->read_full = PipeReadFull(got, co->stdout_paced, co->stdout_paced ? PipeBytes(child) : 0);
  }
  bool wrote = child.stdout_data().size() + child.stderr_data().size() != before;
  TrimStderr(&child.stderr_data());
  if (wrote) {
    int64_t now = NowMicros();
    co->quiet_since_us = now;
    NoteFlush(co, now);
  }
  if (!TakeAnswers(co)) return;
  if (co->exited) {
    End(co, true);
  } else if (child.stdout_fd() < 0 && co->stdout_closed_us == 0) {
    co->stdout_closed_us = NowMicros();
    co->accepting = false;
  }
}

bool PipePayload::TakeAnswers(CoProcess* co, bool at_end) {
  std::string& out = co->child->stdout_data();
  // After its input is closed, a buffering co-process's answers wait until
  // there is one for every item it holds, or until it ends (End checks their
  // number): a command that drops a line (grep, sed d) is found out at its
  // exit before any answer it wrote after the close is given to the wrong
  // item. (Its answers come at its exit anyway. Those of one that answered
  // line by line before, closed for a slow item, still flow as they come:
  // held back, they would wait for the slowest of its items.)
  if (co->closed_us != 0 && !co->line_by_line && !at_end && out.size() <= kMaxAnswerBytes &&
      CountLines(out, &co->counted, &co->lines) < co->held.size()) {
    if (out.size() > co->scanned) NoteStarted(co, NowMicros());
    return true;
  }
  co->counted = co->lines = 0;
  size_t start = 0;
  size_t from = co->scanned;
  size_t answered = 0;
  size_t first_result = sink_->size();
  // Its first answers with its stdin open also paid for its start-up.
  bool starting = co->answered == 0 && co->closed_us == 0;
  if (out.size() > from) NoteStarted(co, NowMicros());
  while (const void* found = std::memchr(out.data() + from, '\n', out.size() - from)) {
    size_t end = static_cast<size_t>(static_cast<const char*>(found) - out.data());
    // An answer to an item whose line is not wholly written yet cannot be
    // one either: the co-process has not read it.
    if (co->held.empty() || co->held.front().end > co->written_bytes) {
      out.clear();
      co->scanned = 0;
      broken_ = kTooManyLines;
      // Output at end of input (a summary, a total) is the usual culprit.
      if (co->closed_us != 0) broken_ += " (the extra lines came after its input was closed)";
      Abandon(co, broken_, false);
      return false;
    }
    CoProcess::Held held = co->held.front();
    co->held.pop_front();
    ++co->answered;
    --outstanding_;
    size_t size = end - start;
    if (size > 0 && out[end - 1] == '\r') --size;
    if (held.index != co->cancelled) {
      Result r;
      r.index = held.index;
      r.attempt = held.attempt;
      if (options_.answers == PipeAnswerFormat::kJson) {
        ReadJsonAnswer(std::string_view(out).substr(start, size), &r);
      } else {
        r.ok = true;
        r.value.assign(out, start, size);
      }
      sink_->push_back(std::move(r));
      ++answered;
    }
    start = end + 1;
    from = start;
  }
  out.erase(0, start);
  co->scanned = out.size();

  if (answered > 0) {
    // Answers read together share the time since the previous answer (or
    // since the co-process got work): on average, the time per answer. That,
    // not the time an item queued behind its window, is what it cost.
    int64_t now = NowMicros();
    double each = static_cast<double>(now - co->busy_since_us) / static_cast<double>(answered);
    // Two spans are not the items' cost: a fresh co-process's start-up (tens
    // of ms for Python) before its first answers, and the flush and exit
    // that yield the answers of a prompt flush. Those answers are taken to
    // cost no more than the least time per answer seen so far. A command that
    // answers at end of input pays both once per batch; counted against the
    // batch, they would make the coordinator send fewer items, too few to
    // fill the next buffer, and batches would never grow.
    double measured = each;
    bool overhead = starting || (co->closed_us != 0 && co->prompt_flush);
    if (overhead && least_micros_ > 0) {
      each = std::min(each, least_micros_);
    } else if (co->closed_us == 0) {
      // The window follows the pace of answers while items keep coming in.
      answer_micros_ = NextAnswerMicros(answer_micros_, each, co->held.empty());
    }
    least_micros_ = least_micros_ <= 0 ? measured : std::min(least_micros_, measured);
    for (size_t i = first_result; i < sink_->size(); ++i) {
      (*sink_)[i].elapsed_us = static_cast<uint64_t>(std::max(1.0, each));
    }
    co->busy_since_us = now;
  }
  if (start > 0 && co->held.empty()) {
    if (co->closed_us == 0 && co->accepting) {
      co->line_by_line = true;
      policy_.OnLineByLine();
    } else if (co->closed_us != 0 && co->drained_us == 0) {
      co->drained_us = NowMicros();
    }
  }

  if (out.size() > kMaxAnswerBytes) {
    out.clear();
    co->scanned = 0;
    if (!co->held.empty()) {
      CoProcess::Held held = co->held.front();
      co->held.pop_front();
      --outstanding_;
      if (held.index != co->cancelled) {
        sink_->push_back(ErrorResult(Task{held.index, held.attempt, std::string()},
                                     "co-process answer larger than 64 MiB"));
      }
    }
    Abandon(co, "co-process stopped after an answer larger than 64 MiB while holding this item",
            true);
    return false;
  }
  return true;
}

void PipePayload::End(CoProcess* co, bool exited) {
  NoteFlush(co, NowMicros());
  ChildProcess& child = *co->child;
  // Its stdout reached end-of-file before our kill below (which closes it).
  const bool stdout_ended = co->stdout_closed_us != 0 || child.stdout_fd() < 0;
  // An exited leader keeps its exit status: SIGKILL cannot change it, and
  // the SIGKILL to its group reaches descendants that kept the pipes open.
  // Reaping it here would make Kill() a no-op, hence a look at the pidfd.
  if (!exited) {
    pollfd p = {child.pidfd(), POLLIN, 0};
    exited = poll(&p, 1, 0) > 0;
  }
  child.Kill();
  child.ReadAvailable();
  int status = child.wait_status();
  // A SIGKILL it had not died of before is ours: it closed its stdout and
  // lived on, and the signal says nothing about it.
  bool closed_stdout = WIFSIGNALED(status) && !exited && WTERMSIG(status) == SIGKILL;
  // It read all of its input and ended well (exit 0, or its stdout closed)
  // with fewer answers than items: it dropped lines, and which ones cannot
  // be known, so none of the answers it wrote since the close is given to an
  // item. Like a command that writes too many lines, a fresh copy would do
  // the same: every later item fails.
  bool ended_well = closed_stdout || (WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // A last line without "\n" is a line, as for sed, awk and a command's
  // output (printf '%s' "$x", "\n".join(...)), once its writer has ended
  // well: exited 0, or closed its stdout itself. One cut short by a crash, or
  // by our kill of a co-process that lingered with its stdout open, is not.
  std::string& out = child.stdout_data();
  bool exit_zero = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if ((exit_zero || (closed_stdout && stdout_ended)) && !out.empty() && out.back() != '\n') {
    out.push_back('\n');
  }
  if (co->closed_us != 0 && ended_well) {
    size_t given = co->held.size();
    size_t answers = CountLines(child.stdout_data(), &co->counted, &co->lines);
    if (answers < given) {
      child.stdout_data().clear();
      co->scanned = co->counted = co->lines = 0;
      broken_ = std::string(kTooFewLines) + " (" + std::to_string(answers) + " for the last " +
                std::to_string(given) +
                (closed_stdout ? " before it closed its stdout" : " before it exited") +
                "; answers cannot be matched to items: it must write one line for each line it "
                "reads)";
      Result::Extra extra;
      if (!closed_stdout) AddExitFields(status, &extra);
      FailHeld(co, broken_, false, std::move(extra));
      co->done = true;
      return;
    }
  }
  // What it wrote before dying still counts.
  if (!TakeAnswers(co, true)) return;
  std::string error;
  if (closed_stdout) {
    error = "co-process closed its stdout while holding this item";
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    size_t unanswered = co->held.size() - (co->cancelled ? 1 : 0);
    error = "co-process exited with code 0 with " + std::to_string(unanswered) +
            " item(s) unanswered" + (co->closed_us != 0 ? " after its input was closed" : "");
  } else if (WIFEXITED(status)) {
    error = "co-process exited with code " + std::to_string(WEXITSTATUS(status)) +
            " while holding this item";
  } else if (WIFSIGNALED(status)) {
    error = "co-process " + DescribeExit(status) + " while holding this item";
  } else {
    error = "co-process ended while holding this item";
  }
  Result::Extra extra;
  if (!closed_stdout) AddExitFields(status, &extra);
  // sh exits 127 (not found) or 126 (not executable) when the command cannot
  // start at all: no retry and no later item can succeed, so fail them all
  // at once instead of starting a doomed co-process per attempt.
  bool cannot_start = WIFEXITED(status) &&
                      (WEXITSTATUS(status) == 126 || WEXITSTATUS(status) == 127) &&
                      co->answered == 0;
  if (cannot_start) {
    std::string why = StderrTail(child.stderr_data());
    broken_ = "co-process cannot start (exit code " + std::to_string(WEXITSTATUS(status)) + ")" +
              (why.empty() ? "" : ": " + why);
    error = broken_;
  }
  FailHeld(co, error, !cannot_start, std::move(extra));
  co->done = true;
}

void PipePayload::Abandon(CoProcess* co, const std::string& error, bool retryable) {
  co->child->Kill();
  co->child->ReadAvailable();
  FailHeld(co, error, retryable, Result::Extra());
  co->done = true;
}

void PipePayload::FailHeld(CoProcess* co, const std::string& error, bool retryable,
                           Result::Extra extra) {
  std::string err = StderrTail(co->child->stderr_data());
  if (!err.empty()) extra["stderr"] = std::move(err);
  for (const CoProcess::Held& held : co->held) {
    --outstanding_;
    if (held.index == co->cancelled) continue;
    Task task{held.index, held.attempt, std::string()};
    Result r = retryable ? RetryableError(task, error) : ErrorResult(task, error);
    r.extra = extra;
    sink_->push_back(std::move(r));
  }
  co->held.clear();
}

void PipePayload::RemoveDone() {
  co_processes_.erase(std::remove_if(co_processes_.begin(), co_processes_.end(),
                                     [](const auto& co) { return co->done; }),
                      co_processes_.end());
}

void PipePayload::Cancel(uint64_t index) {
  CoProcess* owner = nullptr;
  for (const auto& co : co_processes_) {
    for (const CoProcess::Held& held : co->held) {
      if (held.index == index) {
        owner = co.get();
        break;
      }
    }
    if (owner != nullptr) break;
  }
  if (owner == nullptr) return;
  poll_refs_.clear();  // they point into co_processes_
  owner->cancelled = index;
  owner->child->Kill();
  // Answers already in the pipe are kept rather than sent again.
  owner->child->ReadAvailable();
  if (TakeAnswers(owner, true)) {
    FailHeld(owner,
             "co-process stopped because item " + std::to_string(index) +
                 " timed out while it held this item",
             true, Result::Extra());
    owner->done = true;
  }
  RemoveDone();
}

void PipePayload::Shutdown() {
  poll_refs_.clear();
  if (co_processes_.empty()) return;
  // End of input is the polite way to stop a co-process; one grace period
  // for all, then the group is killed.
  std::vector<ChildProcess*> children;
  for (const auto& co : co_processes_) {
    co->child->CloseStdin();
    children.push_back(co->child.get());
  }
  WaitForExits(children, kShutdownGrace);
  for (ChildProcess* child : children) child->Kill();
  co_processes_.clear();
  outstanding_ = 0;
}

std::unique_ptr<Payload> MakePipePayload(const JobSpec& job, ResultSink* sink) {
  PipePayload::Options options;
  auto answers = job.options.find(job_key::kPipeAnswers);
  if (answers != job.options.end()) ParsePipeAnswerFormat(answers->second, &options.answers);
  return std::make_unique<PipePayload>(job.argv.at(0), sink, options);
}

}  // namespace fanmap
