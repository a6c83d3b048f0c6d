#include "worker/payload_exec.h"

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <utility>

#include "common/arg_table.h"
#include "common/job_keys.h"
#include "worker/child_process.h"
#include "worker/replacement.h"

namespace fanmap {
namespace {

// Stdout is the result and travels in one frame; past this the command is
// stopped instead of letting one item exhaust the worker's memory.
constexpr size_t kMaxStdoutBytes = 64 << 20;
constexpr char kStdoutTooLarge[] = "output larger than 64 MiB";
// At shutdown, commands get this long after SIGTERM to clean up.
constexpr std::chrono::milliseconds kShutdownGrace(200);

bool OptionOn(const JobSpec& job, const char* key) {
  auto it = job.options.find(key);
  return it != job.options.end() && it->second == "1";
}

CommandTemplate::Options TemplateOptions(const JobSpec& job) {
  CommandTemplate::Options options;
  auto it = job.options.find(job_key::kReplaceStr);
  if (it != job.options.end()) options.replace_str = it->second;
  options.context_replace = OptionOn(job, job_key::kContextReplace);
  return options;
}

// --tag: every line of `text` starts with the tag and a tab.
std::string Tagged(const std::string& tag, const std::string& text) {
  if (tag.empty() || text.empty()) return text;
  std::string out;
  out.reserve(text.size() + tag.size() + 1);
  size_t from = 0;
  while (from < text.size()) {
    size_t newline = text.find('\n', from);
    size_t end = newline == std::string::npos ? text.size() : newline + 1;
    out += tag;
    out += '\t';
    out.append(text, from, end - from);
    from = end;
  }
  return out;
}

unsigned SlotBase() {
  const char* text = std::getenv(kSlotBaseEnv);
  if (text == nullptr) return 0;
  char* end = nullptr;
  unsigned long base = std::strtoul(text, &end, 10);
  return *end == '\0' && base < (1u << 30) ? static_cast<unsigned>(base) : 0;
}

class ExecPayload : public Payload {
 public:
  ExecPayload(const JobSpec& job, ResultSink* sink)
      : template_(job.argv, TemplateOptions(job)),
        arg_table_(OptionOn(job, job_key::kArgTable)),
        verbatim_(OptionOn(job, job_key::kVerbatimOutput)),
        tag_(OptionOn(job, job_key::kTag)),
        dry_run_(OptionOn(job, job_key::kDryRun)),
        joblog_(OptionOn(job, job_key::kJoblog)),
        slot_base_(SlotBase()),
        sink_(sink) {}
  ~ExecPayload() override = default;  // ~ChildProcess kills and reaps.

  void Start(Task task) override;
  void AddPollItems(std::vector<zmq_pollitem_t>* items, long* timeout_ms) override;
  void Advance(const zmq_pollitem_t* items, size_t count) override;
  size_t running() const override { return runs_.size(); }
  void Cancel(uint64_t index) override;
  void Shutdown() override;

 private:
  struct Run {
    Task task;  // index and attempt; the item is not kept
    std::unique_ptr<ChildProcess> child;
    unsigned slot = 0;
    std::string tag;       // --tag: the item's fields
    std::string command;   // --joblog: parallel's command line
    int64_t start_us = 0;  // --joblog: wall-clock start
    bool touched = false;  // had an event in this Advance()
    bool pidfd_ready = false;
    bool done = false;
    uint64_t stderr_dropped = 0;  // verbatim stderr cut at the limit: bytes dropped
  };
  // Which run a polled item belongs to, recorded by AddPollItems().
  struct PollRef {
    Run* run;
    bool is_pidfd;
  };

  // Reads, reaps and finishes one run that had an event.
  void Step(Run* run);
  Result MakeResult(Run* run);
  // The lowest job slot ({%}) not in use, from 1; released by ReleaseSlot.
  unsigned AcquireSlot();
  void ReleaseSlot(unsigned slot);

