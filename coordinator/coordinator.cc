#include "coordinator/coordinator.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <thread>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/curve_keys.h"
#include "common/exit_status.h"
#include "common/job_keys.h"
#include "common/json_text.h"
#include "coordinator/credit.h"
#include "coordinator/input_reader.h"
#include "coordinator/local_workers.h"
#include "coordinator/progress.h"
#include "coordinator/rate_limiter.h"
#include "coordinator/record_writer.h"
#include "coordinator/reorder_buffer.h"
#include "coordinator/resume_log.h"
#include "coordinator/retry_policy.h"
#include "coordinator/zap_handler.h"

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
constexpr int64_t kMaxRespawnDelayMs = 2000;
// A task is a straggler when it has run this many times longer than tasks
// usually take (and at least kMinStragglerMs).
constexpr double kStragglerFactor = 4;
constexpr int64_t kMinStragglerMs = 500;
// Only the oldest unfinished tasks hold the output back; look at these.
constexpr size_t kStragglerScan = 64;
// Bounds on what a worker claims, so that one bad peer cannot take every
// task, blow up the window, or overflow the task-time average.
constexpr uint32_t kMaxSlotsPerWorker = 65536;
constexpr uint64_t kMaxElapsedMicros = 1000000000000;  // 11.6 days

struct Worker {
  uint32_t id = 0;
  std::string routing_id;
  Hello hello;
  WorkerCredit credit{1};
  int64_t last_heard_ms = 0;
  int64_t last_sent_ms = 0;
  pid_t local_pid = 0;  // non-zero for workers this coordinator spawned
  uint64_t completed = 0;
};

// 128 random bits as 32 hex digits, from the kernel's random source: a run
// id that no other run, past or concurrent, shares.
std::string NewRunId() {
  std::random_device random;
  std::string id;
  static const char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 4; ++i) {
    uint32_t word = random();
    for (int k = 0; k < 8; ++k, word >>= 4) id += kHex[word & 15];
  }
  return id;
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

// LLM tokens a request will cost, before its response says: ~4 bytes a token.
double EstimateTokens(const std::string& item) { return 1.0 + item.size() / 4.0; }

// True for endpoints only this machine can reach.
bool IsLocalEndpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string host = endpoint.substr(6, endpoint.rfind(':') - 6);
  return host.rfind("127.", 0) == 0 || host == "localhost" || host == "[::1]";
}

int64_t ExtraInt(const Result& result, const char* key, int64_t fallback) {
  auto it = result.extra.find(key);
  if (it == result.extra.end()) return fallback;
  const int64_t* v = std::get_if<int64_t>(&it->second);
  return v != nullptr ? *v : fallback;
}

class Coordinator {
 public:
  explicit Coordinator(const Config& config)
      : config_(config),
        router_(context_, zmq::socket_type::router),
        host_(HostName()),
        retry_policy_(config.retries, static_cast<uint64_t>(NowMicros()) ^ getpid()),
        limiter_(config.rate_per_s, static_cast<double>(config.tokens_per_min)) {}
  ~Coordinator();

  int Run();

