#include "coordinator/coordinator.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/curve_keys.h"
#include "common/exit_status.h"
#include "common/job_keys.h"
#include "common/json_text.h"
#include "common/printable.h"
#include "common/record_fields.h"
#include "coordinator/adaptive_rate.h"
#include "coordinator/circuit_breaker.h"
#include "coordinator/credit.h"
#include "coordinator/halt_policy.h"
#include "coordinator/input_reader.h"
#include "coordinator/item_fingerprint.h"
#include "coordinator/joblog.h"
#include "coordinator/local_workers.h"
#include "coordinator/log_limiter.h"
#include "coordinator/private_dir.h"
#include "coordinator/progress.h"
#include "coordinator/rate_limiter.h"
#include "coordinator/record_writer.h"
#include "coordinator/reorder_buffer.h"
#include "coordinator/resume_log.h"
#include "coordinator/retry_policy.h"
#include "coordinator/run_summary.h"
#include "coordinator/scheduler.h"
#include "coordinator/status_server.h"
#include "coordinator/zap_handler.h"

// A draft option in Debian's libzmq 4.3 (zmq.h defines it only with
// ZMQ_BUILD_DRAFT_API), though the library implements it: its number is
// part of libzmq's ABI.
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

namespace fanmap {
namespace {

constexpr size_t kMinWindow = 8192;
constexpr size_t kMaxWindowItemBytes = 64u << 20;
constexpr size_t kMaxTasksPerFrame = 1024;
static_assert(kMaxTasksPerFrame <= kMaxFrameTasks, "workers would refuse our TASKS frames");
// Frames stay under kUnscannedFrameBytes (unless one item is larger), so
// that workers decode them in one pass.
constexpr size_t kMaxTaskBytesPerFrame = kUnscannedFrameBytes / 2;
constexpr int kMaxFramesPerWake = 256;
// ... and no longer than this: heartbeats and ticks must not wait for a burst
// of big frames to be decoded.
constexpr int64_t kMaxReceiveMicros = 20000;
constexpr int64_t kFlushEveryMs = 20;
constexpr int64_t kTickMs = 100;
constexpr int64_t kDrainGraceMs = 3000;
constexpr int64_t kMaxRespawnDelayMs = 2000;
// Bounds on what a worker claims, so that one bad peer cannot blow up the
// window or overflow the task-time average.
constexpr uint32_t kMaxSlotsPerWorker = 65536;
constexpr uint64_t kMaxElapsedMicros = 1000000000000;  // 11.6 days
// Pending connections the kernel queues for the task socket: a crowd of
// workers that start before their coordinator all connect at once.
constexpr int kListenBacklog = 1024;

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

int64_t ExtraInt(const Result& result, std::string_view key, int64_t fallback) {
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
        scheduler_(SchedulerOptions{NewRunId(), config.heartbeat_ms, config.speculate,
                                    config.retries, static_cast<uint64_t>(NowMicros()) ^ getpid(),
                                    config.retry_for_ms}),
        limiter_(config.rate_per_s, static_cast<double>(config.tokens_per_min)),
        adaptive_(config.rate_per_s) {}
  ~Coordinator();

  int Run();

 private:
  void Log(const std::string& line) {
    if (progress_ != nullptr) progress_->Clear();
    std::fprintf(stderr, "fanmap: %s\n", line.c_str());
  }
  // Logs a line about misbehaving peers, at most a few per interval.
  void LogPeerTrouble(const std::string& line);
  Status SetUp();
  Status SetUpSecurity();
  void HandleMonitorEvent();
  Status OpenOutput();
  // Binds the local workers' socket (they start as items arrive: SpawnWanted).
  Status StartLocalWorkers();
  // A failure record this coordinator makes itself (a worker lost on every
  // attempt, a run that gave up on its server) gets the fields a worker's
  // record takes from its HTTP item (custom_id, metadata): consumers join
  // the output on them.
  void AddItemFields(Slot& slot);
  size_t WindowLimit() const;
  // True if another item may be read now; `window_limit`: WindowLimit();
  // `head_of_line`: past the window for the head-of-line worker too
  // (Scheduler::HeadOfLineRoom).
  bool WantInput() const;
  bool WantInput(size_t window_limit, bool head_of_line) const;
  void ReadInput();
  void AddItem(std::string line);
  void Dispatch();
  // An outage that lasted longer than --retry-for fails every item waiting.
  void GiveUpOnALongOutage(int64_t now_ms);
  bool SendTo(Worker& worker, const std::string& frame);
  void SendToId(const std::string& routing_id, const std::string& frame);
  void ReceiveFrames();
  void HandleFrame(const std::string& routing_id, const zmq::message_t& frame);
  void HandleHello(const std::string& routing_id, const Hello& hello, const zmq::message_t& frame);
  void HandleResults(const std::string& routing_id, Worker* worker, Message* message);
  void OnResponse(const Result& result, const Slot& slot);
  bool Charged(const Result& result) const;
  // What an answer says of the server (CircuitBreaker): HealthOf for --http
  // jobs, nothing for the others.
  ServerHealth Health(const Result& result) const;
  void ReportSummary();
  // `remote`: from a peer this coordinator did not spawn.
  static void Sanitize(Result* result, bool remote);
  pid_t SpawnedPid(const zmq::message_t& frame, const Hello& hello) const;
  // `exited`: the local process is already reaped (nothing to kill).
  void RemoveWorker(Worker* worker, const std::string& why, bool exited = false,
                    Scheduler::LossCharge charge = Scheduler::LossCharge::kChargeRunning);
  void Tick();
  void SendBackups();
  void ReleaseIdleWorkers();
  void ReapLocalWorkers();
  void SpawnDueWorkers();
  void HandleSignals();
  // Writes the last records, however slowly the reader takes them; a second
  // signal (Ctrl-C again, a kill) gives up those it has not taken.
  Status FlushOutput();
  // Writes the finished prefix's records; `all`: even past a full writer.
  void WriteReady(bool all = false);
  // --resume rewriting, interrupted: writes every finished record to the new
  // file, which may then replace the old one (true); false if it may not.
  bool FinishInterruptedRewrite();
  void WriteRecord(uint64_t index, Slot& slot);
  long PollTimeout();
  ProgressCounts Counts() const;
  void Shutdown();
  void SpawnWanted();
  // The run cannot go on: stop with `status` after writing what is done.
  void Stop(ExitStatus status, std::string message) {
    if (!fatal_.empty()) return;
    fatal_status_ = status;
    fatal_ = std::move(message);
  }
  void CheckOutput();
  bool Running() const { return signals_ == 0 && fatal_.empty() && !output_closed_ && !halting_; }
  void OnComplete(uint64_t index);
  // Stops the run, now or soon, as --halt or fail fast decided.
  void ActOnHalt(HaltDecision decision);
  // The exit status of a run --halt stopped.
  ExitStatus HaltExit() const;
  // Tells --halt how many items were read, and whether that is all of them
  // (never when `input_may_have_ended` is false); acts on what it decides.
  void TellHaltTheItems(bool input_may_have_ended = true);
  void PublishStatus();

  const Config& config_;
  zmq::context_t context_;
  zmq::socket_t router_;
  std::string host_;
  PrivateDir private_dir_;  // the local workers' socket and keys
  int signal_fd_ = -1;
  std::unique_ptr<InputReader> input_;
  std::unique_ptr<RecordWriter> writer_;
  std::unique_ptr<Joblog> joblog_;  // --joblog
  std::unique_ptr<LocalWorkers> local_;
  std::unique_ptr<Progress> progress_;
  std::unique_ptr<ResumeLog> resume_;
  // Records in a file carry the fingerprint of their job and item, so that
  // --resume can tell a different job or different items.
  std::unique_ptr<ItemFingerprinter> fingerprinter_;
  bool total_checked_ = false;        // --resume: the file's records vs the input's items
  uint64_t resumed_items_ = 0;        // items whose record --resume kept
  uint64_t halt_items_ = 0;           // what --halt was last told (TellHaltTheItems)
  bool halt_success_at_end_ = false;  // WHEN,success=P% reached as the input ended
  bool halt_all_items_ = false;
  std::unique_ptr<ZapHandler> zap_;  // set when CurveZMQ is on
  std::unique_ptr<zmq::socket_t> monitor_;
  CurveKeyPair server_keys_;
  size_t handshake_failures_ = 0;
  std::string rewrite_path_;    // --resume that rewrites: the new file, renamed at the end
  std::string rewrite_target_;  // ... onto this: -o's file, its links followed
  JobSpec job_;
  Scheduler scheduler_;
  ReorderBuffer& window_ = scheduler_.window();
  RateLimiter limiter_;
  // Server feedback (HTTP jobs): the rate to keep, run-wide outages, and
  // the end-of-run summary (every job).
  AdaptiveRate adaptive_;
  bool adaptive_on_ = false;
  CircuitBreaker breaker_;
  std::string outage_error_;   // the last outage-like failure (GiveUpOnALongOutage)
  int64_t gave_up_at_ms_ = 0;  // when GiveUpOnALongOutage last failed the items waiting
  RunSummary summary_;
  double tokens_per_request_ = 0;  // reported usage, a moving average
  int64_t started_us_ = NowMicros();
  size_t round_robin_ = 0;
  bool input_readable_ = false;
  int64_t rate_wait_until_us_ = 0;  // the rate limiter said "not before"
  uint64_t total_ = 0;
  uint64_t written_ = 0;
  uint64_t unwritten_ = 0;  // of those, given up by FlushOutput
  uint64_t failed_ = 0;
  uint64_t bad_frames_ = 0;
  HaltPolicy halt_;
  bool halting_ = false;                   // --halt soon: no new tasks; the running ones finish
  std::set<WorkerId> held_back_reported_;  // workers whose held-back tasks were logged
  std::set<std::string> released_;         // routing ids of released workers until they acknowledge
  LogLimiter peer_log_;
  LogLimiter join_log_{20};
  int local_failures_in_a_row_ = 0;
  std::vector<int64_t> respawn_at_ms_;  // local workers to start again
  std::vector<pid_t> killed_pids_;      // local workers we killed ourselves
  int signals_ = 0;
  int64_t drain_deadline_ms_ = 0;
  int64_t last_tick_ms_ = 0;
  int64_t last_flush_ms_ = 0;
  std::string fatal_;          // set when the run cannot go on
  std::string summary_error_;  // --summary FILE could not be written
  ExitStatus fatal_status_ = kExitRuntime;
  bool output_closed_ = false;   // the reader of the records went away
  int output_pipe_fd_ = -1;      // stdout when it is a pipe or socket: polled for its closing
  int local_target_ = 0;         // local workers wanted (-j), started as items arrive
  uint64_t runnable_items_ = 0;  // items read that a worker must run
  std::unique_ptr<StatusServer> status_;  // --status
};

void Coordinator::LogPeerTrouble(const std::string& line) {
  if (!peer_log_.Allow(NowMillis())) return;
  uint64_t suppressed = peer_log_.TakeSuppressed();
  Log(line + (suppressed > 0 ? " (and " + std::to_string(suppressed) + " similar lines)" : ""));
}

Coordinator::~Coordinator() {
  local_.reset();
  if (signal_fd_ >= 0) close(signal_fd_);
  private_dir_.Remove();
}

Status Coordinator::OpenOutput() {
  if (!config_.output_path.empty() && config_.output_path != "-" &&
      (config_.output_format == OutputFormat::kJsonl ||
       config_.output_format == OutputFormat::kOpenAiBatch)) {
    fingerprinter_ = std::make_unique<ItemFingerprinter>(config_.job);
  }
  if (!config_.resume) {
    return RecordWriter::Open(config_.output_path, config_.output_format, &writer_);
  }
  resume_ = std::make_unique<ResumeLog>();
  Status status = ResumeLog::Load(config_.output_path, !config_.resume_failed, !config_.unordered,
                                  resume_.get());
  if (!status.ok()) return status;
  std::string note = "resuming: " + std::to_string(resume_->kept()) + " record(s) found";
  if (resume_->dropped() > 0)
    note += ", " + std::to_string(resume_->dropped()) + " failed to rerun";
  if (resume_->torn_bytes() > 0) note += ", a torn last line cut off";
  Log(note);
  if (resume_->append()) {
    return RecordWriter::OpenAppend(config_.output_path, resume_->valid_bytes(),
                                    config_.output_format, &writer_);
  }
  // Next to the file itself, which replaces it with its permissions: a
  // symbolic link named by -o stays one.
  rewrite_target_ = config_.output_path;
  if (char* real = realpath(config_.output_path.c_str(), nullptr)) {
    rewrite_target_ = real;
    free(real);
  }
  rewrite_path_ = rewrite_target_ + ".resume-tmp";
  status = RecordWriter::Open(rewrite_path_, config_.output_format, &writer_);
  struct stat old_file;
  if (status.ok() && stat(rewrite_target_.c_str(), &old_file) == 0) {
    chmod(rewrite_path_.c_str(), old_file.st_mode & 07777);
  }
  return status;
}

Status Coordinator::SetUp() {
  // First: a status address in use must not cost the output file.
  if (!config_.status_address.empty()) {
    Status started = StatusServer::Start(config_.status_address, &status_);
    if (!started.ok()) return started;
    Log("status on http://" + status_->address() + "/");
  }
  // Then whatever else can fail on the command line's account (keys, the
  // endpoints), for the same reason.
  job_ = config_.job;
  job_.run_id = scheduler_.run_id();
  scheduler_.set_on_response(
      [this](const Result& result, const Slot& slot) { OnResponse(result, slot); });
  halt_ = HaltPolicy(config_.halt);
  scheduler_.set_on_complete([this](uint64_t index) { OnComplete(index); });
  scheduler_.set_charges([this](const Result& result) { return Charged(result); });
  adaptive_on_ = job_.kind == "http";
  job_.options[job_key::kLivenessMs] = std::to_string(config_.heartbeat_ms);
  Status status = SetUpSecurity();
  if (!status.ok()) return status;

  try {
    router_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::maxmsgsize, kMaxFrameBytes);
    router_.set(zmq::sockopt::sndhwm, 0);
    router_.set(zmq::sockopt::rcvhwm, 0);
    router_.set(zmq::sockopt::router_mandatory, 1);
    router_.set(zmq::sockopt::backlog, kListenBacklog);
  } catch (const zmq::error_t& e) {
    return Status::Error(std::string("cannot set up the task socket: ") + e.what());
  }
  for (const std::string& endpoint : config_.listen) {
    // libzmq binds to an interface or an address, not a host name: the one
    // name everybody means is localhost.
    std::string bind = endpoint;
    if (bind.rfind("tcp://localhost:", 0) == 0) bind = "tcp://127.0.0.1:" + bind.substr(16);
    try {
      if (bind.find('[') != std::string::npos) router_.set(zmq::sockopt::ipv6, 1);
      router_.bind(bind);
    } catch (const zmq::error_t& e) {
      return Status::Error("cannot listen on " + endpoint + ": " + e.what());
    }
    if (endpoint.find('*') != std::string::npos) {
      Log("listening on " + router_.get(zmq::sockopt::last_endpoint));
    }
  }

