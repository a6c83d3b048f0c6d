#include "worker/worker.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <random>
#include <unordered_map>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/curve_keys.h"
#include "common/exit_status.h"
#include "common/job_keys.h"
#include "common/protocol.h"
#include "worker/payload.h"
#include "worker/result_hold.h"
#include "worker/task_result.h"

namespace fanmap {
namespace {

// Results are sent when this many are ready, or before the loop would sleep
// (but see kResultHoldMicros).
constexpr size_t kMaxResultsPerFrame = 1024;
static_assert(kMaxResultsPerFrame <= kMaxFrameResults, "the coordinator would refuse our RESULTS");
// Under kUnscannedFrameBytes with room for what the count leaves out
// (extra fields, msgpack's headers), so that the coordinator decodes the
// usual frame in one pass.
constexpr size_t kMaxResultBytesPerFrame = kUnscannedFrameBytes / 2;
constexpr long kDefaultLivenessMs = 5000;
// The longest sleep while waiting for a JOB (nothing is due in between).
constexpr int64_t kWaitForJobPollMs = 5000;
// How a stage of the worker's loop ended: what the loop does next.
enum class Outcome : uint8_t {
  kNone,         // nothing decided yet: keep going
  kJobArrived,   // WaitForJob: serve it
  kRejoin,       // drop everything and say HELLO again (reset, or coordinator lost)
  kStopped,      // the coordinator said STOP: exit 0
  kRefused,      // refused, another protocol, or a job we cannot run: exit 2
  kGaveUp,       // no job in time, or coordinator lost without rejoin: exit 1
  kInterrupted,  // SIGTERM/SIGINT: tell the coordinator BYE, exit 130
};

ExitStatus ExitStatusOf(Outcome outcome) {
  switch (outcome) {
    case Outcome::kStopped:
      return kExitOk;
    case Outcome::kRefused:
      return kExitUsage;
    case Outcome::kInterrupted:
      return kExitInterrupted;
    default:
      return kExitItemsFailed;
  }
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

int64_t OptionInt(const JobSpec& job, const std::string& key, int64_t fallback) {
  auto it = job.options.find(key);
  if (it == job.options.end()) return fallback;
  char* end = nullptr;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  return end != it->second.c_str() && *end == '\0' ? v : fallback;
}

class WorkerLoop {
 public:
  explicit WorkerLoop(const WorkerConfig& config)
      : config_(config), socket_(context_, zmq::socket_type::dealer) {}

  ~WorkerLoop() {
    if (signal_fd_ >= 0) close(signal_fd_);
  }

  int Run();

 private:
  void Log(const std::string& line) {
    if (!config_.quiet) std::fprintf(stderr, "fanmap-worker: %s\n", line.c_str());
  }
  bool SetUp();
  bool Connect();
  void Forget();
  Outcome WaitForJob();
  Outcome Serve();
  Outcome HandleFrame(const zmq::message_t& frame);
  void StartTasks();
  // Moves the payload's results to the frame being built; `now`: the time,
  // if the caller has just read it. True if that sent a frame (full).
  bool CollectResults(int64_t now = -1);
  void ExpireDeadlines();
  long MillisToNextDeadline() const;
  void FlushResults();
  // True if the ready results should be sent now (result_hold.h); else
  // lowers `*timeout_ms` to when they must be.
  bool ResultsDue(long* timeout_ms) const;
  void Send(std::string frame);
  void FlushOutbox();
  bool CheckSignals();
  void ReportRefusedHandshake();

  const WorkerConfig& config_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  int signal_fd_ = -1;
  CurveKeyPair keys_;
  std::unique_ptr<zmq::socket_t> monitor_;  // handshake failures of socket_
  int connects_ = 0;
  bool handshake_reported_ = false;
  std::string server_public_key_;
  std::unique_ptr<Payload> payload_;
  std::string run_id_;  // of the JOB being served; stamped on every RESULTS
  ResultSink sink_;
  size_t sink_collected_ = 0;  // sink_[0, sink_collected_) are stamped and queued
  std::vector<Result> ready_;
  size_t ready_bytes_ = 0;
  int64_t ready_since_us_ = 0;  // when the oldest of ready_ was made ready
  double mean_task_us_ = -1;    // of recent results; -1: none yet
  std::deque<Task> queued_;
  struct Started {
    int64_t start_us;
    uint32_t attempt;
  };
  std::unordered_map<uint64_t, Started> started_;  // running tasks by index
  // Running tasks in start order, which is deadline order (one timeout for
  // all); entries of finished tasks are skipped lazily.
  std::deque<std::pair<int64_t, uint64_t>> deadlines_;
  int64_t timeout_us_ = 0;  // 0 = no deadline
  std::deque<std::string> outbox_;
  unsigned slots_ = 1;
  long liveness_ms_ = kDefaultLivenessMs;
  int64_t last_heard_ms_ = 0;
  int64_t last_sent_ms_ = 0;
};

bool WorkerLoop::SetUp() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (config_.server_key.empty() != config_.curve_secret_path.empty()) {
    Log("--curve-secret and --server-key go together");
    return false;
  }
  if (!config_.server_key.empty()) {
    Status status = ReadSecretKey(config_.curve_secret_path, &keys_);
    if (status.ok()) status = ReadPublicKey(config_.server_key, &server_public_key_);
    if (!status.ok()) {
      Log(status.message());
      return false;
    }
  }
  return Connect();
}

bool WorkerLoop::Connect() {
  // A fresh socket is a fresh identity: the coordinator sees a new worker.
  socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);
  try {
    if (!config_.server_key.empty()) {
      // CURVE options must be set before connect.
      socket_.set(zmq::sockopt::curve_serverkey, server_public_key_);
      socket_.set(zmq::sockopt::curve_publickey, keys_.public_key);
      socket_.set(zmq::sockopt::curve_secretkey, keys_.secret_key);
    }
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::immediate, 1);
    // Workers often start before their coordinator (ssh, srun, kubernetes)
    // and may wait for minutes. A refused connect costs ~50 us of CPU on our
    // 2-core test VM: retrying every 20 ms, 1,000 waiting workers took both
    // cores. libzmq 4.3.4 retries after `ivl + rand() % reconnect_ivl` ms,
    // `ivl` doubling from reconnect_ivl up to reconnect_ivl_max
    // (get_new_reconnect_ivl in stream_connecter_base.cpp), but it never
    // seeds rand(): that jitter is the same sequence in every process, and
    // workers started together would retry in step for ever. So each socket
    // draws its reconnect_ivl from [100, 200) ms, which also makes libzmq's
    // jitter differ between workers. The 750 ms cap keeps the longest wait
    // for a coordinator that has just started under a second (750 ms plus up
    // to 199 ms of jitter), while a waiting worker tries ~1.2 times a second:
    // 1,000 of them spend ~7 % of one core on it and, once it listens, arrive
    // ~1.2 per ms, far below its listen backlog (scripts/bench-crowd). After a
    // dropped connection the same schedule starts again.
    constexpr int kReconnectIvlMs = 100;
    constexpr int kReconnectIvlMaxMs = 750;
    std::random_device random;
    const int reconnect_ivl_ms =
        kReconnectIvlMs + std::uniform_int_distribution<int>(0, kReconnectIvlMs - 1)(random);
    socket_.set(zmq::sockopt::reconnect_ivl, reconnect_ivl_ms);
    socket_.set(zmq::sockopt::reconnect_ivl_max, kReconnectIvlMaxMs);
    socket_.set(zmq::sockopt::maxmsgsize, kMaxFrameBytes);
    socket_.set(zmq::sockopt::sndhwm, 0);
    socket_.set(zmq::sockopt::rcvhwm, 0);
    // A refused handshake (wrong keys, or keys the coordinator does not
    // expect) is silent on this side unless we watch the socket's events.
    monitor_.reset();
    std::string monitor = "inproc://fanmap-worker-monitor-" + std::to_string(++connects_);
    if (zmq_socket_monitor(socket_.handle(), monitor.c_str(),
                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
      monitor_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
      monitor_->set(zmq::sockopt::linger, 0);
      monitor_->connect(monitor);
    }
    socket_.connect(config_.endpoint);
  } catch (const zmq::error_t& e) {
    Log("cannot connect to '" + config_.endpoint + "': " + e.what());
    return false;
  }
  return true;
}

void WorkerLoop::ReportRefusedHandshake() {
  zmq::message_t event, address;
  while (monitor_->recv(event, zmq::recv_flags::dontwait)) {
    if (event.more() && !monitor_->recv(address, zmq::recv_flags::none)) return;
    if (handshake_reported_) continue;
    handshake_reported_ = true;
    Log("the coordinator at " + config_.endpoint + " refused our handshake: " +
        (config_.server_key.empty()
             ? "it probably expects CurveZMQ keys (--curve-secret, --server-key)"
             : "our key is not authorized there, or --server-key is not its key") +
        "; still trying");
  }
}

bool WorkerLoop::CheckSignals() {
  signalfd_siginfo info;
  bool got = false;
  while (read(signal_fd_, &info, sizeof info) == sizeof info) got = true;
  return got;
}

void WorkerLoop::Send(std::string frame) {
  outbox_.push_back(std::move(frame));
  FlushOutbox();
}

void WorkerLoop::FlushOutbox() {
  while (!outbox_.empty()) {
    const std::string& frame = outbox_.front();
    zmq::send_result_t sent;
    try {
      sent = socket_.send(zmq::buffer(frame), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      Log(std::string("send failed: ") + e.what());
      return;
    }
    if (!sent) return;  // no peer yet or HWM: retried when the socket is writable
    outbox_.pop_front();
    last_sent_ms_ = NowMillis();
  }
}

Outcome WorkerLoop::WaitForJob() {
  Hello hello;
  hello.slots = config_.slots;
  hello.host = HostName();
  hello.pid = static_cast<uint32_t>(getpid());
  hello.name = config_.name.empty() ? hello.host + ":" + std::to_string(hello.pid) : config_.name;
  Send(EncodeHello(hello));

  int64_t give_up =
      config_.connect_timeout_s > 0 ? NowMillis() + config_.connect_timeout_s * 1000ll : INT64_MAX;
  while (!payload_) {
    std::vector<zmq::pollitem_t> items = {
        {socket_.handle(), 0, static_cast<short>(ZMQ_POLLIN | (outbox_.empty() ? 0 : ZMQ_POLLOUT)),
         0},
        {nullptr, signal_fd_, ZMQ_POLLIN, 0}};
    if (monitor_) items.push_back({monitor_->handle(), 0, ZMQ_POLLIN, 0});
    // Everything that matters wakes the poll (the socket connecting or
    // answering, a signal, a refused handshake): a crowd of workers waiting
    // for their coordinator must cost almost nothing.
    int64_t wait_ms = std::clamp<int64_t>(give_up - NowMillis(), 0, kWaitForJobPollMs);
    zmq::poll(items, std::chrono::milliseconds(wait_ms));
    if (CheckSignals()) return Outcome::kInterrupted;
    if (monitor_ && (items[2].revents & ZMQ_POLLIN)) ReportRefusedHandshake();
    FlushOutbox();
    zmq::message_t frame;
    while (!payload_ && socket_.recv(frame, zmq::recv_flags::dontwait)) {
      Outcome outcome = HandleFrame(frame);
      if (outcome != Outcome::kNone) return outcome;
    }
    if (!payload_ && NowMillis() > give_up) {
      Log("no job from " + config_.endpoint + " within " +
          std::to_string(config_.connect_timeout_s) + " s; giving up");
      return Outcome::kGaveUp;
    }
  }
  return Outcome::kJobArrived;
}

Outcome WorkerLoop::HandleFrame(const zmq::message_t& frame) {
  Message message;
  Status status = DecodeMessage(frame.data(), frame.size(), &message);
  if (!status.ok()) {
    if (message.type == MessageType::kRefuse) {
      Log("refused by coordinator: " +
          (message.reason.empty() ? status.message() : message.reason));
      return Outcome::kRefused;
    }
    if (message.version != kProtocolVersion) {
      Log("coordinator speaks another protocol: " + status.message());
      return Outcome::kRefused;
    }
    Log("dropped a bad frame: " + status.message());
    return Outcome::kNone;
  }
  last_heard_ms_ = NowMillis();
  switch (message.type) {
    case MessageType::kJob: {
      if (payload_) return Outcome::kNone;  // a repeated JOB changes nothing
      slots_ = config_.slots > 0 ? config_.slots : std::max(1u, message.job.default_slots);
      liveness_ms_ =
          std::max<long>(100, OptionInt(message.job, job_key::kLivenessMs, kDefaultLivenessMs));
      timeout_us_ = std::max<int64_t>(0, OptionInt(message.job, job_key::kTimeoutMs, 0)) * 1000;
      run_id_ = message.job.run_id;
      Status made = MakePayload(message.job, &sink_, &payload_);
      if (!made.ok()) {
        Log("cannot run this job: " + made.message());
        return Outcome::kRefused;
      }
      return Outcome::kNone;
    }
    case MessageType::kTasks:
      // Tasks before a JOB belong to no job we know: never run them.
      if (!payload_) return Outcome::kNone;
      for (Task& task : message.tasks) queued_.push_back(std::move(task));
      return Outcome::kNone;
    case MessageType::kHeartbeat:
      return Outcome::kNone;
    case MessageType::kReset:
      Log("the coordinator reset us (" + message.reason + "); joining again");
      return Outcome::kRejoin;
    case MessageType::kStop:
      // Acknowledge, so that the coordinator knows the STOP arrived before it
      // closes its socket; linger lets the acknowledgement leave.
      Send(EncodeHeartbeat());
      socket_.set(zmq::sockopt::linger, 500);
      return Outcome::kStopped;
    case MessageType::kRefuse:
      Log("refused by coordinator: " + message.reason);
      return Outcome::kRefused;
    default:
      Log("dropped an unexpected message of type " +
          std::to_string(static_cast<int>(message.type)));
      return Outcome::kNone;
  }
}

void WorkerLoop::StartTasks() {
  // One clock read per task: the end of one is the start of the next (tasks
  // that finish at once, such as echo, take well under a microsecond, as
  // long as a read of the clock on some machines).
  if (queued_.empty() || payload_->running() >= slots_) return;
  int64_t now = NowMicros();
  while (!queued_.empty() && payload_->running() < slots_) {
    Task task = std::move(queued_.front());
    queued_.pop_front();
    int64_t start = now;
    size_t before = sink_.size();
    uint64_t index = task.index;
    uint32_t attempt = task.attempt;
    payload_->Start(std::move(task));
    now = NowMicros();
    if (sink_.size() > before) {
      // Finished at once (echo): stamp it here, no bookkeeping needed.
      sink_.back().elapsed_us = static_cast<uint64_t>(now - start);
    } else {
      started_[index] = Started{start, attempt};
      if (timeout_us_ > 0) deadlines_.emplace_back(start + timeout_us_, index);
    }
    // Encoding and sending a full frame takes longer than a task: the next
    // one starts after it.
    if (CollectResults(now)) now = NowMicros();
  }
}

bool WorkerLoop::CollectResults(int64_t now) {
  if (sink_.empty()) return false;
  if (now < 0) now = NowMicros();
  bool sent = false;
  for (Result& result : sink_) {
    auto it = started_.find(result.index);
    if (it != started_.end()) {
      // A payload that knows better (a co-process's time per answer, not the
      // time an item queued in its window) has set it already.
      if (result.elapsed_us == 0)
        result.elapsed_us = static_cast<uint64_t>(now - it->second.start_us);
      started_.erase(it);
    }
    mean_task_us_ = mean_task_us_ < 0 ? static_cast<double>(result.elapsed_us)
                                      : 0.9 * mean_task_us_ + 0.1 * result.elapsed_us;
    FailIfTooLarge(&result);
    if (ready_.empty()) ready_since_us_ = now;
    // Every string field counts: two results with large stderr fields
    // must not share a frame.
    ready_bytes_ += TextBytes(result) + 32;
    ready_.push_back(std::move(result));
    if (ready_.size() >= kMaxResultsPerFrame || ready_bytes_ >= kMaxResultBytesPerFrame) {
      FlushResults();
      sent = true;
    }
  }
  sink_.clear();
  return sent;
}

void WorkerLoop::ExpireDeadlines() {
  int64_t now = NowMicros();
  while (!deadlines_.empty() && deadlines_.front().first <= now) {
    uint64_t index = deadlines_.front().second;
    deadlines_.pop_front();
    auto it = started_.find(index);
    if (it == started_.end()) continue;  // finished in time
    Task task;
    task.index = index;
    task.attempt = it->second.attempt;
    started_.erase(it);
    payload_->Cancel(index);
    // Cancelling may have failed other tasks (a co-process holds several):
    // collect them now, so that their own deadlines do not fail them twice.
    CollectResults();
    char text[64];
    std::snprintf(text, sizeof text, "timed out after %.3g s", timeout_us_ / 1e6);
    sink_.push_back(RetryableError(task, text));
    sink_.back().elapsed_us = static_cast<uint64_t>(timeout_us_);
    sink_.back().cause = FailureCause::kTimeout;
  }
  CollectResults();
}

long WorkerLoop::MillisToNextDeadline() const {
  if (deadlines_.empty()) return -1;
  int64_t wait = deadlines_.front().first - NowMicros();
  return wait <= 0 ? 0 : static_cast<long>((wait + 999) / 1000);
}

bool WorkerLoop::ResultsDue(long* timeout_ms) const {
  if (ready_.empty()) return false;
  // started_: tasks handed to the payload and not finished (a co-process's
  // window included; payload_->running() counts whole windows).
  bool idle = queued_.empty() && started_.empty();
  int64_t left_us = ResultHoldMicros(mean_task_us_, idle, NowMicros() - ready_since_us_);
  if (left_us <= 0) return true;
  long left_ms = static_cast<long>((left_us + 999) / 1000);
  if (*timeout_ms < 0 || left_ms < *timeout_ms) *timeout_ms = left_ms;
  return false;
}

void WorkerLoop::FlushResults() {
  if (ready_.empty()) return;
  Send(EncodeResults(run_id_, ready_));
  ready_.clear();
  ready_bytes_ = 0;
}

Outcome WorkerLoop::Serve() {
  std::vector<zmq::pollitem_t> items;
  const long heartbeat_ms = std::max(50L, liveness_ms_ / 5);
  last_heard_ms_ = NowMillis();
  for (;;) {
    StartTasks();
    long timeout_ms = heartbeat_ms;
    if (ResultsDue(&timeout_ms)) FlushResults();

    items.clear();
    items.push_back({socket_.handle(), 0,
                     static_cast<short>(ZMQ_POLLIN | (outbox_.empty() ? 0 : ZMQ_POLLOUT)), 0});
    items.push_back({nullptr, signal_fd_, ZMQ_POLLIN, 0});
    payload_->AddPollItems(&items, &timeout_ms);
    long deadline_ms = MillisToNextDeadline();
    if (deadline_ms >= 0 && deadline_ms < timeout_ms) timeout_ms = deadline_ms;
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout_ms));

    if (CheckSignals()) return Outcome::kInterrupted;
    payload_->Advance(items.data() + 2, items.size() - 2);
    CollectResults();
    if (timeout_us_ > 0) ExpireDeadlines();
    FlushOutbox();

    zmq::message_t frame;
    // Bounded so that a flood of tasks cannot starve the payload.
    for (int i = 0; i < 64 && socket_.recv(frame, zmq::recv_flags::dontwait); ++i) {
      Outcome outcome = HandleFrame(frame);
      if (outcome != Outcome::kNone) return outcome;
    }

    int64_t now = NowMillis();
    if (now - last_heard_ms_ > liveness_ms_) {
      Log("coordinator silent for " + std::to_string(now - last_heard_ms_) + " ms" +
          (config_.rejoin ? "; reconnecting" : "; exiting"));
      return config_.rejoin ? Outcome::kRejoin : Outcome::kGaveUp;
    }
    if (now - last_sent_ms_ >= heartbeat_ms && outbox_.empty()) Send(EncodeHeartbeat());
  }
}

void WorkerLoop::Forget() {
  if (payload_) payload_->Shutdown();
  payload_.reset();
  run_id_.clear();
  sink_.clear();
  ready_.clear();
  ready_bytes_ = 0;
  mean_task_us_ = -1;
  queued_.clear();
  started_.clear();
  deadlines_.clear();
  outbox_.clear();
}

int WorkerLoop::Run() {
  if (!SetUp()) return kExitUsage;
  for (;;) {
    Outcome outcome = WaitForJob();
    if (outcome == Outcome::kJobArrived) outcome = Serve();
    if (outcome == Outcome::kInterrupted) {
      // Leaving on a signal: say so, so that our tasks go elsewhere at once
      // instead of after the liveness timeout.
      outbox_.clear();
      Send(EncodeBye("stopped by a signal"));
      socket_.set(zmq::sockopt::linger, 200);
    }
    Forget();
    if (outcome != Outcome::kRejoin) return ExitStatusOf(outcome);
    if (!Connect()) return kExitUsage;
  }
}

}  // namespace

int RunWorker(const WorkerConfig& config) {
  WorkerLoop loop(config);
  return loop.Run();
}

}  // namespace fanmap
