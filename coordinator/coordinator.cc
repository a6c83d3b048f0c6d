#include "coordinator/coordinator.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/exit_status.h"
#include "common/json_text.h"
#include "coordinator/credit.h"
#include "coordinator/input_reader.h"
#include "coordinator/local_workers.h"
#include "coordinator/progress.h"
#include "coordinator/record_writer.h"
#include "coordinator/reorder_buffer.h"

namespace fanmap {
namespace {

constexpr size_t kMinWindow = 16384;
constexpr size_t kMaxWindowItemBytes = 64u << 20;
constexpr size_t kMaxTasksPerFrame = 1024;
constexpr size_t kMaxTaskBytesPerFrame = 1u << 20;
constexpr int kMaxFramesPerWake = 256;
constexpr int64_t kFlushEveryMs = 20;
constexpr int64_t kTickMs = 100;
constexpr int64_t kDrainGraceMs = 3000;

struct Worker {
  uint32_t id = 0;
  std::string routing_id;
  Hello hello;
  WorkerCredit credit{1};
  int64_t last_heard_ms = 0;
  int64_t last_sent_ms = 0;
  pid_t local_pid = 0;  // non-zero for workers this coordinator spawned
};

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

class Coordinator {
 public:
  explicit Coordinator(const Config& config)
      : config_(config), router_(context_, zmq::socket_type::router), host_(HostName()) {}
  ~Coordinator();

  int Run();

 private:
  void Log(const std::string& line) { std::fprintf(stderr, "fanmap: %s\n", line.c_str()); }
  Status SetUp();
  Status StartLocalWorkers();
  size_t WindowLimit() const;
  bool WantInput() const;
  void ReadInput();
  void AddItem(std::string line);
  bool NextTask(uint64_t* index);
  void Dispatch();
  bool SendTo(Worker& worker, const std::string& frame);
  void SendToId(const std::string& routing_id, const std::string& frame);
  void ReceiveFrames();
  void HandleFrame(const std::string& routing_id, const zmq::message_t& frame);
  void HandleHello(const std::string& routing_id, const Hello& hello);
  void HandleResults(Worker* worker, std::vector<Result>* results);
  Worker* FindWorker(const std::string& routing_id);
  void RemoveWorker(Worker* worker, const std::string& why);
  void Tick();
  void ReapLocalWorkers();
  void HandleSignals();
  void WriteReady();
  void WriteRecord(uint64_t index, Slot& slot);
  size_t InFlight() const;
  ProgressCounts Counts() const;
  void Shutdown();

