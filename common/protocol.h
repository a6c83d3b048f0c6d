// The wire protocol between the coordinator (`fanmap`) and its workers
// (`fanmap-worker`), defined once for both ends.
//
// Transport: the coordinator binds one ROUTER socket; every worker connects a
// DEALER to it. Tasks, results, heartbeats and control messages all travel on
// this one connection, so the coordinator always knows which worker sent what
// (its routing id) and liveness is checked on the socket that carries the work.
//
// Every message is ONE ZeroMQ frame holding ONE msgpack array whose first two
// elements never change between versions:
//
//   [version:uint, type:uint, ...body]
//
// Types and bodies (version 3):
//   worker → coordinator
//     1 HELLO      [3, 1, slots:uint (0 = the job's default), name:str, host:str, pid:uint]
//     2 RESULTS    [3, 2, run_id:str, [result, ...]]
//                  run_id: the run id of the JOB the worker runs; results of
//                  another run are dropped and the worker is told to RESET.
//                  result = [index:uint, attempt:uint, ok:bool, value:str,
//                            value_is_json:bool, elapsed_us:uint, retryable:bool,
//                            retry_after_ms:uint, extra:{str: int|str}, fatal:bool,
//                            cause:uint, limits:nil|[6 × (nil|uint)]]
//                  `value` is the result text when ok, the error text otherwise;
//                  `retryable` failures (timeouts, HTTP 429/5xx, a crashed
//                  co-process) may be sent again, not before retry_after_ms;
//                  `extra` holds fields added to the record (exit_code, stderr...);
//                  `fatal`: no item of this job is likely to succeed either (the
//                  command cannot be started, the server refused our credentials).
//                  `cause` (FailureCause) says why a failure happened: 0 for
//                  a success; the summary counts retries by it.
//                  `limits`: what the server said of its rate limits in this
//                  answer (ServerLimits: requests limit, remaining, reset in
//                  ms, then the same for tokens; nil where it said nothing),
//                  or nil when it said nothing at all.
//     3 HEARTBEAT  [3, 3]
//     8 BYE        [3, 8, reason:str]          the worker leaves; its tasks go back
//   coordinator → worker
//     4 JOB        [3, 4, run_id:str, kind:str, argv:[str...], options:{str: str},
//                   default_slots:uint]
//                  run_id: 32 hex digits (128 random bits), new for every run;
//                  option keys are named in common/job_keys.h.
//     5 TASKS      [3, 5, [[index:uint, attempt:uint, item:str], ...]]
//                  (index, attempt) names one attempt; its result counts only
//                  from the worker it was sent to, while the attempt is open.
//     3 HEARTBEAT  [3, 3]
//     6 STOP       [3, 6, reason:str]          the worker exits
//     7 REFUSE     [3, 7, reason:str]          e.g. protocol version mismatch
//     9 RESET      [3, 9, reason:str]          the coordinator forgot this worker (it
//                                              was silent too long): drop every task
//                                              and say HELLO again
//
// Decoding never trusts the bytes: msgpack is unpacked with limits, trailing
// bytes are rejected, and every array's shape and element types are checked.
// A malformed frame yields a non-ok Status and no partial message.
#ifndef FANMAP_COMMON_PROTOCOL_H_
#define FANMAP_COMMON_PROTOCOL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"

