#include "worker/payload_exec.h"

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "worker/child_process.h"

namespace fanmap {
namespace {

// Stdout is the result and travels in one frame; past this the command is
// stopped instead of letting one item exhaust the worker's memory.
constexpr size_t kMaxStdoutBytes = 64 << 20;
constexpr char kStdoutTooLarge[] = "output larger than 64 MiB";
// At shutdown, commands get this long after SIGTERM to clean up.
constexpr std::chrono::milliseconds kShutdownGrace(200);

class ExecPayload : public Payload {
 public:
  ExecPayload(std::vector<std::string> argv, ResultSink* sink)
      : argv_(std::move(argv)), sink_(sink) {}
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
    bool touched = false;  // had an event in this Advance()
    bool pidfd_ready = false;
    bool done = false;
  };
  // Which run a polled item belongs to, recorded by AddPollItems().
  struct PollRef {
    Run* run;
    bool is_pidfd;
  };

  // Reads, reaps and finishes one run that had an event.
  void Step(Run* run);
  Result MakeResult(Run* run);

  const std::vector<std::string> argv_;
  ResultSink* const sink_;
  std::vector<std::unique_ptr<Run>> runs_;
  std::vector<PollRef> poll_refs_;
  std::vector<Run*> touched_;
};

void ExecPayload::Start(Task task) {
  auto run = std::make_unique<Run>();
  Status s =
      ChildProcess::Spawn(ExpandArgv(argv_, task.item), ChildProcess::Options(), &run->child);
  task.item = std::string();
  if (!s.ok()) {
    // The command cannot be started: most likely no item's can.
    sink_->push_back(ErrorResult(task, s.message()));
    sink_->back().fatal = true;
    return;
  }
  run->task = std::move(task);
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
    return;
  }
  TrimStderr(&child.stderr_data());

  // Pipes usually reach end-of-file just before the exit is visible, so a
  // reap is tried then too: it saves a poll round per task.
  if (run->pidfd_ready || child.output_closed()) child.TryReap();
  run->pidfd_ready = false;
  if (child.output_closed() && child.reaped()) {
    sink_->push_back(MakeResult(run));
    run->done = true;
  }
}

Result ExecPayload::MakeResult(Run* run) {
  ChildProcess& child = *run->child;
  int status = child.wait_status();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    std::string out = std::move(child.stdout_data());
    DropFinalNewline(&out);
    return OkResult(run->task, std::move(out));
  }
  Result r = ErrorResult(run->task, DescribeExit(status));
  AddExitFields(status, &r.extra);
  std::string err = StderrTail(child.stderr_data());
  if (!err.empty()) r.extra["stderr"] = std::move(err);
  return r;
}

void ExecPayload::Cancel(uint64_t index) {
  auto it = std::find_if(runs_.begin(), runs_.end(),
                         [index](const auto& run) { return run->task.index == index; });
  if (it == runs_.end()) return;
  poll_refs_.clear();  // they point into runs_
  (*it)->child->Kill();
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
}

}  // namespace

std::unique_ptr<Payload> MakeExecPayload(std::vector<std::string> argv, ResultSink* sink) {
  return std::make_unique<ExecPayload>(std::move(argv), sink);
}

std::vector<std::string> ExpandArgv(const std::vector<std::string>& argv, const std::string& item) {
  static const std::string kPlaceholder = "{}";
  std::vector<std::string> out;
  out.reserve(argv.size() + 1);
  bool replaced = false;
  for (const std::string& arg : argv) {
    size_t pos = arg.find(kPlaceholder);
    if (pos == std::string::npos) {
      out.push_back(arg);
      continue;
    }
    replaced = true;
    std::string expanded;
    size_t from = 0;
    for (; pos != std::string::npos; pos = arg.find(kPlaceholder, from)) {
      expanded.append(arg, from, pos - from);
      expanded += item;
      from = pos + kPlaceholder.size();
    }
    expanded.append(arg, from, std::string::npos);
    out.push_back(std::move(expanded));
  }
  if (!replaced) out.push_back(item);
  return out;
}

}  // namespace fanmap
