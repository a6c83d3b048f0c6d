#include "common/protocol.h"

#include <algorithm>
#include <msgpack.hpp>
#include <new>
#include <utility>

namespace fanmap {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

// The deepest message nests four containers (root, results list, result,
// its extra map or its limits array). The headroom lets a later version nest deeper and still be
// read far enough to be refused by its version rather than as malformed.
constexpr uint32_t kMaxNesting = 6;
// The longest array and the largest map of any message.
constexpr uint32_t kMaxArrayElements = std::max({kMaxFrameTasks, kMaxFrameResults, kMaxJobArgv});
constexpr uint32_t kMaxMapEntries = std::max(kMaxResultExtra, kMaxJobOptions);

static_assert(7 + kMaxJobArgv + 2 * kMaxJobOptions <= kMaxFrameElements,
              "the largest JOB must fit in kMaxFrameElements");
static_assert(3 + 4 * kMaxFrameTasks <= kMaxFrameElements,
              "the largest TASKS frame must fit in kMaxFrameElements");

std::string ToString(const msgpack::sbuffer& buffer) {
  return std::string(buffer.data(), buffer.size());
}

void PackHeader(Packer& packer, uint32_t array_size, MessageType type) {
  packer.pack_array(array_size);
  packer.pack_uint32(kProtocolVersion);
  packer.pack_uint8(static_cast<uint8_t>(type));
}

void PackString(Packer& packer, const std::string& s) {
  packer.pack_str(static_cast<uint32_t>(s.size()));
  packer.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

// Checked readers of untrusted msgpack objects: each returns false on a type
// or shape mismatch instead of throwing.
bool ReadUint(const msgpack::object& o, uint64_t* out) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return false;
  *out = o.via.u64;
  return true;
}

bool ReadUint32(const msgpack::object& o, uint32_t* out) {
  uint64_t v;
  if (!ReadUint(o, &v) || v > UINT32_MAX) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

bool ReadInt(const msgpack::object& o, int64_t* out) {
  if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    *out = o.via.i64;
    return true;
  }
  uint64_t v;
  if (!ReadUint(o, &v) || v > static_cast<uint64_t>(INT64_MAX)) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

bool ReadString(const msgpack::object& o, std::string* out) {
  if (o.type != msgpack::type::STR) return false;
  out->assign(o.via.str.ptr, o.via.str.size);
  return true;
}

bool ReadBool(const msgpack::object& o, bool* out) {
  if (o.type != msgpack::type::BOOLEAN) return false;
  *out = o.via.boolean;
  return true;
}

const msgpack::object_array* AsArray(const msgpack::object& o, uint32_t min_size,
                                     uint32_t max_size) {
  if (o.type != msgpack::type::ARRAY) return nullptr;
  if (o.via.array.size < min_size || o.via.array.size > max_size) return nullptr;
  return &o.via.array;
}

bool ReadTask(const msgpack::object& o, Task* task) {
  auto* a = AsArray(o, 3, 3);
  return a != nullptr && ReadUint(a->ptr[0], &task->index) &&
         ReadUint32(a->ptr[1], &task->attempt) && ReadString(a->ptr[2], &task->item);
}

// First pass over a frame: msgpack's own parser walks the bytes and calls
// this visitor without building any object, and the visitor stops it at the
// first container that would take the frame past a cap. msgpack::unpack, run
// only on frames that pass, allocates one object per element up front for
// each container; without this pass a 16 MiB frame of nils took over 400 MB.
class FrameScan : public msgpack::null_visitor {
 public:
  explicit FrameScan(size_t frame_size) : frame_size_(frame_size) {}

  bool start_array(uint32_t size) {
    if (size > kMaxArrayElements) {
      return Fail("an array of " + std::to_string(size) + " elements (at most " +
                  std::to_string(kMaxArrayElements) + ")");
    }
    return Open(size);
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool start_map(uint32_t size) {
    if (size > kMaxMapEntries) {
      return Fail("a map of " + std::to_string(size) + " entries (at most " +
                  std::to_string(kMaxMapEntries) + ")");
    }
    return Open(uint64_t{size} * 2);
  }
  bool end_map() {
    --depth_;
    return true;
  }
  bool visit_bin(const char*, uint32_t) { return Fail("binary data (the protocol has none)"); }
  bool visit_ext(const char*, uint32_t) { return Fail("an ext value (the protocol has none)"); }
  void parse_error(size_t, size_t) { Fail("not msgpack"); }
  void insufficient_bytes(size_t, size_t) { Fail("truncated"); }

  // Why the parse stopped; empty if it did not.
  const std::string& error() const { return error_; }

 private:
  // Counts a container's elements when it is declared, before any of them is
  // read, so that a lying header stops the parse at once.
  bool Open(uint64_t elements) {
    if (++depth_ > kMaxNesting) {
      return Fail("nested deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    elements_ += elements;
    // Every element takes at least one byte of the frame.
    if (elements_ > frame_size_) return Fail("declares more elements than it has bytes");
    if (elements_ > kMaxFrameElements) {
      return Fail("more than " + std::to_string(kMaxFrameElements) + " elements");
    }
    return true;
  }
  bool Fail(std::string error) {
    if (error_.empty()) error_ = std::move(error);
    return false;
  }

  const size_t frame_size_;
  uint64_t elements_ = 0;
  uint32_t depth_ = 0;
  std::string error_;
};

std::optional<uint64_t>* LimitField(ServerLimits* limits, uint32_t i) {
  std::optional<uint64_t>* fields[kServerLimitFields] = {
      &limits->limit_requests, &limits->remaining_requests, &limits->reset_requests_ms,
      &limits->limit_tokens,   &limits->remaining_tokens,   &limits->reset_tokens_ms};
  return fields[i];
}

// nil, or an array of kServerLimitFields elements, each nil or a uint.
bool ReadLimits(const msgpack::object& o, ServerLimits* limits) {
  if (o.type == msgpack::type::NIL) return true;
  auto* a = AsArray(o, kServerLimitFields, kServerLimitFields);
  if (a == nullptr) return false;
  for (uint32_t i = 0; i < kServerLimitFields; ++i) {
    if (a->ptr[i].type == msgpack::type::NIL) continue;
    uint64_t v;
    if (!ReadUint(a->ptr[i], &v)) return false;
    *LimitField(limits, i) = v;
  }
  return limits->Valid();
}

void PackLimits(Packer& packer, const ServerLimits& limits) {
  if (limits.empty()) {
    packer.pack_nil();
    return;
  }
  packer.pack_array(kServerLimitFields);
  ServerLimits copy = limits;
  for (uint32_t i = 0; i < kServerLimitFields; ++i) {
    const std::optional<uint64_t>& field = *LimitField(&copy, i);
    if (field) {
      packer.pack_uint64(*field);
    } else {
      packer.pack_nil();
    }
  }
}

bool ReadResult(const msgpack::object& o, Result* result) {
  auto* a = AsArray(o, 12, 12);
  ServerLimits limits;
  uint64_t cause;
  if (a == nullptr || !ReadUint(a->ptr[10], &cause) || cause > kMaxFailureCause ||
      !ReadLimits(a->ptr[11], &limits)) {
    return false;
  }
  result->limits = limits;
  result->cause = static_cast<FailureCause>(cause);
  if (!ReadUint(a->ptr[0], &result->index) || !ReadUint32(a->ptr[1], &result->attempt) ||
      !ReadBool(a->ptr[2], &result->ok) || !ReadString(a->ptr[3], &result->value) ||
      !ReadBool(a->ptr[4], &result->value_is_json) || !ReadUint(a->ptr[5], &result->elapsed_us) ||
      !ReadBool(a->ptr[6], &result->retryable) || !ReadUint32(a->ptr[7], &result->retry_after_ms) ||
      !ReadBool(a->ptr[9], &result->fatal)) {
    return false;
  }
  const msgpack::object& extra = a->ptr[8];
  if (extra.type != msgpack::type::MAP || extra.via.map.size > kMaxResultExtra) return false;
  for (uint32_t i = 0; i < extra.via.map.size; ++i) {
    const msgpack::object_kv& kv = extra.via.map.ptr[i];
    std::string key;
    if (!ReadString(kv.key, &key)) return false;
    int64_t number;
    std::string text;
    if (ReadInt(kv.val, &number)) {
      result->extra[key] = number;
    } else if (ReadString(kv.val, &text)) {
      result->extra[key] = std::move(text);
    } else {
      return false;
    }
  }
  return true;
}

bool ReadJob(const msgpack::object_array& a, JobSpec* job) {
  if (a.size != 7 || !ReadString(a.ptr[2], &job->run_id) || !ReadString(a.ptr[3], &job->kind)) {
    return false;
  }
  auto* argv = AsArray(a.ptr[4], 0, kMaxJobArgv);
  if (argv == nullptr) return false;
  job->argv.reserve(argv->size);
  for (uint32_t i = 0; i < argv->size; ++i) {
    if (!ReadString(argv->ptr[i], &job->argv.emplace_back())) return false;
  }
  if (a.ptr[5].type != msgpack::type::MAP || a.ptr[5].via.map.size > kMaxJobOptions) return false;
  const msgpack::object_map& options = a.ptr[5].via.map;
  for (uint32_t i = 0; i < options.size; ++i) {
    std::string key, value;
    if (!ReadString(options.ptr[i].key, &key) || !ReadString(options.ptr[i].val, &value)) {
      return false;
    }
    job->options[key] = std::move(value);
  }
  return ReadUint32(a.ptr[6], &job->default_slots);
}

// Fills `out` from the message body; false if the shape is wrong. A list is
// reserved only once its size is known to be within its cap, and filled one
// checked element at a time.
bool ReadBody(const msgpack::object_array& a, Message* out) {
  switch (out->type) {
    case MessageType::kHello:
      return a.size == 6 && ReadUint32(a.ptr[2], &out->hello.slots) &&
             ReadString(a.ptr[3], &out->hello.name) && ReadString(a.ptr[4], &out->hello.host) &&
             ReadUint32(a.ptr[5], &out->hello.pid);
    case MessageType::kResults: {
      auto* list = a.size == 4 && ReadString(a.ptr[2], &out->run_id)
                       ? AsArray(a.ptr[3], 0, kMaxFrameResults)
                       : nullptr;
      if (list == nullptr) return false;
      out->results.reserve(list->size);
      for (uint32_t i = 0; i < list->size; ++i) {
        if (!ReadResult(list->ptr[i], &out->results.emplace_back())) return false;
      }
      return true;
    }
    case MessageType::kTasks: {
      auto* list = a.size == 3 ? AsArray(a.ptr[2], 0, kMaxFrameTasks) : nullptr;
      if (list == nullptr) return false;
      out->tasks.reserve(list->size);
      for (uint32_t i = 0; i < list->size; ++i) {
        if (!ReadTask(list->ptr[i], &out->tasks.emplace_back())) return false;
      }
      return true;
    }
    case MessageType::kHeartbeat:
      return a.size == 2;
    case MessageType::kJob:
      return ReadJob(a, &out->job);
    case MessageType::kStop:
    case MessageType::kRefuse:
    case MessageType::kBye:
    case MessageType::kReset:
      return a.size == 3 && ReadString(a.ptr[2], &out->reason);
  }
  return false;
}

bool KnownType(uint64_t type) { return type >= 1 && type <= 9; }

// Strings reference the frame instead of being copied into the zone: the
// frame outlives the object handle inside DecodeMessage.
bool ReferenceEverything(msgpack::type::object_type, std::size_t, void*) { return true; }

}  // namespace

bool ServerLimits::Valid() const {
  auto count_ok = [](const std::optional<uint64_t>& v) { return !v || *v <= kMaxLimitCount; };
  auto reset_ok = [](const std::optional<uint64_t>& v) { return !v || *v <= kMaxLimitResetMs; };
  auto within = [](const std::optional<uint64_t>& remaining, const std::optional<uint64_t>& limit) {
    return !remaining || !limit || *remaining <= *limit;
  };
  return count_ok(limit_requests) && count_ok(remaining_requests) && count_ok(limit_tokens) &&
         count_ok(remaining_tokens) && reset_ok(reset_requests_ms) && reset_ok(reset_tokens_ms) &&
         within(remaining_requests, limit_requests) && within(remaining_tokens, limit_tokens);
}

std::string EncodeHello(const Hello& hello) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  PackHeader(packer, 6, MessageType::kHello);
  packer.pack_uint32(hello.slots);
  PackString(packer, hello.name);
  PackString(packer, hello.host);
  packer.pack_uint32(hello.pid);
  return ToString(buffer);
}

std::string EncodeResults(const std::string& run_id, const std::vector<Result>& results) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  PackHeader(packer, 4, MessageType::kResults);
  PackString(packer, run_id);
  packer.pack_array(static_cast<uint32_t>(results.size()));
  for (const Result& r : results) {
    packer.pack_array(12);
    packer.pack_uint64(r.index);
    packer.pack_uint32(r.attempt);
    packer.pack(r.ok);
    PackString(packer, r.value);
    packer.pack(r.value_is_json);
    packer.pack_uint64(r.elapsed_us);
    packer.pack(r.retryable);
    packer.pack_uint32(r.retry_after_ms);
    packer.pack_map(static_cast<uint32_t>(r.extra.size()));
    for (const auto& [key, value] : r.extra) {
      PackString(packer, key);
      if (const int64_t* number = std::get_if<int64_t>(&value)) {
        packer.pack_int64(*number);
      } else {
        PackString(packer, std::get<std::string>(value));
      }
    }
    packer.pack(r.fatal);
    packer.pack_uint8(static_cast<uint8_t>(r.cause));
    PackLimits(packer, *r.limits);
  }
  return ToString(buffer);
}

std::string EncodeHeartbeat() {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  PackHeader(packer, 2, MessageType::kHeartbeat);
  return ToString(buffer);
}

std::string EncodeJob(const JobSpec& job) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  PackHeader(packer, 7, MessageType::kJob);
  PackString(packer, job.run_id);
  PackString(packer, job.kind);
  packer.pack_array(static_cast<uint32_t>(job.argv.size()));
  for (const std::string& arg : job.argv) PackString(packer, arg);
  packer.pack_map(static_cast<uint32_t>(job.options.size()));
  for (const auto& [key, value] : job.options) {
    PackString(packer, key);
    PackString(packer, value);
  }
  packer.pack_uint32(job.default_slots);
  return ToString(buffer);
}

static std::string EncodeReason(MessageType type, const std::string& reason) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  PackHeader(packer, 3, type);
  PackString(packer, reason);
  return ToString(buffer);
}