 private:
  void Log(const std::string& line) {
    if (progress_ != nullptr) progress_->Clear();
    std::fprintf(stderr, "fanmap: %s\n", line.c_str());
  }
  Status SetUp();
  Status SetUpSecurity();
  void HandleMonitorEvent();
  Status OpenOutput();
  Status StartLocalWorkers();
  size_t WindowLimit() const;
  bool WantInput() const;
  void ReadInput();
  void AddItem(std::string line);
  bool NextTask(uint64_t* index);
  void ReleaseDueRetries();
  void Dispatch();
  bool SendTo(Worker& worker, const std::string& frame);
  void SendToId(const std::string& routing_id, const std::string& frame);
  void ReceiveFrames();
  void HandleFrame(const std::string& routing_id, const zmq::message_t& frame);
  void HandleHello(const std::string& routing_id, const Hello& hello);
  void HandleResults(Worker* worker, std::vector<Result>* results);
  void HandleResult(Result* result);
  static void Sanitize(Result* result);
  void Requeue(uint64_t index, Slot* slot, int64_t delay_ms);
  void Fail(uint64_t index, Slot* slot, const std::string& error);
  Worker* FindWorker(const std::string& routing_id);
  // `exited`: the local process is already reaped (nothing to kill).
  void RemoveWorker(Worker* worker, const std::string& why, bool exited = false);
  void Tick();
  void Speculate();
  void ReapLocalWorkers();
  void SpawnDueWorkers();
  void HandleSignals();
  void WriteReady();
  void WriteRecord(uint64_t index, Slot& slot);
  size_t InFlight() const;
  long PollTimeout();
  ProgressCounts Counts() const;
  void Shutdown();
  bool Running() const { return signals_ == 0 && fatal_.empty(); }

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
  std::unique_ptr<ResumeLog> resume_;
  std::unique_ptr<ZapHandler> zap_;  // set when CurveZMQ is on
  std::unique_ptr<zmq::socket_t> monitor_;
  CurveKeyPair server_keys_;
  size_t handshake_failures_ = 0;
  std::string rewrite_path_;  // --resume that rewrites: the new file, renamed at the end
  JobSpec job_;
  ReorderBuffer window_;
  RetryPolicy retry_policy_;
  RateLimiter limiter_;
  std::deque<uint64_t> retry_;  // requeued indexes, sent before new ones
  // Retries waiting for their backoff: (due time in ms, index), soonest first.
  std::priority_queue<std::pair<int64_t, uint64_t>, std::vector<std::pair<int64_t, uint64_t>>,
                      std::greater<>>
      delayed_;
  uint64_t next_new_ = 0;  // first index never sent
  uint64_t send_seq_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  uint32_t next_worker_id_ = 1;
  size_t round_robin_ = 0;
  bool input_readable_ = false;
  int64_t rate_wait_until_us_ = 0;  // the rate limiter said "not before"
  double mean_task_us_ = 0;         // over all workers, for straggler detection
  uint64_t total_ = 0;
  uint64_t written_ = 0;
  uint64_t failed_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t bad_frames_ = 0;
  uint64_t retried_ = 0;
  uint64_t backups_ = 0;
  int local_failures_in_a_row_ = 0;
  std::vector<int64_t> respawn_at_ms_;  // local workers to start again
  std::vector<pid_t> killed_pids_;      // local workers we killed ourselves
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
    unlink((ipc_dir_ + "/worker.key").c_str());
    unlink((ipc_dir_ + "/worker.pub").c_str());
    rmdir(ipc_dir_.c_str());
  }
}

Status Coordinator::OpenOutput() {
  if (!config_.resume) {
    return RecordWriter::Open(config_.output_path, config_.output_format, &writer_);
  }
  resume_ = std::make_unique<ResumeLog>();
  Status status = ResumeLog::Load(config_.output_path, !config_.resume_failed, !config_.unordered,
                                  resume_.get());
  if (!status.ok()) return status;
  std::string note = "resuming: " + std::to_string(resume_->kept()) + " record(s) kept";
  if (resume_->dropped() > 0)
    note += ", " + std::to_string(resume_->dropped()) + " failed to rerun";
  if (resume_->torn_bytes() > 0) note += ", a torn last line cut off";
  Log(note);
  if (resume_->append()) {
    return RecordWriter::OpenAppend(config_.output_path, resume_->valid_bytes(),
                                    config_.output_format, &writer_);
  }
  rewrite_path_ = config_.output_path + ".resume-tmp";
  return RecordWriter::Open(rewrite_path_, config_.output_format, &writer_);
}