  // The local workers' socket too, and -j 0 without --listen.
  status = StartLocalWorkers();
  if (!status.ok()) return status;

  status = InputReader::Open(config_.input_path, &input_);
  if (status.ok()) status = AttachArgInput(config_.arg_input, input_.get());
  if (status.ok() && !config_.joblog_path.empty()) {
    status = Joblog::Open(config_.joblog_path, config_.resume, &joblog_);
  }
  if (!status.ok()) return status;
  status = OpenOutput();
  if (!status.ok()) return status;

  if ((config_.input_path.empty() || config_.input_path == "-") && isatty(0)) {
    Log("reading items from the terminal, one per line; end them with Ctrl-D");
  }
  struct stat out;
  if ((config_.output_path.empty() || config_.output_path == "-") && fstat(1, &out) == 0 &&
      (S_ISFIFO(out.st_mode) || S_ISSOCK(out.st_mode))) {
    output_pipe_fd_ = 1;
  }
  bool show = config_.progress == ProgressMode::kAlways ||
              (config_.progress == ProgressMode::kAuto && isatty(2));
  bool want_total = show || !config_.status_address.empty();
  if (want_total && config_.arg_input.assemble) total_ = config_.arg_input.KnownItems();
  if (want_total && !config_.arg_input.assemble) {
    CountLines(config_.input_path, &total_, config_.arg_input.delimiter);
  }
  progress_ = std::make_unique<Progress>(show, 2);
  // Records may reach the progress line's terminal (stdout, or -o /dev/tty).
  progress_->set_shares_terminal_with(writer_->fd());

