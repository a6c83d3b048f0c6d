#include "worker/payload_builtin.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <deque>
#include <queue>

#include "common/clock.h"

namespace fanmap {
namespace {

// A sha256 task runs at most this long per Advance() so that the loop keeps
// answering heartbeats and receiving tasks while CPU-bound work is going on.
constexpr int64_t kSliceMicros = 2000;

// SHA-256 with the algorithm fetched once and the context reused: OpenSSL 3's
// one-shot SHA256() looks the algorithm up on every call, which made a round
// four times slower than the hashing itself.
class Sha256 {
 public:
  Sha256() : md_(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx_(EVP_MD_CTX_new()) {}
  ~Sha256() {
    EVP_MD_CTX_free(ctx_);
    EVP_MD_free(md_);
  }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // out may alias data.
  void Hash(const void* data, size_t size, unsigned char out[SHA256_DIGEST_LENGTH]) {
    unsigned int length = 0;
    EVP_DigestInit_ex(ctx_, md_, nullptr);
    EVP_DigestUpdate(ctx_, data, size);
    EVP_DigestFinal_ex(ctx_, out, &length);
  }

 private:
  EVP_MD* md_;
  EVP_MD_CTX* ctx_;
};

std::string Hex(const unsigned char* bytes, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xF];
  }
  return out;
}

class EchoPayload : public Payload {
 public:
  EchoPayload(ResultSink* sink, std::string fail_on, bool fail)
      : sink_(sink), fail_on_(std::move(fail_on)), fail_(fail) {}

  void Start(Task task) override {
    if (fail_ && task.item == fail_on_) {
      sink_->push_back(ErrorResult(task, "builtin fail-on: item '" + task.item + "' fails"));
    } else {
      std::string value = std::move(task.item);
      sink_->push_back(OkResult(task, std::move(value)));
    }
  }
  size_t running() const override { return 0; }
  void Cancel(uint64_t) override {}  // echo never runs: it finishes in Start()

 private:
  ResultSink* sink_;
  std::string fail_on_;
  bool fail_;
};

class SleepPayload : public Payload {
 public:
  SleepPayload(ResultSink* sink, int64_t millis) : sink_(sink), millis_(millis) {}

  void Start(Task task) override {
    timers_.push(Timer{NowMicros() + millis_ * 1000, seq_++, std::move(task)});
  }

  void AddPollItems(std::vector<zmq_pollitem_t>* items, long* timeout_ms) override {
    if (timers_.empty()) return;
    int64_t wait_us = timers_.top().deadline_us - NowMicros();
    // Round up so that the loop does not wake just before the deadline.
    long wait_ms = wait_us <= 0 ? 0 : static_cast<long>((wait_us + 999) / 1000);
    if (*timeout_ms < 0 || wait_ms < *timeout_ms) *timeout_ms = wait_ms;
  }

  void Advance(const zmq_pollitem_t*, size_t) override {
    int64_t now = NowMicros();
    while (!timers_.empty() && timers_.top().deadline_us <= now) {
      Task task = std::move(const_cast<Timer&>(timers_.top()).task);
      timers_.pop();
      std::string value = std::move(task.item);
      sink_->push_back(OkResult(task, std::move(value)));
    }
  }

  size_t running() const override { return timers_.size(); }
  void Cancel(uint64_t index) override {
    std::vector<Timer> kept;
    while (!timers_.empty()) {
      if (timers_.top().task.index != index)
        kept.push_back(std::move(const_cast<Timer&>(timers_.top())));
      timers_.pop();
    }
    for (Timer& timer : kept) timers_.push(std::move(timer));
  }
  void Shutdown() override { timers_ = {}; }

 private:
  struct Timer {
    int64_t deadline_us;
    uint64_t seq;  // keeps equal deadlines in arrival order
    Task task;
    bool operator>(const Timer& other) const {
      return deadline_us != other.deadline_us ? deadline_us > other.deadline_us : seq > other.seq;
    }
  };
  ResultSink* sink_;
  int64_t millis_;
  uint64_t seq_ = 0;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
};

class Sha256Payload : public Payload {
 public:
  Sha256Payload(ResultSink* sink, uint64_t rounds) : sink_(sink), rounds_(rounds) {}

  void Start(Task task) override {
    Job job;
    job.task = std::move(task);
    if (rounds_ > 0) {
      sha_.Hash(job.task.item.data(), job.task.item.size(), job.digest);
      job.done = 1;
    }
    jobs_.push_back(std::move(job));
  }

  void AddPollItems(std::vector<zmq_pollitem_t>*, long* timeout_ms) override {
    if (!jobs_.empty()) *timeout_ms = 0;
  }

  void Advance(const zmq_pollitem_t*, size_t) override {
    int64_t end = NowMicros() + kSliceMicros;
    while (!jobs_.empty()) {
      Job& job = jobs_.front();
      while (job.done < rounds_) {
        // Check the clock every 256 rounds: a round is well under a microsecond.
        uint64_t stop = std::min(rounds_, job.done + 256);
        for (; job.done < stop; ++job.done) sha_.Hash(job.digest, sizeof job.digest, job.digest);
        if (NowMicros() >= end) return;
      }
      std::string hex = rounds_ == 0 ? job.task.item : Hex(job.digest, sizeof job.digest);
      sink_->push_back(OkResult(job.task, std::move(hex)));
      jobs_.pop_front();
    }
  }

  size_t running() const override { return jobs_.size(); }
  void Cancel(uint64_t index) override {
    jobs_.erase(std::remove_if(jobs_.begin(), jobs_.end(),
                               [index](const Job& job) { return job.task.index == index; }),
                jobs_.end());
  }
  void Shutdown() override { jobs_.clear(); }

 private:
  struct Job {
    Task task;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    uint64_t done = 0;
  };
  ResultSink* sink_;
  uint64_t rounds_;
  Sha256 sha_;
  std::deque<Job> jobs_;
};

}  // namespace

std::string Sha256Rounds(const std::string& item, uint64_t rounds) {
  if (rounds == 0) return item;
  Sha256 sha;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  sha.Hash(item.data(), item.size(), digest);
  for (uint64_t i = 1; i < rounds; ++i) sha.Hash(digest, sizeof digest, digest);
  return Hex(digest, sizeof digest);
}

Status MakeBuiltinPayload(const std::string& spec, ResultSink* sink,
                          std::unique_ptr<Payload>* out) {
  BuiltinSpec parsed;
  Status status = ParseBuiltinSpec(spec, &parsed);
  if (!status.ok()) return status;
  switch (parsed.kind) {
    case BuiltinSpec::Kind::kEcho:
      *out = std::make_unique<EchoPayload>(sink, "", false);
      break;
    case BuiltinSpec::Kind::kFailOn:
      *out = std::make_unique<EchoPayload>(sink, parsed.text, true);
      break;
    case BuiltinSpec::Kind::kSleep:
      *out = std::make_unique<SleepPayload>(sink, static_cast<int64_t>(parsed.count));
      break;
    case BuiltinSpec::Kind::kSha256:
      *out = std::make_unique<Sha256Payload>(sink, parsed.count);
      break;
  }
  return Status::Ok();
}

}  // namespace fanmap