Status Coordinator::SetUp() {
  Status status = InputReader::Open(config_.input_path, &input_);
  if (!status.ok()) return status;
  status = OpenOutput();
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
  job_.run_id = NewRunId();
  job_.options[job_key::kLivenessMs] = std::to_string(config_.heartbeat_ms);
  status = SetUpSecurity();
  if (!status.ok()) return status;

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

Status Coordinator::SetUpSecurity() {
  if (config_.curve_secret_path.empty()) {
    if (!config_.authorized_keys_path.empty()) {
      return Status::Error("--authorized-keys needs --curve-secret");
    }
    for (const std::string& endpoint : config_.listen) {
      if (IsLocalEndpoint(endpoint)) continue;
      if (!config_.insecure) {
        return Status::Error("listening on " + endpoint +
                             " without keys would let anyone join, read the tasks and forge "
                             "results: give --curve-secret and --authorized-keys (see 'fanmap "
                             "keygen'), or --insecure on a network you trust");
      }
      if (job_.options.count(job_key::kApiKey) > 0) {
        return Status::Error("the API key would travel in clear text to workers on " + endpoint +
                             ": use --curve-secret and --authorized-keys");
      }
    }
    return Status::Ok();
  }
  if (config_.authorized_keys_path.empty()) {
    return Status::Error("--curve-secret needs --authorized-keys FILE|DIR (the workers' keys)");
  }
  Status status = ReadSecretKey(config_.curve_secret_path, &server_keys_);
  if (!status.ok()) return status;
  std::set<std::string> authorized;
  status = ReadAuthorizedKeys(config_.authorized_keys_path, &authorized);
  if (!status.ok()) return status;
  try {
    // The handler must exist before the socket binds.
    zap_ = std::make_unique<ZapHandler>(context_, std::move(authorized),
                                        [this](const std::string& line) { Log(line); });
    router_.set(zmq::sockopt::curve_server, true);
    router_.set(zmq::sockopt::curve_secretkey, server_keys_.secret_key);
    router_.set(zmq::sockopt::zap_domain, "fanmap");
    // ZMQ_ZAP_ENFORCE_DOMAIN (a draft option in this libzmq): refuse every
    // client when no handler answers, instead of accepting them all.
    int one = 1;
    zmq_setsockopt(router_.handle(), 93, &one, sizeof one);
    // Handshakes that fail before ZAP (a client without CURVE) only show up
    // as socket events.
    const char* kMonitor = "inproc://fanmap-monitor";
    if (zmq_socket_monitor(
            router_.handle(), kMonitor,
            ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
      monitor_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
      monitor_->set(zmq::sockopt::linger, 0);
      monitor_->connect(kMonitor);
    }
  } catch (const zmq::error_t& e) {
    return Status::Error(std::string("cannot set up CurveZMQ: ") + e.what());
  }
  return Status::Ok();
}

void Coordinator::HandleMonitorEvent() {
  for (;;) {
    zmq::message_t event, address;
    if (!monitor_->recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more() && !monitor_->recv(address, zmq::recv_flags::none)) return;
    if (++handshake_failures_ <= 10) {
      Log("refused a connection that failed the CurveZMQ handshake (a client without the "
          "right keys?)" +
          (address.size() > 0 ? " on " + address.to_string() : std::string()));
    }
  }
}

Status Coordinator::StartLocalWorkers() {
  int n = config_.workers < 0 ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                              : config_.workers;
  if (n == 0) {
    if (config_.listen.empty()) return Status::Error("no workers: give -j N or --listen");
    return Status::Ok();
  }
  // An abstract socket ("@"): no file to leave behind, even when we are
  // killed outright.
  std::random_device random;
  std::string endpoint = "ipc://@fanmap-" + std::to_string(getpid()) + "-" +
                         std::to_string(random()) + std::to_string(random());
  try {
    router_.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Error("cannot bind " + endpoint + ": " + e.what());
  }
  std::vector<std::string> extra_args;
  if (zap_ != nullptr) {
    // Local workers pass the same door as remote ones, with a key made for
    // this run; its secret stays in a private directory.
    char dir[] = "/tmp/fanmap-XXXXXX";
    if (mkdtemp(dir) == nullptr) return Status::Error("cannot create a directory in /tmp");
    ipc_dir_ = dir;
    CurveKeyPair local_keys;
    Status status = GenerateKeyPair(&local_keys);
    if (status.ok()) status = WriteKeyPair(ipc_dir_ + "/worker", local_keys);
    if (!status.ok()) return status;
    zap_->Authorize(local_keys.public_key);
    extra_args = {"--curve-secret", ipc_dir_ + "/worker.key", "--server-key",
                  server_keys_.public_key};
  }
  std::string path = config_.worker_path.empty() ? DefaultWorkerPath() : config_.worker_path;
  local_ = std::make_unique<LocalWorkers>(path, endpoint, config_.slots, extra_args);
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
  if (!Running() || input_->done()) return false;
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
  bool resumed_ok;
  if (resume_ != nullptr && resume_->Has(window_.end(), &resumed_ok)) {
    uint64_t index = window_.Add(std::string());
    Slot* slot = window_.Find(index);
    slot->resumed = resume_->append() ? Resumed::kInFile : Resumed::kCopy;
    Result result;
    result.ok = resumed_ok;
    window_.Complete(index, std::move(result));
    return;
  }
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

void Coordinator::ReleaseDueRetries() {
  int64_t now = NowMillis();
  bool released = false;
  while (!delayed_.empty() && delayed_.top().first <= now) {
    retry_.push_back(delayed_.top().second);
    delayed_.pop();
    released = true;
  }
  if (released) std::sort(retry_.begin(), retry_.end());
}

void Coordinator::Dispatch() {
  if (!Running() || workers_.empty()) return;
  ReleaseDueRetries();
  int64_t now_us = NowMicros();
  if (now_us < rate_wait_until_us_) return;
  TasksEncoder encoder;
  std::vector<uint64_t> batch;  // indexes in the frame being built
  bool progress = true;
  bool rate_limited = false;
  while (progress && !rate_limited) {
    progress = false;
    for (size_t k = 0; k < workers_.size() && !rate_limited; ++k) {
      Worker& worker = *workers_[(round_robin_ + k) % workers_.size()];
      size_t budget = std::min(worker.credit.available(), kMaxTasksPerFrame);
      uint64_t index;
      while (encoder.count() < budget && encoder.bytes() < kMaxTaskBytesPerFrame) {
        if (!NextTask(&index)) break;
        Slot* slot = window_.Find(index);
        if (limiter_.limited() && !limiter_.TryAcquire(now_us, EstimateTokens(slot->item))) {
          retry_.push_front(index);  // first in line once the limiter allows
          int64_t wait = limiter_.WaitMicros(now_us, EstimateTokens(slot->item));
          rate_wait_until_us_ = now_us + std::max<int64_t>(wait, 1000);
          rate_limited = true;
          break;
        }
        slot->state = SlotState::kInFlight;
        slot->worker = worker.id;
        slot->backup_worker = 0;
        slot->sent_us = now_us;
        slot->sent_seq = ++send_seq_;
        slot->primary_attempt = slot->attempts++;
        ++slot->charged;
        encoder.Add(index, slot->primary_attempt, slot->item);
        batch.push_back(index);
      }
      if (encoder.count() == 0) continue;
      worker.credit.OnSent(encoder.count());
      if (!SendTo(worker, encoder.Finish())) {
        // The batch never left: it must not count as lost with the worker.
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
          Slot* slot = window_.Find(*it);
          slot->state = SlotState::kPending;
          --slot->charged;
          retry_.push_front(*it);
        }
        RemoveWorker(&worker, "cannot be reached");
        return;  // workers_ changed; the next loop iteration dispatches again
      }
      batch.clear();
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
    case MessageType::kHeartbeat:
      if (message.type == MessageType::kResults) HandleResults(worker, &message.results);
      if (worker == nullptr) {
        // A worker we declared dead came back (SIGCONT, a healed network): its
        // results count, but its tasks were given to others. It must drop
        // them and join again as a new worker.
        SendToId(routing_id,
                 Running() ? EncodeReset("silent for too long") : EncodeStop("the run is over"));
      }
      return;
    case MessageType::kBye:
      if (worker != nullptr) RemoveWorker(worker, "left (" + message.reason + ")");
      return;
    default:
      ++bad_frames_;
  }
}

void Coordinator::HandleHello(const std::string& routing_id, const Hello& hello) {
  if (!Running()) {
    SendToId(routing_id, EncodeStop("the run is ending"));
    return;
  }
  auto worker = std::make_unique<Worker>();
  worker->id = next_worker_id_++;
  worker->routing_id = routing_id;
  worker->hello = hello;
  worker->credit = WorkerCredit(
      std::min(hello.slots > 0 ? hello.slots : job_.default_slots, kMaxSlotsPerWorker));
  worker->last_heard_ms = NowMillis();
  if (local_ != nullptr && hello.host == host_) {
    std::vector<pid_t> pids = local_->pids();
    pid_t pid = static_cast<pid_t>(hello.pid);
    if (std::find(pids.begin(), pids.end(), pid) != pids.end()) worker->local_pid = pid;
  }
  bool local = worker->local_pid != 0;
  Worker& w = *worker;
  workers_.push_back(std::move(worker));
  if (!SendTo(w, EncodeJob(job_))) {
    RemoveWorker(&w, "cannot be reached");
    return;
  }
  if (!local) {
    Log("worker " + hello.name + " joined (host " + hello.host + ", " +
        std::to_string(w.credit.slots()) + " slots)");
  }
}

void Coordinator::Requeue(uint64_t index, Slot* slot, int64_t delay_ms) {
  slot->state = SlotState::kPending;
  slot->backup_worker = 0;
  ++retried_;
  if (delay_ms <= 0) {
    retry_.push_back(index);
  } else {
    // +1: NowMillis() truncates, and a retry must never precede Retry-After.
    delayed_.emplace(NowMillis() + delay_ms + 1, index);
  }
}

void Coordinator::Fail(uint64_t index, Slot* slot, const std::string& error) {
  Result result;
  result.index = index;
  result.ok = false;
  result.value = error;
  result.extra["attempts"] = static_cast<int64_t>(slot->charged);
  window_.Complete(index, std::move(result));
  if (config_.unordered) WriteRecord(index, *window_.Find(index));
}

void Coordinator::HandleResult(Result* result) {
  uint64_t index = result->index;
  Slot* slot = window_.Find(index);
  if (slot == nullptr || slot->state == SlotState::kDone) {
    ++duplicates_;
    return;
  }
  int64_t status = ExtraInt(*result, "status", 0);
  if (status == 429) {
    limiter_.OnThrottled(NowMicros());
  } else if (status != 0) {
    limiter_.OnAccepted(NowMicros());
  }
  int64_t tokens = ExtraInt(*result, "total_tokens", -1);
  if (tokens >= 0) limiter_.OnUsage(EstimateTokens(slot->item), static_cast<double>(tokens));
  if (!result->ok && result->retryable) {
    // Only the failure of a copy that still counts matters: a stale copy
    // (sent again since) changes nothing, and while another copy runs, that
    // copy may still succeed.
    if (slot->state != SlotState::kInFlight) return;
    bool backup = slot->backup_worker != 0;
    if (backup && result->attempt == slot->backup_attempt) {
      slot->backup_worker = 0;
      return;
    }
    if (result->attempt != slot->primary_attempt) return;
    if (backup) {
      slot->worker = slot->backup_worker;
      slot->primary_attempt = slot->backup_attempt;
      slot->backup_worker = 0;
      return;
    }
    if (retry_policy_.MayRetry(slot->charged)) {
      Requeue(index, slot, retry_policy_.DelayMillis(slot->charged, result->retry_after_ms));
      return;
    }
  }
  if (slot->charged > 1) result->extra["attempts"] = static_cast<int64_t>(slot->charged);
  window_.Complete(index, std::move(*result));
  if (config_.unordered) WriteRecord(index, *window_.Find(index));
}

// A worker's result goes into the output file as it is, and --resume trusts
// that file: a field that would shadow the record's own, or "JSON" that is
// not one JSON value on one line, must not get there.
void Coordinator::Sanitize(Result* result) {
  for (const char* key : {"index", "ok", "result", "error"}) result->extra.erase(key);
  if (result->value_is_json && (result->value.find_first_of("\r\n") != std::string::npos ||
                                !IsJsonValue(result->value, nullptr))) {
    result->value_is_json = false;
  }
  result->elapsed_us = std::min<uint64_t>(result->elapsed_us, kMaxElapsedMicros);
}

void Coordinator::HandleResults(Worker* worker, std::vector<Result>* results) {
  uint64_t total_us = 0;
  // With remote workers, each record says which worker produced it.
  bool name_workers = !config_.listen.empty() && worker != nullptr;
  for (Result& result : *results) {
    Sanitize(&result);
    total_us += result.elapsed_us;
    if (name_workers) result.extra["worker"] = worker->hello.name;
    HandleResult(&result);
  }
  if (results->empty()) return;
  double batch_mean = static_cast<double>(total_us) / results->size();
  mean_task_us_ = mean_task_us_ <= 0 ? batch_mean : 0.9 * mean_task_us_ + 0.1 * batch_mean;
  if (worker != nullptr) {
    worker->credit.OnResults(results->size(), total_us);
    worker->completed += results->size();
    local_failures_in_a_row_ = 0;
  }
}

void Coordinator::RemoveWorker(Worker* worker, const std::string& why, bool exited) {
  uint32_t id = worker->id;
  // Rare (a worker died), so a scan of the window is cheaper than keeping a
  // per-worker index on the hot path.
  std::vector<std::pair<uint64_t, uint64_t>> held;  // (send order, index)
  for (uint64_t i = window_.begin(); i < window_.end(); ++i) {
    Slot* slot = window_.Find(i);
    if (slot->state != SlotState::kInFlight) continue;
    if (slot->backup_worker == id) slot->backup_worker = 0;
    if (slot->worker != id) continue;
    if (slot->backup_worker != 0) {
      // The backup copy still runs elsewhere: it becomes the only copy.
      slot->worker = slot->backup_worker;
      slot->primary_attempt = slot->backup_attempt;
      slot->backup_worker = 0;
      continue;
    }
    held.emplace_back(slot->sent_seq, i);
  }
  // A worker runs its tasks in the order they were sent, `slots` at a time:
  // only the oldest ones were running when it died, and only those can be
  // what killed it. The others never started: they keep their attempt.
  std::sort(held.begin(), held.end());
  size_t running = worker->credit.slots();
  std::vector<std::string> poisoned;
  for (size_t k = 0; k < held.size(); ++k) {
    uint64_t index = held[k].second;
    Slot* slot = window_.Find(index);
    if (k >= running) {
      --slot->charged;
    } else if (!retry_policy_.MayRetry(slot->charged)) {
      Fail(index, slot,
           "worker lost " + std::to_string(slot->charged) +
               " time(s) while running this item (last: " + worker->hello.name + " " + why + ")");
      poisoned.push_back(std::to_string(index));
      continue;
    }
    Requeue(index, slot, 0);
  }
  std::sort(retry_.begin(), retry_.end());
  bool expected = worker->local_pid != 0 && why == "exit code 0";
  if (!expected) {
    Log("worker " + worker->hello.name + " " + why +
        (held.empty() ? "" : "; " + std::to_string(held.size()) + " task(s) sent again"));
  }
  if (!poisoned.empty()) {
    Log("gave up on item(s) " + poisoned.front() + (poisoned.size() > 1 ? ", ..." : "") +
        " after losing a worker on each attempt");
  }
  if (worker->local_pid != 0 && local_ != nullptr && !exited) {
    local_->Signal(worker->local_pid, SIGKILL);
    killed_pids_.push_back(worker->local_pid);
  }
  // Should it still be alive (stopped, cut off), it must drop its tasks and
  // join again as a new worker.
  SendToId(worker->routing_id, Running() ? EncodeReset(why) : EncodeStop("removed: " + why));
  workers_.erase(
      std::find_if(workers_.begin(), workers_.end(), [id](const auto& w) { return w->id == id; }));
}

void Coordinator::Speculate() {
  if (!config_.speculate || mean_task_us_ <= 0) return;
  // Only when there is nothing new to give: the input is exhausted (or the
  // window full) and nothing waits to be sent.
  if (!retry_.empty() || !delayed_.empty() || next_new_ < window_.end() || WantInput()) return;
  std::vector<Worker*> idle;
  for (auto& w : workers_) {
    if (w->credit.outstanding() == 0) idle.push_back(w.get());
  }
  if (idle.empty()) return;
  int64_t now_us = NowMicros();
  int64_t threshold_us = std::max<int64_t>(kMinStragglerMs * 1000,
                                           static_cast<int64_t>(kStragglerFactor * mean_task_us_));
  size_t scanned = 0;
  for (uint64_t i = window_.begin(); i < window_.end() && scanned < kStragglerScan && !idle.empty();
       ++i) {
    Slot* slot = window_.Find(i);
    if (slot->state != SlotState::kInFlight) continue;
    ++scanned;
    if (slot->speculated || now_us - slot->sent_us < threshold_us) continue;
    auto it =
        std::find_if(idle.begin(), idle.end(), [slot](Worker* w) { return w->id != slot->worker; });
    if (it == idle.end()) break;
    Worker& backup = **it;
    idle.erase(it);
    TasksEncoder encoder;
    uint32_t attempt = slot->attempts;
    encoder.Add(i, attempt, slot->item);
    if (!SendTo(backup, encoder.Finish())) continue;
    ++slot->attempts;
    backup.credit.OnSent(1);
    slot->speculated = true;
    slot->backup_worker = backup.id;
    slot->backup_attempt = attempt;
    ++backups_;
  }
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
  SpawnDueWorkers();
  if (Running()) Speculate();
}

void Coordinator::ReapLocalWorkers() {
  if (local_ == nullptr) return;
  for (const ExitedWorker& exited : local_->Reap()) {
    Worker* worker = nullptr;
    for (auto& w : workers_) {
      if (w->local_pid == exited.pid) worker = w.get();
    }
    if (worker != nullptr) {
      RemoveWorker(worker, exited.how, /*exited=*/true);
    } else if (std::find(killed_pids_.begin(), killed_pids_.end(), exited.pid) !=
               killed_pids_.end()) {
      killed_pids_.erase(std::find(killed_pids_.begin(), killed_pids_.end(), exited.pid));
    } else if (!exited.clean) {
      Log("local worker " + std::to_string(exited.pid) + " " + exited.how);
    }
    if (!Running() || (input_->done() && window_.empty())) continue;
    // Replace it; when workers keep dying without finishing anything, wait
    // longer each time, and give up when it is hopeless (e.g. the worker
    // binary cannot start at all).
    ++local_failures_in_a_row_;
    if (local_failures_in_a_row_ > 5 + 3 * std::max(1, config_.workers)) {
      fatal_ = "local workers keep exiting (last: " + exited.how + ")";
      continue;
    }
    int64_t delay = local_failures_in_a_row_ <= 1
                        ? 0
                        : std::min<int64_t>(kMaxRespawnDelayMs,
                                            50ll << std::min(local_failures_in_a_row_ - 2, 10));
    respawn_at_ms_.push_back(NowMillis() + delay);
  }
  SpawnDueWorkers();
}

void Coordinator::SpawnDueWorkers() {
  int64_t now = NowMillis();
  for (size_t i = 0; i < respawn_at_ms_.size();) {
    if (respawn_at_ms_[i] > now || !Running()) {
      ++i;
      continue;
    }
    respawn_at_ms_.erase(respawn_at_ms_.begin() + static_cast<long>(i));
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
  ++written_;
  if (!slot.result.ok) ++failed_;
  if (slot.resumed == Resumed::kInFile) return;
  if (slot.resumed == Resumed::kCopy) {
    std::string line;
    Status status = resume_->Line(index, &line);
    if (!status.ok()) {
      fatal_ = status.message();
      return;
    }
    writer_->WriteVerbatim(line);
    return;
  }
  writer_->Write(index, slot.result);
  // Free the text now; the slot itself goes when the prefix reaches it.
  Result().value.swap(slot.result.value);
  window_.FreeItem(&slot);
}

void Coordinator::WriteReady() {
  window_.PopReady([this](uint64_t index, Slot& slot) { WriteRecord(index, slot); });
}

size_t Coordinator::InFlight() const {
  size_t n = 0;
  for (const auto& w : workers_) n += w->credit.outstanding();
  return n;
}

long Coordinator::PollTimeout() {
  int64_t now = NowMillis();
  long timeout = kTickMs;
  if (WantInput() && input_->is_regular_file()) return 0;
  if (!delayed_.empty())
    timeout = std::min<long>(timeout, std::max<int64_t>(0, delayed_.top().first - now));
  if (rate_wait_until_us_ > 0) {
    int64_t wait_ms = (rate_wait_until_us_ - NowMicros() + 999) / 1000;
    if (wait_ms > 0) timeout = std::min<long>(timeout, wait_ms);
  }
  for (int64_t at : respawn_at_ms_)
    timeout = std::min<long>(timeout, std::max<int64_t>(0, at - now));
  if (writer_->buffered() > 0) {
    if (writer_->buffered() >= (64u << 10) || now - last_flush_ms_ >= kFlushEveryMs) {
      writer_->Flush();
      last_flush_ms_ = now;
    } else {
      timeout = std::min<long>(timeout, kFlushEveryMs);
    }
  }
  return timeout;
}

ProgressCounts Coordinator::Counts() const {
  ProgressCounts c;
  c.done = written_;
  c.total = total_;
  c.failed = failed_;
  c.workers = workers_.size();
  std::set<std::string> hosts;
  for (const auto& w : workers_) {
    hosts.insert(w->hello.host);
    c.slots += w->credit.slots();
  }
  c.hosts = hosts.size();
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
    // Nobody reads the records any more (e.g. `| head`): stop now.
    if (!writer_->error().ok() && fatal_.empty()) fatal_ = writer_->error().message();
    if (!fatal_.empty()) break;
    if (input_->done() && window_.empty()) break;
    if (signals_ > 1) break;
    if (signals_ == 1 && (InFlight() == 0 || NowMillis() >= drain_deadline_ms_)) break;
    progress_->Update(Counts());

    long timeout = PollTimeout();
    bool want_input = WantInput() && !input_->is_regular_file();
    items.clear();
    items.push_back({router_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({nullptr, signal_fd_, ZMQ_POLLIN, 0});
    size_t zap_item = 0, monitor_item = 0, input_item = 0;
    if (zap_ != nullptr) {
      zap_item = items.size();
      items.push_back({zap_->socket().handle(), 0, ZMQ_POLLIN, 0});
    }
    if (monitor_ != nullptr) {
      monitor_item = items.size();
      items.push_back({monitor_->handle(), 0, ZMQ_POLLIN, 0});
    }
    if (want_input) {
      input_item = items.size();
      items.push_back({nullptr, input_->fd(), ZMQ_POLLIN, 0});
    }
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout));
    if (input_item != 0 && (items[input_item].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) {
      input_readable_ = true;
    }
    if (zap_item != 0 && (items[zap_item].revents & ZMQ_POLLIN)) zap_->Handle();
    if (monitor_item != 0 && (items[monitor_item].revents & ZMQ_POLLIN)) HandleMonitorEvent();
    if (items[1].revents & ZMQ_POLLIN) HandleSignals();
    ReceiveFrames();
    Tick();
  }
  WriteReady();
  Status flushed = writer_->Flush();
  progress_->Finish(Counts());
  Shutdown();

  bool complete = fatal_.empty() && flushed.ok() && signals_ == 0;
  if (!rewrite_path_.empty()) {
    writer_.reset();
    if (complete && rename(rewrite_path_.c_str(), config_.output_path.c_str()) != 0) {
      flushed = Status::Error("cannot replace '" + config_.output_path + "': " + strerror(errno));
    } else if (!complete) {
      unlink(rewrite_path_.c_str());  // the old file is still whole; resume again from it
    }
  }
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
    Log("interrupted: " + std::to_string(written_) + " record(s) written" +
        (config_.output_path.empty() ? "" : "; continue with --resume"));
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