  const Config& config_;
  zmq::context_t context_;
  zmq::socket_t router_;
  std::string host_;
  std::string ipc_dir_;
  int signal_fd_ = -1;
  std::unique_ptr<InputReader> input_;
  std::unique_ptr<RecordWriter> writer_;
  std::unique_ptr<LocalWorkers> local_;
  std::unique_ptr<Progress> progress_;
  JobSpec job_;
  ReorderBuffer window_;
  std::deque<uint64_t> retry_;  // requeued indexes, sent before new ones
  uint64_t next_new_ = 0;       // first index never sent
  std::vector<std::unique_ptr<Worker>> workers_;
  uint32_t next_worker_id_ = 1;
  size_t round_robin_ = 0;
  bool input_readable_ = false;
  uint64_t total_ = 0;
  uint64_t written_ = 0;
  uint64_t failed_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t bad_frames_ = 0;
  int local_failures_in_a_row_ = 0;
  int signals_ = 0;
  int64_t drain_deadline_ms_ = 0;
  int64_t last_tick_ms_ = 0;
  int64_t last_flush_ms_ = 0;
  std::string fatal_;  // set when the run cannot go on
};

Coordinator::~Coordinator() {
  local_.reset();
  if (signal_fd_ >= 0) close(signal_fd_);
  if (!ipc_dir_.empty()) {
    unlink((ipc_dir_ + "/tasks").c_str());
    rmdir(ipc_dir_.c_str());
  }
}

Status Coordinator::SetUp() {
  Status status = InputReader::Open(config_.input_path, &input_);
  if (!status.ok()) return status;
  status = RecordWriter::Open(config_.output_path, config_.output_format, &writer_);
  if (!status.ok()) return status;

  bool show = config_.progress == ProgressMode::kAlways ||
              (config_.progress == ProgressMode::kAuto && isatty(2));
  if (show) CountLines(config_.input_path, &total_);
  progress_ = std::make_unique<Progress>(show, 2);

  // Signals are read in the loop; SIGPIPE must not kill us on a closed stdout.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return Status::Error("signalfd failed");

  job_ = config_.job;
  job_.options["liveness_ms"] = std::to_string(config_.heartbeat_ms);

  try {
    router_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::maxmsgsize, kMaxFrameBytes);
    router_.set(zmq::sockopt::sndhwm, 0);
    router_.set(zmq::sockopt::rcvhwm, 0);
    router_.set(zmq::sockopt::router_mandatory, 1);
    for (const std::string& endpoint : config_.listen) {
      router_.bind(endpoint);
      if (endpoint.find('*') != std::string::npos) {
        Log("listening on " + router_.get(zmq::sockopt::last_endpoint));
      }
    }
  } catch (const zmq::error_t& e) {
    return Status::Error(std::string("cannot listen: ") + e.what());
  }
  return StartLocalWorkers();
}

Status Coordinator::StartLocalWorkers() {
  int n = config_.workers < 0 ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                              : config_.workers;
  if (n == 0) {
    if (config_.listen.empty()) return Status::Error("no workers: give -j N or --listen");
    return Status::Ok();
  }
  char dir[] = "/tmp/fanmap-XXXXXX";
  if (mkdtemp(dir) == nullptr) return Status::Error("cannot create a directory in /tmp");
  ipc_dir_ = dir;
  std::string endpoint = "ipc://" + ipc_dir_ + "/tasks";
  try {
    router_.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Error("cannot bind " + endpoint + ": " + e.what());
  }
  std::string path = config_.worker_path.empty() ? DefaultWorkerPath() : config_.worker_path;
  local_ = std::make_unique<LocalWorkers>(path, endpoint, config_.slots);
  for (int i = 0; i < n; ++i) {
    pid_t pid;
    Status status = local_->Spawn(&pid);
    if (!status.ok()) return status;
  }
  return Status::Ok();
}

size_t Coordinator::WindowLimit() const {
  size_t credit = 0;
  for (const auto& w : workers_) credit += w->credit.target();
  size_t base = config_.window > 0 ? config_.window : kMinWindow;
  // The window must exceed what workers may hold, or they would starve.
  return std::max(base, 2 * credit + 1);
}

bool Coordinator::WantInput() const {
  if (signals_ > 0 || !fatal_.empty() || input_->done()) return false;
  if (window_.size() >= WindowLimit()) return false;
  return window_.item_bytes() < kMaxWindowItemBytes || window_.size() <= InFlight() + 1;
}

void Coordinator::ReadInput() {
  std::string line;
  while (WantInput()) {
    if (input_->NextLine(&line)) {
      AddItem(std::move(line));
      continue;
    }
    if (input_->eof()) break;
    if (!input_->is_regular_file() && !input_readable_) break;
    input_readable_ = false;
    Status status = input_->Fill();
    if (!status.ok()) {
      fatal_ = status.message();
      break;
    }
    if (!input_->is_regular_file()) {
      // One read per wake-up for pipes and terminals: the next one could block.
      while (WantInput() && input_->NextLine(&line)) AddItem(std::move(line));
      break;
    }
  }
}

void Coordinator::AddItem(std::string line) {
  std::string error;
  bool bad = config_.input_format == InputFormat::kJsonl && !IsJsonValue(line, &error);
  uint64_t index = window_.Add(bad ? std::string() : std::move(line));
  if (!bad) return;
  std::string message =
      "line " + std::to_string(input_->line_number()) + ": invalid JSON: " + error;
  Log(message);
  Result result;
  result.index = index;
  result.ok = false;
  result.value = std::move(message);
  window_.Complete(index, std::move(result));
}

bool Coordinator::NextTask(uint64_t* index) {
  while (!retry_.empty()) {
    uint64_t i = retry_.front();
    retry_.pop_front();
    Slot* slot = window_.Find(i);
    if (slot != nullptr && slot->state == SlotState::kPending) {
      *index = i;
      return true;
    }
  }
  while (next_new_ < window_.end()) {
    uint64_t i = next_new_++;
    Slot* slot = window_.Find(i);
    if (slot != nullptr && slot->state == SlotState::kPending) {
      *index = i;
      return true;
    }
  }
  return false;
}

void Coordinator::Dispatch() {
  if (signals_ > 0 || !fatal_.empty() || workers_.empty()) return;
  TasksEncoder encoder;
  bool progress = true;
  while (progress) {
    progress = false;
    for (size_t k = 0; k < workers_.size(); ++k) {
      Worker& worker = *workers_[(round_robin_ + k) % workers_.size()];
      size_t budget = std::min(worker.credit.available(), kMaxTasksPerFrame);
      uint64_t index;
      while (encoder.count() < budget && encoder.bytes() < kMaxTaskBytesPerFrame &&
             NextTask(&index)) {
        Slot* slot = window_.Find(index);
        slot->state = SlotState::kInFlight;
        slot->worker = worker.id;
        encoder.Add(index, slot->attempts++, slot->item);
      }
      if (encoder.count() == 0) continue;
      size_t count = encoder.count();
      worker.credit.OnSent(count);
      if (!SendTo(worker, encoder.Finish())) {
        RemoveWorker(&worker, "cannot be reached");
        return;  // workers_ changed; the next loop iteration dispatches again
      }
      progress = true;
    }
    round_robin_++;
  }
}

bool Coordinator::SendTo(Worker& worker, const std::string& frame) {
  try {
    if (!router_.send(zmq::buffer(worker.routing_id),
                      zmq::send_flags::sndmore | zmq::send_flags::dontwait) ||
        !router_.send(zmq::buffer(frame), zmq::send_flags::dontwait)) {
      return false;
    }
  } catch (const zmq::error_t&) {
    return false;  // EHOSTUNREACH: the peer is gone
  }
  worker.last_sent_ms = NowMillis();
  return true;
}

void Coordinator::SendToId(const std::string& routing_id, const std::string& frame) {
  try {
    if (router_.send(zmq::buffer(routing_id),
                     zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      router_.send(zmq::buffer(frame), zmq::send_flags::dontwait);
    }
  } catch (const zmq::error_t&) {
  }
}

Worker* Coordinator::FindWorker(const std::string& routing_id) {
  for (auto& w : workers_) {
    if (w->routing_id == routing_id) return w.get();
  }
  return nullptr;
}

void Coordinator::ReceiveFrames() {
  for (int i = 0; i < kMaxFramesPerWake; ++i) {
    zmq::message_t id;
    if (!router_.recv(id, zmq::recv_flags::dontwait)) return;
    if (!id.more()) {
      ++bad_frames_;
      continue;
    }
    zmq::message_t frame;
    if (!router_.recv(frame, zmq::recv_flags::dontwait)) return;
    if (frame.more()) {
      // Our peers send exactly one frame per message: drop the whole message.
      zmq::message_t rest;
      bool more = true;
      while (more && router_.recv(rest, zmq::recv_flags::dontwait)) more = rest.more();
      ++bad_frames_;
      continue;
    }
    HandleFrame(id.to_string(), frame);
  }
}

void Coordinator::HandleFrame(const std::string& routing_id, const zmq::message_t& frame) {
  Message message;
  Status status = DecodeMessage(frame.data(), frame.size(), &message);
  Worker* worker = FindWorker(routing_id);
  if (!status.ok()) {
    ++bad_frames_;
    if (message.version != kProtocolVersion && message.type == MessageType::kHello) {
      Log("refused a worker: " + status.message());
      SendToId(routing_id,
               EncodeRefuse("fanmap coordinator refuses this worker: " + status.message()));
    } else if (bad_frames_ <= 5) {
      Log("dropped a frame: " + status.message());
    }
    return;
  }
  if (worker != nullptr) worker->last_heard_ms = NowMillis();
  switch (message.type) {
    case MessageType::kHello:
      if (worker == nullptr) HandleHello(routing_id, message.hello);
      return;
    case MessageType::kResults:
      HandleResults(worker, &message.results);
      if (worker == nullptr) {
        // A worker we declared dead came back (e.g. after SIGSTOP): its results
        // count, but it must not keep work we already gave to others.
        SendToId(routing_id, EncodeStop("this worker was declared dead"));
      }
      return;
    case MessageType::kHeartbeat:
      return;
    default:
      ++bad_frames_;
  }
}

void Coordinator::HandleHello(const std::string& routing_id, const Hello& hello) {
  if (signals_ > 0 || !fatal_.empty()) {
    SendToId(routing_id, EncodeStop("the run is ending"));
    return;
  }
  auto worker = std::make_unique<Worker>();
  worker->id = next_worker_id_++;
  worker->routing_id = routing_id;
  worker->hello = hello;
  worker->credit = WorkerCredit(hello.slots > 0 ? hello.slots : job_.default_slots);
  worker->last_heard_ms = NowMillis();
  if (local_ != nullptr && hello.host == host_) worker->local_pid = static_cast<pid_t>(hello.pid);
  bool local = worker->local_pid != 0;
  Worker& w = *worker;
  workers_.push_back(std::move(worker));
  if (!SendTo(w, EncodeJob(job_))) {
    RemoveWorker(&w, "cannot be reached");
    return;
  }
  if (!local) {
    Log("worker " + hello.name + " joined (" + std::to_string(w.credit.slots()) + " slots)");
  }
}

void Coordinator::HandleResults(Worker* worker, std::vector<Result>* results) {
  uint64_t total_us = 0;
  for (Result& result : *results) {
    total_us += result.elapsed_us;
    uint64_t index = result.index;
    if (!window_.Complete(index, std::move(result))) {
      ++duplicates_;
      continue;
    }
    if (config_.unordered) WriteRecord(index, *window_.Find(index));
  }
  if (worker != nullptr) {
    worker->credit.OnResults(results->size(), total_us);
    if (!results->empty()) local_failures_in_a_row_ = 0;
  }
}

void Coordinator::RemoveWorker(Worker* worker, const std::string& why) {
  uint32_t id = worker->id;
  size_t requeued = 0;
  // Rare (a worker died), so a scan of the window is cheaper than keeping a
  // per-worker index on the hot path.
  for (uint64_t i = window_.begin(); i < window_.end(); ++i) {
    Slot* slot = window_.Find(i);
    if (slot->state == SlotState::kInFlight && slot->worker == id) {
      slot->state = SlotState::kPending;
      retry_.push_back(i);
      ++requeued;
    }
  }
  std::sort(retry_.begin(), retry_.end());
  if (worker->local_pid == 0 || requeued > 0 || why != "exit code 0") {
    Log("worker " + worker->hello.name + " " + why +
        (requeued > 0 ? "; " + std::to_string(requeued) + " task(s) requeued" : ""));
  }
  if (worker->local_pid != 0 && local_ != nullptr) local_->Signal(worker->local_pid, SIGKILL);
  SendToId(worker->routing_id, EncodeStop("removed: " + why));
  workers_.erase(
      std::find_if(workers_.begin(), workers_.end(), [id](const auto& w) { return w->id == id; }));
}

void Coordinator::Tick() {
  int64_t now = NowMillis();
  if (now - last_tick_ms_ < kTickMs) return;
  last_tick_ms_ = now;
  const int64_t heartbeat_every = std::max<int64_t>(20, config_.heartbeat_ms / 5);
  std::string heartbeat = EncodeHeartbeat();
  for (size_t i = 0; i < workers_.size();) {
    Worker& w = *workers_[i];
    if (now - w.last_heard_ms > config_.heartbeat_ms) {
      RemoveWorker(&w, "silent for " + std::to_string(now - w.last_heard_ms) + " ms");
      continue;
    }
    if (now - w.last_sent_ms >= heartbeat_every) SendTo(w, heartbeat);
    ++i;
  }
}

void Coordinator::ReapLocalWorkers() {
  if (local_ == nullptr) return;
  for (const ExitedWorker& exited : local_->Reap()) {
    Worker* worker = nullptr;
    for (auto& w : workers_) {
      if (w->local_pid == exited.pid) worker = w.get();
    }
    if (worker != nullptr) {
      RemoveWorker(worker, exited.how);
    } else if (!exited.clean) {
      Log("local worker " + std::to_string(exited.pid) + " " + exited.how);
    }
    if (signals_ > 0 || !fatal_.empty() || (input_->done() && window_.empty())) continue;
    if (++local_failures_in_a_row_ > 3 + 2 * std::max(1, config_.workers)) {
      fatal_ = "local workers keep exiting (last: " + exited.how + ")";
      continue;
    }
    pid_t pid;
    Status status = local_->Spawn(&pid);
    if (!status.ok()) fatal_ = status.message();
  }
}

void Coordinator::HandleSignals() {
  signalfd_siginfo info;
  bool child = false;
  while (read(signal_fd_, &info, sizeof info) == sizeof info) {
    if (info.ssi_signo == SIGCHLD) {
      child = true;
      continue;
    }
    if (++signals_ == 1) {
      drain_deadline_ms_ = NowMillis() + kDrainGraceMs;
      Log(std::string(strsignal(static_cast<int>(info.ssi_signo))) +
          ": finishing the tasks in flight (again to stop now)");
    }
  }
  if (child) ReapLocalWorkers();
}

void Coordinator::WriteRecord(uint64_t index, Slot& slot) {
  if (slot.written) return;
  slot.written = true;
  writer_->Write(index, slot.result);
  ++written_;
  if (!slot.result.ok) ++failed_;
  // Free the text now; the slot itself goes when the prefix reaches it.
  Result().value.swap(slot.result.value);
  std::string().swap(slot.item);
}

void Coordinator::WriteReady() {
  window_.PopReady([this](uint64_t index, Slot& slot) { WriteRecord(index, slot); });
}

size_t Coordinator::InFlight() const {
  size_t n = 0;
  for (const auto& w : workers_) n += w->credit.outstanding();
  return n;
}

ProgressCounts Coordinator::Counts() const {
  ProgressCounts c;
  c.done = written_;
  c.total = total_;
  c.failed = failed_;
  c.workers = workers_.size();
  return c;
}

void Coordinator::Shutdown() {
  std::string stop = EncodeStop("the run is over");
  std::vector<std::string> unacknowledged;
  for (auto& w : workers_) {
    if (SendTo(*w, stop)) unacknowledged.push_back(w->routing_id);
  }
  // Wait (briefly) for each worker to acknowledge its STOP: closing our end
  // while a worker's frames are unread can reset the connection and discard
  // the STOP on its way.
  int64_t give_up = NowMillis() + 1000;
  while (!unacknowledged.empty() && NowMillis() < give_up) {
    std::vector<zmq::pollitem_t> items = {{router_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, std::chrono::milliseconds(50));
    zmq::message_t id, frame;
    while (router_.recv(id, zmq::recv_flags::dontwait)) {
      bool more = id.more();
      while (more && router_.recv(frame, zmq::recv_flags::dontwait)) more = frame.more();
      Message message;
      if (DecodeMessage(frame.data(), frame.size(), &message).ok() &&
          message.type == MessageType::kHeartbeat) {
        auto it = std::find(unacknowledged.begin(), unacknowledged.end(), id.to_string());
        if (it != unacknowledged.end()) unacknowledged.erase(it);
      }
    }
  }
  if (local_ == nullptr) return;
  // Workers that never said HELLO cannot be told to stop: signal them.
  for (pid_t pid : local_->pids()) {
    bool connected = std::any_of(workers_.begin(), workers_.end(),
                                 [pid](const auto& w) { return w->local_pid == pid; });
    if (!connected) local_->Signal(pid, SIGTERM);
  }
  local_->StopAll(2000);
}

int Coordinator::Run() {
  Status status = SetUp();
  if (!status.ok()) {
    Log(status.message());
    return kExitUsage;
  }
  std::vector<zmq::pollitem_t> items;
  for (;;) {
    ReadInput();
    Dispatch();
    WriteReady();
    if (!fatal_.empty()) break;
    if (input_->done() && window_.empty()) break;
    if (signals_ > 1) break;
    if (signals_ == 1 && (InFlight() == 0 || NowMillis() >= drain_deadline_ms_)) break;
    progress_->Update(Counts());

    int64_t now = NowMillis();
    long timeout = kTickMs;
    bool want_input = WantInput();
    if (want_input && input_->is_regular_file()) timeout = 0;
    if (writer_->buffered() > 0) {
      if (timeout > 0 &&
          (writer_->buffered() >= (64u << 10) || now - last_flush_ms_ >= kFlushEveryMs)) {
        writer_->Flush();
        last_flush_ms_ = now;
      } else {
        timeout = std::min<long>(timeout, kFlushEveryMs);
      }
    }
    items.clear();
    items.push_back({router_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({nullptr, signal_fd_, ZMQ_POLLIN, 0});
    if (want_input && !input_->is_regular_file())
      items.push_back({nullptr, input_->fd(), ZMQ_POLLIN, 0});
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout));
    if (items.size() > 2 && (items[2].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) input_readable_ = true;
    if (items[1].revents & ZMQ_POLLIN) HandleSignals();
    ReceiveFrames();
    Tick();
  }
  WriteReady();
  Status flushed = writer_->Flush();
  progress_->Finish(Counts());
  Shutdown();

  if (!fatal_.empty()) {
    Log(fatal_);
    return kExitUsage;
  }
  if (!flushed.ok()) {
    Log(flushed.message());
    return kExitUsage;
  }
  if (duplicates_ > 0 || bad_frames_ > 0) {
    Log(std::to_string(duplicates_) + " duplicate result(s) dropped, " +
        std::to_string(bad_frames_) + " bad frame(s) dropped");
  }
  if (signals_ > 0) {
    Log("interrupted: " + std::to_string(written_) + " record(s) written");
    return kExitInterrupted;
  }
  if (failed_ > 0) {
    Log(std::to_string(failed_) + " of " + std::to_string(written_) + " item(s) failed");
    return kExitItemsFailed;
  }
  return kExitOk;
}

}  // namespace

int RunCoordinator(const Config& config) {
  Coordinator coordinator(config);
  return coordinator.Run();
}

}  // namespace fanmap