std::string EncodeStop(const std::string& reason) {
  return EncodeReason(MessageType::kStop, reason);
}

std::string EncodeRefuse(const std::string& reason) {
  return EncodeReason(MessageType::kRefuse, reason);
}

std::string EncodeBye(const std::string& reason) { return EncodeReason(MessageType::kBye, reason); }

std::string EncodeReset(const std::string& reason) {
  return EncodeReason(MessageType::kReset, reason);
}

struct TasksEncoder::Impl {
  msgpack::sbuffer body;
};

TasksEncoder::TasksEncoder() : impl_(new Impl) {}
TasksEncoder::~TasksEncoder() { delete impl_; }

void TasksEncoder::Add(uint64_t index, uint32_t attempt, const std::string& item) {
  Packer packer(impl_->body);
  packer.pack_array(3);
  packer.pack_uint64(index);
  packer.pack_uint32(attempt);
  PackString(packer, item);
  ++count_;
}

size_t TasksEncoder::bytes() const { return impl_->body.size(); }

std::string TasksEncoder::Finish() {
  // The array header needs the final count, so the body is packed first and
  // the header prepended here.
  msgpack::sbuffer header;
  Packer packer(header);
  PackHeader(packer, 3, MessageType::kTasks);
  packer.pack_array(static_cast<uint32_t>(count_));
  std::string frame;
  frame.reserve(header.size() + impl_->body.size());
  frame.append(header.data(), header.size());
  frame.append(impl_->body.data(), impl_->body.size());
  impl_->body.clear();
  count_ = 0;
  return frame;
}