namespace fanmap {

// 3: results carry `cause` and `limits`.
constexpr uint32_t kProtocolVersion = 3;

// Largest frame either side accepts (ZMQ_MAXMSGSIZE): 256 MiB. The largest
// legitimate frames are batches closed at 1 MiB (TASKS by the coordinator,
// RESULTS by the worker) plus the one item or result that crossed that mark;
// a result's value is at most 64 MiB (the payloads' output cap) with a 2 KB
// stderr tail, so about 65 MiB, and 256 MiB leaves room for larger items.
// Items and results are limited by it (kMaxItemBytes, kMaxResultFieldsBytes);
// a larger one becomes an error record, never a crash or a silent worker.
constexpr int64_t kMaxFrameBytes = 256ll << 20;
// The longest item a task carries, and the most one result's text (its value
// and every string field together) may hold: a frame closed at 1 MiB holds
// it, what came before it and the fields around it, well within
// kMaxFrameBytes. A longer input line is an error record (the input reader
// keeps only its first kMaxItemBytes + 1 bytes); a longer result is an
// error result.
constexpr size_t kMaxItemBytes = static_cast<size_t>(kMaxFrameBytes) - (2u << 20);
constexpr size_t kMaxResultFieldsBytes = kMaxItemBytes;
// A result's value, and each of its text fields, at most, from a peer the
// coordinator did not spawn: twice the payloads' own cap of 64 MiB (--tag
// prefixes every line of a capped output). It turns a larger one into an
// error record.
constexpr size_t kMaxResultBytes = 128u << 20;
// What a peer that is not a worker (yet) may send in one frame: a HELLO or a
// heartbeat. The coordinator drops anything larger without decoding it.
constexpr size_t kMaxStrangerFrameBytes = 64u << 10;

// What one frame may hold. DecodeMessage rejects a frame over any of these:
// over kMaxFrameElements before it allocates anything for the elements, over
// the others before it sizes the list or map in question. Each is well above
// what an honest peer sends, so that one never meets them.
//
// Tasks in one TASKS frame (the coordinator sends at most 1024).
constexpr uint32_t kMaxFrameTasks = 4096;
// Results in one RESULTS frame (the worker sends at most 1024).
constexpr uint32_t kMaxFrameResults = 4096;
// Entries of one result's `extra` map (payloads set at most a handful).
constexpr uint32_t kMaxResultExtra = 64;
// Entries of a JOB's argv (a command line) and of its options map (the keys
// of common/job_keys.h).
constexpr uint32_t kMaxJobArgv = 65536;
constexpr uint32_t kMaxJobOptions = 256;
// msgpack elements in one frame: every array element, map key and map value,
// at any depth. It bounds the decoder's memory whatever the frame's shape
// (msgpack allocates a 24-byte object per element: at most 13.6 MB) and
// is sized for the largest legitimate frame, a RESULTS frame of
// kMaxFrameResults results each with a full extra map and all limits:
// 4 + 4096 * (1 + 12 + 6 + 2 * 64) = 602,116 elements. A JOB with kMaxJobArgv
// arguments and kMaxJobOptions options (66,055) or a TASKS frame of
// kMaxFrameTasks tasks (16,387) fits too. A frame also never holds more
// elements than bytes, as every element takes at least one byte.
constexpr uint32_t kServerLimitFields = 6;
constexpr uint32_t kMaxFrameElements =
    4 + kMaxFrameResults * (1 + 12 + kServerLimitFields + 2 * kMaxResultExtra);
// Largest reset time a result may report (a day); counts are at most 2^53.
constexpr uint64_t kMaxLimitResetMs = 86400000;
constexpr uint64_t kMaxLimitCount = uint64_t{1} << 53;
// Frames up to this size are decoded without the first pass (see
// DecodeMessage); the binaries batch tasks and results under it.
constexpr size_t kUnscannedFrameBytes = 16 << 10;

enum class MessageType : uint8_t {
  kHello = 1,
  kResults = 2,
  kHeartbeat = 3,
  kJob = 4,
  kTasks = 5,
  kStop = 6,
  kRefuse = 7,
  kBye = 8,
  kReset = 9,
};

struct Hello {
  uint32_t slots = 0;
  std::string name;
  std::string host;
  uint32_t pid = 0;
};

struct Task {
  uint64_t index = 0;
  uint32_t attempt = 0;
  std::string item;
};

// Why an attempt failed, as far as the payload can tell. Closed: a decoder
// rejects any other value.
enum class FailureCause : uint8_t {
  kNone = 0,         // it succeeded (or the payload cannot tell)
  kThrottled = 1,    // HTTP 429
  kServerError = 2,  // HTTP 5xx or 408
  kTimeout = 3,      // no answer in time
  kConnection = 4,   // cannot connect, reset, empty reply
  kOther = 5,        // anything else
};
constexpr uint8_t kMaxFailureCause = 5;

// What a server said of its rate limits in one answer (OpenAI's
// x-ratelimit-{limit,remaining,reset}-{requests,tokens} headers). Each field
// is absent when the answer did not carry it. Decoded values are checked:
// counts at most kMaxLimitCount, resets at most kMaxLimitResetMs, and
// remaining never above its limit.
struct ServerLimits {
  std::optional<uint64_t> limit_requests;
  std::optional<uint64_t> remaining_requests;
  std::optional<uint64_t> reset_requests_ms;  // until the request budget is full again
  std::optional<uint64_t> limit_tokens;
  std::optional<uint64_t> remaining_tokens;
  std::optional<uint64_t> reset_tokens_ms;
  bool empty() const {
    return !limit_requests && !remaining_requests && !reset_requests_ms && !limit_tokens &&
           !remaining_tokens && !reset_tokens_ms;
  }
  // True if every present value is within the bounds above.
  bool Valid() const;
};

// A Result's ServerLimits, kept out of line: only HTTP answers that carry
// x-ratelimit-* headers have any, and every slot of the coordinator's
// in-flight window holds a Result, so an inline one (96 bytes) would cost
// each slot of every run. Copies copy the limits; `->` reads them (empty if
// none); mut() makes them writable.
class LimitsBox {
 public:
  LimitsBox() = default;
  LimitsBox(const LimitsBox& other) { *this = other; }
  LimitsBox& operator=(const LimitsBox& other) {
    if (this != &other) p_ = other.p_ ? std::make_unique<ServerLimits>(*other.p_) : nullptr;
    return *this;
  }
  LimitsBox(LimitsBox&&) noexcept = default;
  LimitsBox& operator=(LimitsBox&&) noexcept = default;
  LimitsBox& operator=(const ServerLimits& limits) {
    p_ = limits.empty() ? nullptr : std::make_unique<ServerLimits>(limits);
    return *this;
  }