  const CommandTemplate template_;
  const bool arg_table_;  // items are EncodeArgTable()s, not text
  const bool verbatim_;   // stdout as written, stderr in full
  const bool tag_;
  const bool dry_run_;
  const bool joblog_;         // results carry "command" and "start_us"
  const unsigned slot_base_;  // job slots of the local workers before this one
  ResultSink* const sink_;
  std::vector<bool> slots_in_use_;
  std::vector<std::unique_ptr<Run>> runs_;
  std::vector<PollRef> poll_refs_;
  std::vector<Run*> touched_;
};

unsigned ExecPayload::AcquireSlot() {
  auto it = std::find(slots_in_use_.begin(), slots_in_use_.end(), false);
  if (it == slots_in_use_.end()) it = slots_in_use_.insert(it, false);
  *it = true;
  return slot_base_ + static_cast<unsigned>(it - slots_in_use_.begin()) + 1;
}

void ExecPayload::ReleaseSlot(unsigned slot) {
  slot -= slot_base_;
  if (slot >= 1 && slot <= slots_in_use_.size()) slots_in_use_[slot - 1] = false;
}

void ExecPayload::Start(Task task) {
  ArgTable args;
  if (arg_table_) {
    Status decoded = DecodeArgTable(task.item, &args);
    if (!decoded.ok()) {
      sink_->push_back(ErrorResult(task, decoded.message()));
      return;
    }
  } else {
    args = {{std::move(task.item)}};
  }
  task.item = std::string();
  auto run = std::make_unique<Run>();
  run->slot = AcquireSlot();
  ExpandedCommand command = template_.Expand(args, task.index + 1, run->slot);
  if (tag_) {
    for (const ArgRow& row : args) {
      for (const std::string& field : row) run->tag += (run->tag.empty() ? "" : " ") + field;
    }
  }
  // execve ends every argument at its first NUL: the command would run with
  // a cut-off value. parallel replaces it by "\0" with a warning; here the
  // item fails, naming why.
  for (const std::string& arg : command.argv) {
    if (arg.find('\0') != std::string::npos) {
      ReleaseSlot(run->slot);
      sink_->push_back(ErrorResult(task,
                                   "the item holds a NUL byte, which a command-line "
                                   "argument cannot carry (items end at NUL with -0)"));
      return;
    }
  }
  if (dry_run_) {
    ReleaseSlot(run->slot);
    sink_->push_back(OkResult(task, verbatim_ ? command.line + "\n" : command.line));
    return;
  }
  ChildProcess::Options options;
  options.env = {"FANMAP_SEQ=" + std::to_string(task.index + 1),
                 "FANMAP_SLOT=" + std::to_string(run->slot), kSlotBaseEnv};
  Status s = ChildProcess::Spawn(command.argv, options, &run->child);
  if (!s.ok()) {
    ReleaseSlot(run->slot);
    // The command cannot be started: most likely no item's can.
    sink_->push_back(ErrorResult(task, s.message()));
    sink_->back().fatal = true;
    return;
  }
  run->task = std::move(task);
  if (joblog_) {
    run->command = std::move(command.line);
    run->start_us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  }
  runs_.push_back(std::move(run));
}

void ExecPayload::AddPollItems(std::vector<zmq_pollitem_t>* items, long* timeout_ms) {
  poll_refs_.clear();
  for (const auto& run : runs_) {
    ChildProcess& child = *run->child;
    for (int fd : {child.stdout_fd(), child.stderr_fd()}) {
      if (fd < 0) continue;
      items->push_back(zmq_pollitem_t{nullptr, fd, ZMQ_POLLIN, 0});
      poll_refs_.push_back(PollRef{run.get(), false});
    }
    if (!child.reaped()) {
      items->push_back(zmq_pollitem_t{nullptr, child.pidfd(), ZMQ_POLLIN, 0});
      poll_refs_.push_back(PollRef{run.get(), true});
    }
  }
}

void ExecPayload::Advance(const zmq_pollitem_t* items, size_t count) {
  // A mismatch means the runs changed since AddPollItems (Shutdown): the
  // recorded pointers may be stale, so this round is skipped.
  if (count != poll_refs_.size()) return;
  touched_.clear();
  for (size_t i = 0; i < count; ++i) {
    // A closed write end shows as POLLHUP, which zmq_poll reports as
    // ZMQ_POLLERR rather than ZMQ_POLLIN: any event means "look".
    if (items[i].revents == 0) continue;
    Run* run = poll_refs_[i].run;
    if (poll_refs_[i].is_pidfd) run->pidfd_ready = true;
    if (!run->touched) {
      run->touched = true;
      touched_.push_back(run);
    }
  }
  poll_refs_.clear();
  if (touched_.empty()) return;
  for (Run* run : touched_) Step(run);
  runs_.erase(std::remove_if(runs_.begin(), runs_.end(), [](const auto& r) { return r->done; }),
              runs_.end());
}

void ExecPayload::Step(Run* run) {
  run->touched = false;
  ChildProcess& child = *run->child;
  child.ReadAvailable();
  if (child.stdout_data().size() > kMaxStdoutBytes) {
    child.Kill();
    sink_->push_back(ErrorResult(run->task, kStdoutTooLarge));
    run->done = true;
    ReleaseSlot(run->slot);
    return;
  }
  // Verbatim output passes stderr on whole, up to the stdout's limit; past
  // it, the cut is said (MakeResult).
  if (!verbatim_) {
    TrimStderr(&child.stderr_data());
  } else if (child.stderr_data().size() > kMaxStdoutBytes) {
    size_t before = child.stderr_data().size();
    TrimStderr(&child.stderr_data());
    run->stderr_dropped += before - child.stderr_data().size();
  }

  // Pipes usually reach end-of-file just before the exit is visible, so a
  // reap is tried then too: it saves a poll round per task.
  if (run->pidfd_ready || child.output_closed()) child.TryReap();
  run->pidfd_ready = false;
  if (child.output_closed() && child.reaped()) {
    sink_->push_back(MakeResult(run));
    run->done = true;
    ReleaseSlot(run->slot);
  }
}

Result ExecPayload::MakeResult(Run* run) {
  ChildProcess& child = *run->child;
  int status = child.wait_status();
  Result r;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    std::string out = std::move(child.stdout_data());
    if (!verbatim_) DropFinalNewline(&out);
    r = OkResult(run->task, Tagged(run->tag, out));
  } else {
    r = ErrorResult(run->task, DescribeExit(status));
    AddExitFields(status, &r.extra);
    // parallel shows a failed command's output too.
    if (verbatim_ && !child.stdout_data().empty()) {
      r.extra["stdout"] = Tagged(run->tag, child.stdout_data());
    }
  }
  if (run->stderr_dropped > 0) {
    child.stderr_data().insert(0, "fanmap: this command's stderr passed 64 MiB: its first " +
                                      std::to_string(run->stderr_dropped) +
                                      " bytes were dropped\n");
  }
  std::string err = verbatim_ ? Tagged(run->tag, child.stderr_data())
                    : r.ok    ? std::string()
                              : StderrTail(child.stderr_data());
  if (!err.empty()) r.extra["stderr"] = std::move(err);
  if (joblog_) {
    r.extra["command"] = run->command;
    r.extra["start_us"] = run->start_us;
  }
  return r;
}

void ExecPayload::Cancel(uint64_t index) {
  auto it = std::find_if(runs_.begin(), runs_.end(),
                         [index](const auto& run) { return run->task.index == index; });
  if (it == runs_.end()) return;
  poll_refs_.clear();  // they point into runs_
  (*it)->child->Kill();
  ReleaseSlot((*it)->slot);
  runs_.erase(it);
}

void ExecPayload::Shutdown() {
  poll_refs_.clear();
  if (runs_.empty()) return;
  // One grace period for all children, not one each. Exited leaders are left
  // unreaped until Kill(), so the SIGKILL to their group still reaches any
  // descendant that outlived the SIGTERM.
  std::vector<ChildProcess*> children;
  for (const auto& run : runs_) {
    run->child->Terminate();
    children.push_back(run->child.get());
  }
  WaitForExits(children, kShutdownGrace);
  for (ChildProcess* child : children) child->Kill();
  runs_.clear();
  slots_in_use_.clear();
}

}  // namespace

std::unique_ptr<Payload> MakeExecPayload(const JobSpec& job, ResultSink* sink) {
  return std::make_unique<ExecPayload>(job, sink);
}

}  // namespace fanmap