Status DecodeMessage(const void* data, size_t size, Message* out) {
  const char* bytes = static_cast<const char*>(data);
  size_t offset = 0;
  // A small frame cannot hold more elements than bytes, and unpack's limits
  // below keep each container's claim within half of them: what unpack
  // allocates for it stays within 96 times its size (1.5 MiB) without a
  // first pass. Both binaries batch ordinary TASKS and RESULTS frames under
  // this size, where the pass would double the cost of decoding.
  if (size > kUnscannedFrameBytes) {
    FrameScan scan(size);
    try {
      if (!msgpack::parse(bytes, size, offset, scan)) {
        return Status::Error("malformed frame: " +
                             (scan.error().empty() ? std::string("not msgpack") : scan.error()));
      }
    } catch (const std::exception& e) {
      return Status::Error(std::string("malformed frame: ") + e.what());
    }
    if (offset != size) return Status::Error("malformed frame: trailing bytes after the message");
  }

  // The limits repeat what the first pass checked; they bound unpack on
  // their own should the two ever disagree.
  // msgpack sizes a container's objects when it starts it: no container may
  // claim more elements than the frame can hold.
  // An unscanned frame's containers may claim half of its bytes each (a
  // task, a result, a map entry and every argument but an empty one take at
  // least two): with kMaxNesting open at once, msgpack's objects take at
  // most 96 times its bytes.
  const size_t claim = size > kUnscannedFrameBytes ? size : std::max<size_t>(16, size / 2);
  msgpack::unpack_limit limit(/*array=*/std::min<size_t>(kMaxArrayElements, claim),
                              /*map=*/std::min<size_t>(kMaxMapEntries, claim),
                              /*str=*/size, /*bin=*/0, /*ext=*/0, /*depth=*/kMaxNesting);
  msgpack::object_handle handle;
  offset = 0;
  try {
    handle = msgpack::unpack(bytes, size, offset, ReferenceEverything, nullptr, limit);
  } catch (const msgpack::unpack_error& e) {
    return Status::Error(std::string("malformed frame: ") + e.what());
  } catch (const std::bad_alloc&) {
    // The first pass bounds what unpack allocates: this is the process
    // running out of memory, not the frame lying about its size.
    return Status::Error("cannot decode frame: out of memory");
  } catch (const std::exception& e) {
    return Status::Error(std::string("malformed frame: ") + e.what());
  }
  if (offset != size) return Status::Error("malformed frame: trailing bytes after the message");

  const msgpack::object& root = handle.get();
  auto* a = AsArray(root, 2, UINT32_MAX);
  uint64_t version, type;
  if (a == nullptr || !ReadUint(a->ptr[0], &version) || !ReadUint(a->ptr[1], &type)) {
    return Status::Error("malformed frame: not a [version, type, ...] array");
  }
  if (!KnownType(type) && version == kProtocolVersion) {
    return Status::Error("malformed frame: unknown message type " + std::to_string(type));
  }
  out->version = static_cast<uint32_t>(std::min<uint64_t>(version, UINT32_MAX));
  out->type = static_cast<MessageType>(KnownType(type) ? type : 0);
  if (version != kProtocolVersion) {
    // REFUSE keeps its shape across versions so that a refusal is readable.
    if (type == static_cast<uint64_t>(MessageType::kRefuse) && a->size == 3) {
      ReadString(a->ptr[2], &out->reason);
    }
    return Status::Error("protocol version " + std::to_string(version) + " is not supported (" +
                         "this side speaks version " + std::to_string(kProtocolVersion) + ")");
  }
  // The body goes to a message of its own, so that a frame rejected halfway
  // leaves no partial body in `*out`.
  Message message;
  message.type = out->type;
  if (!ReadBody(*a, &message)) {
    return Status::Error("malformed frame: bad body for message type " + std::to_string(type));
  }
  *out = std::move(message);
  return Status::Ok();
}

}  // namespace fanmap