  const ServerLimits& operator*() const { return p_ ? *p_ : kNone; }
  const ServerLimits* operator->() const { return &**this; }
  ServerLimits& mut() {
    if (!p_) p_ = std::make_unique<ServerLimits>();
    return *p_;
  }

 private:
  static inline const ServerLimits kNone{};
  std::unique_ptr<ServerLimits> p_;
};

struct Result {
  // std::less<>: looked up by string literals without a std::string.
  using Extra = std::map<std::string, std::variant<int64_t, std::string>, std::less<>>;

  uint64_t index = 0;
  uint32_t attempt = 0;
  bool ok = false;
  std::string value;  // result text if ok, error text otherwise
  bool value_is_json = false;
  uint64_t elapsed_us = 0;      // time the payload spent on the task
  bool retryable = false;       // a failure worth another attempt
  uint32_t retry_after_ms = 0;  // e.g. from an HTTP Retry-After header
  bool fatal = false;           // the whole job is likely to fail like this (see above)
  Extra extra;
  FailureCause cause = FailureCause::kNone;
  LimitsBox limits;
};

struct JobSpec {
  std::string run_id;  // 32 hex digits, set by the coordinator for each run
  std::string kind;    // "builtin", "exec", ...
  std::vector<std::string> argv;
  std::map<std::string, std::string> options;
  uint32_t default_slots = 1;
};

// One decoded message; only the fields of `type` are meaningful.
struct Message {
  uint32_t version = kProtocolVersion;
  MessageType type = MessageType::kHeartbeat;
  Hello hello;
  std::vector<Task> tasks;
  std::vector<Result> results;
  std::string run_id;  // RESULTS
  JobSpec job;
  std::string reason;  // STOP, REFUSE, BYE, RESET
};

// Encoders: each returns the frame's bytes.
std::string EncodeHello(const Hello& hello);
std::string EncodeResults(const std::string& run_id, const std::vector<Result>& results);
std::string EncodeHeartbeat();
std::string EncodeJob(const JobSpec& job);
std::string EncodeStop(const std::string& reason);
std::string EncodeRefuse(const std::string& reason);
std::string EncodeBye(const std::string& reason);
std::string EncodeReset(const std::string& reason);

// Builds a TASKS frame incrementally, so the coordinator can batch tasks
// without copying items into Task structs first.
class TasksEncoder {
 public:
  TasksEncoder();
  ~TasksEncoder();
  TasksEncoder(const TasksEncoder&) = delete;
  TasksEncoder& operator=(const TasksEncoder&) = delete;

  void Add(uint64_t index, uint32_t attempt, const std::string& item);
  size_t count() const { return count_; }
  size_t bytes() const;
  // Returns the frame and resets the encoder.
  std::string Finish();

 private:
  struct Impl;
  Impl* impl_;
  size_t count_ = 0;
};

// Decodes one frame. A frame whose version differs from kProtocolVersion
// decodes only its header: the Status is an error naming both versions and
// `out->version` / `out->type` are set, so that the receiver can refuse it.
//
// The frame is untrusted. A first pass (for frames over kUnscannedFrameBytes;
// a smaller one cannot hold more elements than that), whose memory does not
// grow with the frame, rejects a frame that declares more elements than it has
// bytes or
// than kMaxFrameElements, or nests containers more than six deep, in time
// linear in the bytes it reads; the other caps above are checked before any
// list is sized. What a call allocates stays within a small multiple of the
// frame's size plus a constant that the caps bound. On success `*out` is
// replaced as a whole; on error only `out->version` and `out->type` may have
// been set (when the header was readable) and, for a REFUSE of another
// version, `out->reason`.
// Does not keep `data`; safe to call from any thread.
Status DecodeMessage(const void* data, size_t size, Message* out);

}  // namespace fanmap

#endif  // FANMAP_COMMON_PROTOCOL_H_