  // Signals are read in the loop; SIGPIPE must not kill us on a closed stdout.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return Status::Error("signalfd failed");
  return Status::Ok();
}

Status Coordinator::SetUpSecurity() {
  for (const std::string& endpoint : config_.listen) {
    if (endpoint.rfind("tcp://", 0) != 0 && endpoint.rfind("ipc://", 0) != 0) {
      return Status::Error("invalid endpoint '" + endpoint +
                           "' (expected tcp://ADDRESS:PORT or ipc://PATH)");
    }
  }
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
    // Refuse every client when no handler answers, instead of accepting
    // them all. Fail closed: without it, a lost handler would open the door.
    int one = 1;
    if (zmq_setsockopt(router_.handle(), ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one) != 0) {
      return Status::Error(
          std::string("cannot make CurveZMQ fail closed (ZMQ_ZAP_ENFORCE_DOMAIN): ") +
          zmq_strerror(zmq_errno()));
    }
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
  // A socket in a directory only we can enter: another local user can
  // neither take tasks nor read the JOB (and its API key). Leftovers of
  // killed runs are swept when it is made.
  Status made = PrivateDir::Create(&private_dir_);
  if (!made.ok()) return made;
  std::string endpoint = private_dir_.SocketEndpoint();
  try {
    router_.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Error("cannot bind " + endpoint + ": " + e.what());
  }
  std::vector<std::string> extra_args;
  if (zap_ != nullptr) {
    // Local workers pass the same door as remote ones, with a key made for
    // this run; its secret stays in the private directory.
    CurveKeyPair local_keys;
    Status status = GenerateKeyPair(&local_keys);
    if (status.ok()) status = WriteKeyPair(private_dir_.path() + "/worker", local_keys);
    if (!status.ok()) return status;
    zap_->Authorize(local_keys.public_key);
    extra_args = {"--curve-secret", private_dir_.path() + "/worker.key", "--server-key",
                  server_keys_.public_key};
  }
  std::string path = config_.worker_path.empty() ? DefaultWorkerPath() : config_.worker_path;
  local_ = std::make_unique<LocalWorkers>(path, endpoint, config_.slots, extra_args);
  // Started as items arrive (SpawnWanted): `seq 2 | fanmap -j 64` needs two.
  local_target_ = n;
  return Status::Ok();
}

size_t Coordinator::WindowLimit() const {
  size_t credit = 0;
  for (const Worker* w : scheduler_.workers().all()) credit += w->credit.target();
  size_t base = config_.window > 0 ? config_.window : kMinWindow;
  // The window must exceed what workers may hold, or they would starve.
  return std::max(base, 2 * credit + 1);
}

bool Coordinator::WantInput() const { return WantInput(WindowLimit(), true); }

bool Coordinator::WantInput(size_t window_limit, bool head_of_line) const {
  if (!Running() || input_->done()) return false;
  if (window_.size() >= window_limit) {
    // Past the window, for the head-of-line worker only (Scheduler::
    // HeadOfLineRoom), and within the bytes the window may hold.
    return head_of_line && window_.item_bytes() < kMaxWindowItemBytes &&
           scheduler_.HeadOfLineRoom(window_limit) > 0;
  }
  return window_.item_bytes() < kMaxWindowItemBytes || window_.size() <= scheduler_.InFlight() + 1;
}

void Coordinator::ReadInput() {
  std::string line;
  // Reading items changes no worker's credit: the limit is summed once.
  const size_t window_limit = WindowLimit();
  scheduler_.ReserveForHeadOfLine(window_limit);
  while (WantInput(window_limit, true)) {
    if (input_->NextLine(&line)) {
      AddItem(std::move(line));
      continue;
    }
    if (Status bad = input_->item_error(); !bad.ok()) {
      Stop(kExitUsage, bad.message());
      break;
    }
    if (input_->eof()) break;
    if (!input_->is_regular_file() && !input_readable_) break;
    input_readable_ = false;
    Status status = input_->Fill();
    if (!status.ok()) {
      Stop(kExitUsage, status.message());
      break;
    }
    if (!input_->is_regular_file()) {
      // One read per wake-up for pipes and terminals: the next one could block.
      while (WantInput(window_limit, true) && input_->NextLine(&line)) AddItem(std::move(line));
      if (Status bad = input_->item_error(); !bad.ok()) Stop(kExitUsage, bad.message());
      break;
    }
  }
}

void Coordinator::AddItem(std::string line) {
  uint64_t fingerprint = fingerprinter_ != nullptr ? fingerprinter_->Fingerprint(line) : 0;
  if (resume_ != nullptr) {
    Status same = resume_->CheckItem(window_.end(), fingerprint);
    if (!same.ok()) {
      Stop(kExitUsage, same.message());
      return;
    }
  }
  bool resumed_ok;
  if (resume_ != nullptr && resume_->Has(window_.end(), &resumed_ok)) {
    uint64_t index = scheduler_.AddItem(std::string());
    Slot* slot = window_.Find(index);
    slot->resumed = resume_->append() ? Resumed::kInFile : Resumed::kCopy;
    ++resumed_items_;
    Result result;
    result.ok = resumed_ok;
    scheduler_.Complete(index, std::move(result));
    return;
  }
  std::string error;
  bool bad;
  if (line.size() > kMaxItemBytes || (!config_.arg_input.assemble && input_->record_cut())) {
    // No task can carry it: a frame that large would cost the worker its
    // connection, and the item would be sent again and again.
    bad = true;
    uint64_t bytes = config_.arg_input.assemble ? line.size() : input_->record_bytes();
    error = std::to_string(bytes) + " bytes, more than the " + std::to_string(kMaxItemBytes >> 20) +
            " MiB an item may hold";
  } else {
    bad = config_.input_format != InputFormat::kLines && !IsJsonValue(line, &error);
    if (bad) error = "invalid JSON: " + error;
  }
  uint64_t index = scheduler_.AddItem(bad ? std::string() : std::move(line));
  window_.Find(index)->fingerprint = fingerprint;
  if (!bad) {
    ++runnable_items_;
    // A worker takes milliseconds to start: each one starts with the first
    // item for it, while the rest of the window is read, not after.
    if (runnable_items_ <= static_cast<uint64_t>(local_target_)) SpawnWanted();
    return;
  }
  // Lines count from 1, as editors do; indexes from 0, as records do.
  std::string message = "line " + std::to_string(input_->line_number()) + " (item " +
                        std::to_string(index) + "): " + error;
  Log(message);
  Result result;
  result.ok = false;
  result.value = std::move(message);
  // --halt's percentage counts against the items read so far, this one
  // included: it must hear of them before this failure. Not yet that the
  // input has ended: the main loop says so once this failure is recorded,
  // and a percentage reached only then, with nothing left to run, stops
  // nothing.
  TellHaltTheItems(/*input_may_have_ended=*/false);
  scheduler_.Complete(index, std::move(result));
}

void Coordinator::GiveUpOnALongOutage(int64_t now_ms) {
  // The probes alone would take each waiting item's first or next attempt
  // a few at a time, for ever if the server never comes back: an outage
  // longer than --retry-for ends those waiting then (the probes' own answers
  // still decide theirs). Items read later are probes in their turn, so that
  // the server's return is seen; those still waiting after another
  // --retry-for fail too.
  int64_t since = std::max(breaker_.tripped_since_ms(), gave_up_at_ms_);
  if (!breaker_.tripped() || config_.retry_for_ms <= 0 || !scheduler_.HasUnsent() ||
      now_ms - since < config_.retry_for_ms) {
    return;
  }
  gave_up_at_ms_ = now_ms;
  std::string error = "not sent: every request failed for " +
                      std::to_string((now_ms - breaker_.tripped_since_ms()) / 1000) +
                      " s, longer than --retry-for (the last: " + outage_error_ + ")";
  size_t failed = scheduler_.FailUnsent(error);
  if (failed > 0) {
    Log("the server has failed every request for longer than --retry-for: " +
        std::to_string(failed) + " item(s) waiting fail");
  }
}

void Coordinator::Dispatch() {
  const std::vector<Worker*>& workers = scheduler_.workers().all();
  if (!Running()) return;
  int64_t now_ms = NowMillis();
  // Before the outage's pause or a lack of workers can hold them back.
  scheduler_.ExpireRetries(now_ms);
  GiveUpOnALongOutage(now_ms);
  // Those failures may have halted the run (--halt now).
  if (!Running() || workers.empty()) return;
  scheduler_.ReleaseDueRetries(now_ms);
  int64_t now_us = NowMicros();
  if (now_us < rate_wait_until_us_) return;
  // An outage: nothing goes out but the breaker's probes.
  if (breaker_.NextDispatchMs(now_ms) > now_ms) return;
  if (adaptive_on_) {
    limiter_.SetDynamicLimits(now_us, adaptive_.RequestRate(now_us), adaptive_.TokenRate(now_us));
  }
  TasksEncoder encoder;
  std::vector<uint64_t> batch;   // indexes in the frame being built
  std::vector<uint64_t> passed;  // suspects this worker cannot take (Scheduler::Fits)
  bool progress = true;
  bool rate_limited = false;
  while (progress && !rate_limited) {
    progress = false;
    for (size_t k = 0; k < workers.size() && !rate_limited; ++k) {
      Worker& worker = *workers[(round_robin_ + k) % workers.size()];
      size_t budget = std::min(worker.credit.available(input_->done()), kMaxTasksPerFrame);
      // --halt soon: no command or request may start after the halt, and a
      // task queued at a worker (its prefetch) would; so no more than one a
      // slot. (A --pipe co-process is already running: its items are lines
      // it reads, and it needs more than one a slot to answer promptly.)
      if (config_.halt.when == HaltWhen::kSoon && job_.kind != "pipe") {
        size_t slots = worker.credit.slots(), held = worker.credit.outstanding();
        budget = std::min(budget, slots > held ? slots - held : 0);
      }
      uint64_t index;
      while (encoder.count() < budget && encoder.bytes() < kMaxTaskBytesPerFrame) {
        if (!scheduler_.NextTask(&index)) break;
        Slot* slot = window_.Find(index);
        Scheduler::Fit fit = scheduler_.Fits(index, worker, encoder.count());
        if (fit == Scheduler::Fit::kWorkerBusy) {
          scheduler_.PutBack(index);
          break;
        }
        if (fit == Scheduler::Fit::kNotHere) {
          passed.push_back(index);  // for a worker that holds nothing; the rest go past it
          continue;
        }
        if (limiter_.limited() && !limiter_.TryAcquire(now_us, EstimateTokens(slot->item))) {
          scheduler_.PutBack(index);  // first in line once the limiter allows
          int64_t wait = limiter_.WaitMicros(now_us, EstimateTokens(slot->item));
          rate_wait_until_us_ = now_us + std::max<int64_t>(wait, 1000);
          rate_limited = true;
          break;
        }
        if (!breaker_.TryDispatch(now_ms)) {
          scheduler_.PutBack(index);  // the probes are out
          rate_limited = true;
          break;
        }
        if (adaptive_on_) adaptive_.OnSent(now_us);
        uint32_t attempt = scheduler_.Assign(index, worker, now_us, now_ms);
        encoder.Add(index, attempt, slot->item);
        batch.push_back(index);
        if (fit == Scheduler::Fit::kTakeAlone) break;
      }
      // First in line again, in their order, for the next worker.
      for (auto it = passed.rbegin(); it != passed.rend(); ++it) scheduler_.PutBack(*it);
      passed.clear();
      if (encoder.count() == 0) continue;
      if (!SendTo(worker, encoder.Finish())) {
        // The batch never left: it must not count as lost with the worker.
        scheduler_.Unassign(batch, worker);
        RemoveWorker(&worker, "cannot be reached");
        return;  // the workers changed; the next loop iteration dispatches again
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

void Coordinator::ReceiveFrames() {
  // A run that must stop (fail fast, --halt now) takes no more results.
  int64_t until_us = NowMicros() + kMaxReceiveMicros;
  for (int i = 0; i < kMaxFramesPerWake && fatal_.empty() && (i == 0 || NowMicros() < until_us);
       ++i) {
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
  Worker* worker = scheduler_.workers().Find(routing_id);
  if (worker == nullptr && frame.size() > kMaxStrangerFrameBytes) {
    // Not a HELLO: a dead worker's late results, or an attack. Decoding it
    // would cost the run's time for nothing that can count.
    ++bad_frames_;
    LogPeerTrouble("dropped a frame of " + std::to_string(frame.size()) +
                   " bytes from a peer that is not a worker of this run");
    if (released_.count(routing_id) == 0) {
      SendToId(routing_id,
               Running() ? EncodeReset("not a worker of this run") : EncodeStop("the run is over"));
    }
    return;
  }
  Message message;
  Status status = DecodeMessage(frame.data(), frame.size(), &message);
  if (!status.ok()) {
    ++bad_frames_;
    if (message.version != kProtocolVersion && message.type == MessageType::kHello) {
      LogPeerTrouble("refused a worker: " + Printable(status.message()));
      SendToId(routing_id,
               EncodeRefuse("fanmap coordinator refuses this worker: " + status.message()));
    } else {
      LogPeerTrouble("dropped a frame: " + Printable(status.message()));
    }
    return;
  }
  if (worker != nullptr) worker->last_heard_ms = NowMillis();
  switch (message.type) {
    case MessageType::kHello:
      if (worker == nullptr) HandleHello(routing_id, message.hello, frame);
      return;
    case MessageType::kResults:
      HandleResults(routing_id, worker, &message);
      return;
    case MessageType::kHeartbeat:
      // A released worker acknowledging its STOP: nothing more to say.
      if (worker == nullptr && released_.erase(routing_id) > 0) return;
      if (worker == nullptr) {
        // A worker we declared dead came back (SIGCONT, a healed network), or
        // one of another run: it must drop its tasks and join again.
        SendToId(routing_id, Running() ? EncodeReset("not a worker of this run")
                                       : EncodeStop("the run is over"));
      }
      return;
    case MessageType::kBye:
      // Leaving is not dying of a task: nothing is charged.
      if (worker != nullptr) {
        RemoveWorker(worker, "left (" + Printable(message.reason) + ")", false,
                     Scheduler::LossCharge::kChargeNone);
      }
      return;
    default:
      ++bad_frames_;
      LogPeerTrouble("dropped a frame: a worker may not send message type " +
                     std::to_string(static_cast<int>(message.type)));
  }
}

// The pid of the local worker that sent `frame`, if this coordinator spawned
// it: the kernel's word (the ipc socket's peer credentials, which libzmq
// reports as "Peer-Address" = "localhost:UID:GID:PID"), never the HELLO's.
pid_t Coordinator::SpawnedPid(const zmq::message_t& frame, const Hello& hello) const {
  if (local_ == nullptr) return 0;
  const char* address = zmq_msg_gets(frame.handle(), "Peer-Address");
  if (address == nullptr) return 0;
  unsigned long uid = 0, gid = 0, pid = 0;
  char rest = 0;
  if (std::sscanf(address, "localhost:%lu:%lu:%lu%c", &uid, &gid, &pid, &rest) != 3) {
    return 0;
  }
  if (uid != static_cast<unsigned long>(getuid()) || pid != hello.pid) return 0;
  std::vector<pid_t> pids = local_->pids();
  return std::find(pids.begin(), pids.end(), static_cast<pid_t>(pid)) != pids.end()
             ? static_cast<pid_t>(pid)
             : 0;
}

void Coordinator::HandleHello(const std::string& routing_id, const Hello& hello,
                              const zmq::message_t& frame) {
  if (!Running()) {
    SendToId(routing_id, EncodeStop("the run is ending"));
    return;
  }
  pid_t local_pid = SpawnedPid(frame, hello);
  uint32_t slots = std::min(hello.slots > 0 ? hello.slots : job_.default_slots, kMaxSlotsPerWorker);
  Worker& w = scheduler_.AddWorker(routing_id, hello, slots, local_pid, NowMillis());
  if (!SendTo(w, EncodeJob(job_))) {
    RemoveWorker(&w, "cannot be reached");
    return;
  }
  if (local_pid == 0) {
    if (join_log_.Allow(NowMillis())) {
      uint64_t more = join_log_.TakeSuppressed();
      Log("worker " + Printable(hello.name) + " joined (host " + Printable(hello.host) + ", " +
          std::to_string(w.credit.slots()) + " slots)" +
          (more > 0 ? "; " + std::to_string(more) + " more joined before it" : ""));
    }
  }
}

ServerHealth Coordinator::Health(const Result& result) const {
  // Only a server can be down: a command that times out twenty times in a
  // row is slow, and its items' --retries still count.
  return adaptive_on_ ? HealthOf(result) : ServerHealth::kNeutral;
}

void Coordinator::OnResponse(const Result& result, const Slot& slot) {
  summary_.OnAnswer(result);
  // Only a server's answers say anything of its health and its limits; a
  // million builtin, --exec or --pipe results need not read the clock.
  if (!adaptive_on_) return;
  int64_t now_us = NowMicros();
  bool was_tripped = breaker_.tripped();
  ServerHealth health = Health(result);
  if (health == ServerHealth::kDown) outage_error_ = result.value.substr(0, 200);
  if (breaker_.OnAnswer(now_us / 1000, slot.sent_us / 1000, health)) {
    adaptive_.OnOutageOver(now_us);
    Log("the server answers again: resuming at full speed");
  } else if (!was_tripped && breaker_.tripped()) {
    Log("the last " + std::to_string(CircuitBreaker::kTripAfter) +
        " requests all failed (last: " + Printable(result.value.substr(0, 200)) +
        "): the run pauses and probes with " + std::to_string(CircuitBreaker::kProbes) +
        " requests, at longer and longer intervals (up to " +
        std::to_string(CircuitBreaker::kMaxPauseMs / 1000) +
        " s), until the server answers; the items' --retries are not spent meanwhile");
  }
  if (result.extra.empty() && result.limits->empty()) return;  // nothing to learn
  int64_t status = ExtraInt(result, "status", 0);
  if (status == 503) {
    // An outage is the breaker's: its 503s must not drag the rate down.
    if (!breaker_.tripped()) adaptive_.OnOverloaded(now_us, slot.sent_us);
  } else if (status != 0) {
    adaptive_.OnAnswer(now_us, slot.sent_us, status == 429);
  }
  int64_t tokens = ExtraInt(result, "total_tokens", -1);
  if (tokens >= 0) {
    limiter_.OnUsage(EstimateTokens(slot.item), static_cast<double>(tokens));
    tokens_per_request_ = tokens_per_request_ <= 0 ? static_cast<double>(tokens)
                                                   : 0.9 * tokens_per_request_ + 0.1 * tokens;
  }
  if (!result.limits->empty()) {
    double in_flight = static_cast<double>(scheduler_.InFlight());
    adaptive_.OnServerLimits(now_us, slot.sent_us, *result.limits, in_flight, tokens_per_request_);
  }
}

// Throttles are the server's pacing, and failures during an outage are the
// outage's: neither uses up the item's --retries (--retry-for bounds them).
bool Coordinator::Charged(const Result& result) const {
  if (result.cause == FailureCause::kThrottled) return false;
  return !(breaker_.suspect() && Health(result) == ServerHealth::kDown);
}

void Coordinator::ReportSummary() {
  summary_.SetItems(written_ - failed_, failed_);
  summary_.SetOutagePauses(breaker_.openings());
  SummaryFigures figures = summary_.Figures((NowMicros() - started_us_) / 1e6);
  // A closed output (| head) ends the run quietly.
  if (!config_.quiet && !output_closed_) {
    SummaryKind kind = summary_.chat()              ? SummaryKind::kChat
                       : config_.job.kind == "http" ? SummaryKind::kHttp
                                                    : SummaryKind::kTasks;
    std::string text = FormatSummary(figures, kind);
    size_t newline = text.find('\n');
    Log(text.substr(0, newline));
    if (newline != std::string::npos) Log(text.substr(newline + 1));
  }
  if (config_.summary_path.empty()) return;
  FILE* file = std::fopen(config_.summary_path.c_str(), "w");
  std::string json = SummaryJson(figures) + "\n";
  bool written = file != nullptr && std::fwrite(json.data(), 1, json.size(), file) == json.size();
  if (file != nullptr && std::fclose(file) != 0) written = false;
  if (!written) {
    summary_error_ =
        "cannot write the summary to '" + config_.summary_path + "': " + std::strerror(errno);
  }
}

// A worker's result goes into the output file as it is, and --resume trusts
// that file: a field that would shadow the record's own, or "JSON" that is
// not one JSON value on one line, must not get there.
void Coordinator::Sanitize(Result* result, bool remote) {
  // A peer's results are held to what this build's payloads can make, so
  // that it cannot fill the window (or a record) with more. (A local worker
  // is this build: its --tag output may pass the cap, as tags lengthen every
  // line of an output within it.)
  bool oversized = remote && result->value.size() > kMaxResultBytes;
  for (const auto& [key, field] : result->extra) {
    const auto* text = std::get_if<std::string>(&field);
    oversized |= remote && text != nullptr && text->size() > kMaxResultBytes;
  }
  if (oversized) {
    result->ok = false;
    result->retryable = false;
    result->fatal = false;
    result->value_is_json = false;
    result->value = "result larger than " + std::to_string(kMaxResultBytes >> 20) + " MiB";
    result->extra.clear();
  }
  if (!result->extra.empty()) {
    SanitizeJsonFields(&result->extra);
    for (const char* key : {"index", "ok", "result", "error", "fp"}) {
      auto it = result->extra.find(key);
      if (it != result->extra.end()) result->extra.erase(it);
      it = result->extra.find(JsonFieldKey(key));
      if (it != result->extra.end()) result->extra.erase(it);
    }
  }
  if (result->value_is_json && (result->value.find_first_of("\r\n") != std::string::npos ||
                                !IsJsonValue(result->value, nullptr))) {
    result->value_is_json = false;
  }
  result->elapsed_us = std::min<uint64_t>(result->elapsed_us, kMaxElapsedMicros);
}

void Coordinator::HandleResults(const std::string& routing_id, Worker* worker, Message* message) {
  // With remote workers, each record says which worker produced it.
  bool name_workers = !config_.listen.empty() && worker != nullptr;
  bool remote = worker == nullptr || worker->local_pid == 0;
  for (Result& result : message->results) {
    Sanitize(&result, remote);
    if (name_workers) result.extra["worker"] = worker->hello.name;
  }
  FrameVerdict verdict =
      scheduler_.OnResults(worker, message->run_id, &message->results, NowMillis());
  if (verdict == FrameVerdict::kCounted) {
    if (worker->local_pid != 0) local_failures_in_a_row_ = 0;
    return;
  }
  // Not a worker of this run: a worker we declared dead that came back, one
  // left over from another run, or a peer that never said HELLO. Nothing it
  // sent counts; it must drop its tasks and join this run afresh.
  if (verdict == FrameVerdict::kOtherRun) {
    LogPeerTrouble("dropped results of another run from worker " + Printable(worker->hello.name) +
                   "; it joins this run afresh");
    RemoveWorker(worker, "ran another run's job", false, Scheduler::LossCharge::kChargeNone);
    return;
  }
  LogPeerTrouble("dropped results from a peer that is not a worker of this run");
  SendToId(routing_id,
           Running() ? EncodeReset("not a worker of this run") : EncodeStop("the run is over"));
}

void Coordinator::RemoveWorker(Worker* worker, const std::string& why, bool exited,
                               Scheduler::LossCharge charge) {
  std::string name = Printable(worker->hello.name);
  std::string routing_id = worker->routing_id;
  pid_t local_pid = worker->local_pid;
  WorkerLoss loss = scheduler_.RemoveWorker(worker->id, why, NowMillis(), charge);
  bool expected = local_pid != 0 && why == "exit code 0";
  if (!expected) {
    std::string line =
        "worker " + name + " " + why +
        (loss.resent == 0 ? "" : "; " + std::to_string(loss.resent) + " task(s) sent again");
    if (local_pid != 0) {
      // Killed, crashed or stopped and killed by us: the same story, and
      // the same sequel while the run goes on.
      if (!exited) line += "; killed";
      if (Running() && !(input_->done() && window_.empty())) line += "; a new worker replaces it";
      Log(line);
    } else {
      LogPeerTrouble(line);
    }
  }
  if (!loss.failed.empty()) {
    Log("gave up on item(s) " + std::to_string(loss.failed.front()) +
        (loss.failed.size() > 1 ? ", ..." : "") +
        " with this worker: out of --retries or past --retry-for (see their records)");
  }
  if (local_pid != 0 && local_ != nullptr && !exited) {
    local_->Signal(local_pid, SIGKILL);
    killed_pids_.push_back(local_pid);
  }
  // Should it still be alive (stopped, cut off), it must drop its tasks and
  // join again as a new worker.
  SendToId(routing_id, Running() ? EncodeReset(why) : EncodeStop("removed: " + why));
}

void Coordinator::SendBackups() {
  // Not the head-of-line allowance: the oldest item's worker, with credit to
  // spare, may be stuck on it, and that is what a backup copy is for.
  bool more_to_send = WantInput(WindowLimit(), false);
  std::vector<Backup> backups = scheduler_.PlanBackups(NowMicros(), NowMillis(), more_to_send);
  if (backups.empty()) return;
  for (const Backup& b : backups) {
    Worker* holder = b.held_by != 0 ? scheduler_.workers().Find(b.held_by) : nullptr;
    if (holder == nullptr || !held_back_reported_.insert(holder->id).second) continue;
    LogPeerTrouble("worker " + Printable(holder->hello.name) + " holds " +
                   std::to_string(holder->credit.outstanding()) +
                   " task(s) it does not answer: copying them to other workers");
  }
  // One frame per helper.
  std::stable_sort(backups.begin(), backups.end(),
                   [](const Backup& a, const Backup& b) { return a.worker < b.worker; });
  for (size_t i = 0; i < backups.size();) {
    WorkerId id = backups[i].worker;
    TasksEncoder encoder;
    for (; i < backups.size() && backups[i].worker == id; ++i) {
      encoder.Add(backups[i].index, backups[i].attempt, window_.Find(backups[i].index)->item);
    }
    Worker* helper = scheduler_.workers().Find(id);
    if (helper != nullptr && !SendTo(*helper, encoder.Finish())) {
      RemoveWorker(helper, "cannot be reached");
    }
  }
}

void Coordinator::Tick() {
  int64_t now = NowMillis();
  if (now - last_tick_ms_ < kTickMs) return;
  last_tick_ms_ = now;
  for (WorkerId id : scheduler_.SilentWorkers(now)) {
    Worker* w = scheduler_.workers().Find(id);
    RemoveWorker(w, "silent for " + std::to_string(now - w->last_heard_ms) + " ms");
  }
  const int64_t heartbeat_every = std::max<int64_t>(20, config_.heartbeat_ms / 5);
  std::string heartbeat = EncodeHeartbeat();
  std::vector<Worker*> workers = scheduler_.workers().all();
  for (Worker* w : workers) {
    if (now - w->last_sent_ms >= heartbeat_every) SendTo(*w, heartbeat);
  }
  SpawnDueWorkers();
  if (Running()) SendBackups();
  if (Running()) ReleaseIdleWorkers();
}

void Coordinator::ReleaseIdleWorkers() {
  // At the tail of a run, a remote worker with nothing to do is told to stop
  // now, so that a crowd's goodbyes overlap the last tasks instead of
  // following them. Enough workers stay for every task still in flight to
  // be retried, and none leave while backups may be wanted.
  if (config_.speculate || !input_->done() || scheduler_.HasUnsent()) return;
  size_t in_flight = scheduler_.InFlight();
  std::vector<Worker*> workers = scheduler_.workers().all();
  size_t remaining = workers.size();
  std::string stop = EncodeStop("the run is over for this worker");
  for (Worker* w : workers) {
    if (remaining <= in_flight + 1) break;
    if (w->local_pid != 0 || w->credit.outstanding() > 0) continue;
    SendToId(w->routing_id, stop);
    released_.insert(w->routing_id);
    scheduler_.RemoveWorker(w->id, "released", NowMillis());
    --remaining;
  }
}

void Coordinator::ReapLocalWorkers() {
  if (local_ == nullptr) return;
  for (const ExitedWorker& exited : local_->Reap()) {
    Worker* worker = nullptr;
    for (Worker* w : scheduler_.workers().all()) {
      if (w->local_pid == exited.pid) worker = w;
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
      Stop(kExitRuntime, "local workers keep exiting (last: " + exited.how + ")");
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
    if (!status.ok()) Stop(kExitRuntime, status.message());
  }
}

void Coordinator::OnComplete(uint64_t index) {
  Slot& slot = *window_.Find(index);
  if (config_.unordered) WriteRecord(index, slot);
  if (slot.resumed != Resumed::kNo) return;
  ActOnHalt(
      halt_.OnFinished(slot.result.ok, slot.result.fatal, slot.result.ok ? "" : slot.result.value));
}

void Coordinator::TellHaltTheItems(bool input_may_have_ended) {
  uint64_t items = window_.end() - resumed_items_;
  bool all = input_may_have_ended && input_->done();
  if (!Running() || (items == halt_items_ && all == halt_all_items_)) return;
  halt_items_ = items;
  halt_all_items_ = all;
  HaltDecision decision = halt_.SetItems(items, all);
  if (scheduler_.HasUnsent() || scheduler_.InFlight() > 0) {
    ActOnHalt(decision);
  } else if (decision != HaltDecision::kGoOn && config_.halt.on == HaltOn::kSuccess) {
    // A percentage reached only as the input ends, once every item has
    // finished, stops nothing. But a success share reached is what GNU
    // parallel exits 0 for, whatever else failed, as the same run does
    // when the input ends sooner (before the last items finish).
    halt_success_at_end_ = true;
  }
}

ExitStatus Coordinator::HaltExit() const {
  if (halt_.failed_fast()) return kExitRuntime;
  switch (config_.halt.on) {
    case HaltOn::kSuccess:  // the share of successes asked for
      return kExitOk;
    case HaltOn::kDone:  // as many finished as asked for: as any run ends
      return halt_.failed() > 0 ? kExitItemsFailed : kExitOk;
    case HaltOn::kFail:
      break;
  }
  return kExitRuntime;
}

void Coordinator::ActOnHalt(HaltDecision decision) {
  if (decision == HaltDecision::kStopNow) {
    Stop(HaltExit(), halt_.reason());
  } else if (decision == HaltDecision::kStopSoon && !halting_) {
    halting_ = true;
    Log(halt_.reason());
  }
}

void Coordinator::SpawnWanted() {
  if (local_ == nullptr || !Running()) return;
  // Never more local workers than there are items for them.
  size_t wanted = static_cast<size_t>(
      std::min<uint64_t>(static_cast<uint64_t>(local_target_), runnable_items_));
  while (local_->running() + respawn_at_ms_.size() < wanted) {
    pid_t pid;
    Status status = local_->Spawn(&pid);
    if (!status.ok()) {
      Stop(kExitRuntime, status.message());
      return;
    }
  }
}

void Coordinator::CheckOutput() {
  if (output_closed_) return;
  if (!writer_->error().ok()) {
    // EPIPE: nobody reads the records any more (e.g. `| head`): stop now,
    // quietly, as other filters do. Any other error ends the run.
    if (writer_->error().message().find(strerror(EPIPE)) != std::string::npos) {
      output_closed_ = true;
    } else {
      Stop(kExitRuntime, writer_->error().message());
    }
  }
}

Status Coordinator::FlushOutput() {
  for (;;) {
    Status status = writer_->FlushSome();
    if (!status.ok() || !writer_->waiting()) return status;
    if (signals_ > 1) break;
    // The reader is slow, or takes nothing: wait for it, and for a signal.
    pollfd ready[2] = {{writer_->fd(), POLLOUT, 0}, {signal_fd_, POLLIN, 0}};
    if (poll(ready, 2, -1) < 0 && errno != EINTR) {
      return Status::Error(std::string("cannot wait for the output: ") + strerror(errno));
    }
    if (ready[1].revents & POLLIN) HandleSignals();
  }
  size_t dropped = writer_->Abandon();
  unwritten_ += dropped;
  Log("stopping now: " + std::to_string(dropped) +
      " finished record(s) the reader did not take are not written");
  return Status::Ok();
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

void Coordinator::AddItemFields(Slot& slot) {
  if (job_.kind != "http" || config_.input_format == InputFormat::kLines || slot.item.empty())
    return;
  Result::Extra& extra = slot.result.extra;
  if (extra.count("custom_id") > 0 || extra.count(JsonFieldKey("custom_id")) > 0) return;
  if (!JsonDepthWithin(slot.item)) return;
  auto item = nlohmann::ordered_json::parse(slot.item, nullptr, /*allow_exceptions=*/false);
  if (!item.is_object()) return;
  if (config_.input_format == InputFormat::kJsonl) {
    // As the worker does for a --chat request object.
    auto messages = item.find("messages");
    if (job_.options.count(job_key::kChatModel) > 0 && messages != item.end() &&
        messages->is_array())
      TakeItemFields(&item, &extra);
    return;
  }
  // openai-batch: the worker takes a custom_id only if it is a string.
  auto custom_id = item.find("custom_id");
  if (custom_id != item.end() && custom_id->is_string() &&
      !custom_id->get_ref<const std::string&>().empty()) {
    extra["custom_id"] = custom_id->get<std::string>();
  }
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
      Stop(kExitRuntime, status.message());
      return;
    }
    progress_->BeforeOutput();
    writer_->WriteVerbatim(line);
    return;
  }
  if (!slot.result.ok) AddItemFields(slot);
  progress_->BeforeOutput();
  writer_->Write(
      index, slot.result,
      fingerprinter_ != nullptr ? std::optional<uint64_t>(slot.fingerprint) : std::nullopt);
  if (joblog_ != nullptr) joblog_->Write(index, slot.result);
  // Free the text now; the slot itself goes when the prefix reaches it.
  Result().value.swap(slot.result.value);
  window_.FreeItem(&slot);
}

bool Coordinator::FinishInterruptedRewrite() {
  // The old file's records of items not read yet were never checked against
  // their items: they cannot go into the new file, and the old one cannot be
  // replaced without them.
  if (resume_->HasRecordFrom(window_.end())) {
    Log("the records this run finished are not kept: the input was not read to its last record "
        "in '" +
        config_.output_path + "', which stays as it was");
    return false;
  }
  // The window's finished items that wait for an earlier one, out of input
  // order (the next --resume reads that, and rewrites again), and the old
  // failed records of items --resume-failed has not run again yet.
  for (uint64_t index = window_.begin(); index < window_.end(); ++index) {
    Slot* slot = window_.Find(index);
    if (slot == nullptr) continue;
    if (slot->state == SlotState::kDone) {
      WriteRecord(index, *slot);
      continue;
    }
    std::string line;
    if (resume_->OldLine(index, &line).ok()) writer_->WriteVerbatim(line);
  }
  return fatal_.empty() && writer_->Flush().ok();
}

void Coordinator::WriteReady(bool all) {
  // A reader that is not reading holds the records back, and with them the
  // window, and so the input: memory stays bounded, heartbeats go on.
  window_.PopReady([this](uint64_t index, Slot& slot) { WriteRecord(index, slot); },
                   [this, all] { return !all && writer_->full(); });
}

long Coordinator::PollTimeout() {
  int64_t now = NowMillis();
  long timeout = kTickMs;
  if (WantInput() && input_->is_regular_file()) return 0;
  int64_t retry_due = scheduler_.NextRetryDueMs();
  if (retry_due != INT64_MAX)
    timeout = std::min<long>(timeout, std::max<int64_t>(0, retry_due - now));
  if (rate_wait_until_us_ > 0) {
    int64_t wait_ms = (rate_wait_until_us_ - NowMicros() + 999) / 1000;
    if (wait_ms > 0) timeout = std::min<long>(timeout, wait_ms);
  }
  for (int64_t at : respawn_at_ms_)
    timeout = std::min<long>(timeout, std::max<int64_t>(0, at - now));
  if (writer_->buffered() > 0) {
    if (writer_->buffered() >= (64u << 10) || now - last_flush_ms_ >= kFlushEveryMs) {
      progress_->BeforeOutput();
      writer_->FlushSome();
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
  c.workers = scheduler_.workers().size();
  c.tokens = summary_.tokens();
  c.throttled = summary_.throttled();
  c.chat = summary_.chat();
  std::set<std::string> hosts;
  for (const Worker* w : scheduler_.workers().all()) {
    hosts.insert(w->hello.host);
    c.slots += w->credit.slots();
  }
  c.hosts = hosts.size();
  return c;
}

void Coordinator::PublishStatus() {
  if (status_ == nullptr) return;
  int64_t now_us = NowMicros();
  if (!status_->Due(now_us)) return;
  RunCounts counts{written_,
                   failed_,
                   total_,
                   input_->done(),
                   Running() ? RunState::kRunning : RunState::kStopping,
                   started_us_};
  status_->Publish(TakeFarmSnapshot(scheduler_, counts, now_us), now_us);
}

void Coordinator::Shutdown() {
  std::string stop = EncodeStop("the run is over");
  // Released workers whose STOP is not acknowledged yet are waited for too:
  // their STOP may still be on its way.
  std::vector<std::string> unacknowledged(released_.begin(), released_.end());
  for (Worker* w : scheduler_.workers().all()) {
    // Every worker is waited for, even one that returned nothing yet (one
    // that just rejoined is one): a STOP lost here leaves it waiting for a
    // coordinator that is gone. But not a peer whose tasks all had to be
    // finished by others (its credit is gone): a hoarder does not answer.
    bool forfeited = w->credit.trust() == Trust::kEarned && w->credit.target() == 0;
    if (SendTo(*w, stop) && !forfeited) unacknowledged.push_back(w->routing_id);
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
    const std::vector<Worker*>& workers = scheduler_.workers().all();
    bool connected = std::any_of(workers.begin(), workers.end(),
                                 [pid](const Worker* w) { return w->local_pid == pid; });
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
    SpawnWanted();
    Dispatch();
    WriteReady();
    CheckOutput();
    if (resume_ != nullptr && input_->done() && !total_checked_ && Running()) {
      total_checked_ = true;
      Status fits = resume_->CheckTotal(window_.end());
      if (!fits.ok()) Stop(kExitUsage, fits.message());
    }
    TellHaltTheItems();
    if (!fatal_.empty() || output_closed_) break;
    if (input_->done() && window_.empty() && !writer_->waiting()) break;
    if (signals_ > 1) break;
    if (signals_ == 1 && (scheduler_.InFlight() == 0 || NowMillis() >= drain_deadline_ms_)) break;
    // --halt soon: the running tasks finish; a peer that holds tasks and
    // answers nothing is not waited for.
    if (halting_ && scheduler_.InFlightNotHeld(NowMillis()) == 0) break;
    // Not in the middle of a record a terminal took part of.
    if (!progress_->shares_terminal() || writer_->at_line_start()) progress_->Update(Counts());
    PublishStatus();

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
    size_t output_item = 0;
    if (output_pipe_fd_ >= 0) {
      // A pipe's write end reports an error as soon as its reader is gone:
      // notice `| head` now, not at the next record (which may be far off).
      output_item = items.size();
      items.push_back({nullptr, output_pipe_fd_, ZMQ_POLLERR, 0});
    }
    size_t writable_item = 0;
    // Woken by every page the reader frees, the loop would write a few KB at
    // a time: until the records are held back (full), or are all there is
    // left to do, PollTimeout's flushes write them in bulk.
    if (writer_->waiting() && (writer_->full() || (input_->done() && window_.empty()))) {
      writable_item = items.size();
      items.push_back({nullptr, writer_->fd(), ZMQ_POLLOUT, 0});
    }
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout));
    if (output_item != 0 && (items[output_item].revents & ZMQ_POLLERR)) output_closed_ = true;
    if (writable_item != 0 && (items[writable_item].revents & (ZMQ_POLLOUT | ZMQ_POLLERR))) {
      progress_->BeforeOutput();
      writer_->FlushSome();
      CheckOutput();
    }
    if (input_item != 0 && (items[input_item].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) {
      input_readable_ = true;
    }
    if (zap_item != 0 && (items[zap_item].revents & ZMQ_POLLIN)) zap_->Handle();
    if (monitor_item != 0 && (items[monitor_item].revents & ZMQ_POLLIN)) HandleMonitorEvent();
    if (items[1].revents & ZMQ_POLLIN) HandleSignals();
    ReceiveFrames();
    Tick();
  }
  Status flushed = Status::Ok();
  if (!output_closed_) {
    // Everything finished, however full the writer: the run is over.
    WriteReady(/*all=*/true);
    progress_->BeforeOutput();
    flushed = FlushOutput();
    CheckOutput();
  }
  if (joblog_ != nullptr && flushed.ok()) flushed = joblog_->Flush();
  progress_->Finish(Counts());
  Shutdown();
  ReportSummary();
  // However the run ended (but quietly when the reader went away).
  if (zap_ != nullptr && zap_->refused() > 0 && !output_closed_) {
    Log("refused " + std::to_string(zap_->refused()) +
        " connection(s) from clients whose key is not authorized");
  }

  bool complete = fatal_.empty() && flushed.ok() && signals_ == 0 && !output_closed_ && !halting_;
  if (!rewrite_path_.empty()) {
    // Interrupted (a signal, --halt): what is done is kept, as an appending
    // run keeps it. Refused or failed: the old file stays as it was.
    bool keep = complete || (fatal_.empty() && flushed.ok() && !output_closed_);
    if (keep && !complete) keep = FinishInterruptedRewrite();
    writer_.reset();
    if (keep && flushed.ok() && rename(rewrite_path_.c_str(), rewrite_target_.c_str()) != 0) {
      flushed = Status::Error("cannot replace '" + config_.output_path + "': " + strerror(errno));
    }
    if (!keep || !flushed.ok()) unlink(rewrite_path_.c_str());  // resume again from the old file
  }
  if (!summary_error_.empty()) Log(summary_error_);
  if (!fatal_.empty()) {
    Log(fatal_);
    return fatal_status_;
  }
  if (output_closed_) return kExitOutputClosed;
  if (!flushed.ok()) {
    Log(flushed.message());
    return kExitRuntime;
  }
  const DropCounts& drops = scheduler_.drops();
  if (drops.total() > 0 || bad_frames_ > 0) {
    // Late copies are normal (a backup that lost its race); the rest means a
    // worker of another run, or a misbehaving or hostile peer.
    std::string parts;
    auto part = [&parts](uint64_t n, const char* what) {
      if (n == 0) return;
      parts += (parts.empty() ? "" : ", ") + std::to_string(n) + " " + what;
    };
    part(drops.late, "late result(s) of finished items");
    part(drops.unsolicited, "result(s) for tasks the worker was not sent");
    part(drops.unknown_peer, "result(s) from peers that are not workers of this run");
    part(drops.other_run, "result(s) of another run");
    part(bad_frames_, "bad frame(s)");
    Log("dropped " + parts);
  }
  if (signals_ > 0) {
    Log("interrupted: " + std::to_string(written_ - unwritten_) + " record(s) written" +
        (config_.output_path.empty() ? "" : "; continue with --resume"));
    return kExitInterrupted;
  }
  if (halting_) {
    Log("halted: " + std::to_string(written_) + " record(s) written" +
        (config_.output_path.empty() ? "" : "; continue with --resume"));
  }
  // The summary file is output too: one that cannot be written fails a run
  // that would otherwise end 0 or 1, as the records would (exit 3), halted
  // or not.
  if (!summary_error_.empty()) return kExitRuntime;
  if (halting_) return HaltExit();
  if (failed_ > 0) {
    Log(std::to_string(failed_) + " of " + std::to_string(written_) + " item(s) failed");
    if (halt_success_at_end_) {
      Log(halt_.counts() + ": the share of successes --halt asks for, so exit status 0");
      return kExitOk;
    }
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
