// Fuzz target for the frame decoder: every byte string a network peer could
// send must decode to a message or to an error, never crash, hang or
// allocate without bound; a message that decodes must survive re-encoding.
//
// Built two ways:
//  - with clang -fsanitize=fuzzer (scripts/fuzz): a libFuzzer target;
//  - with FANMAP_FUZZ_REPLAY (a ctest): a main that mutates valid frames with
//    a fixed seed for a bounded number of rounds and replays any files given.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/protocol.h"

namespace {

using fanmap::Message;
using fanmap::MessageType;

// Re-encodes a decoded message; decoding that must give the same message.
void CheckRoundTrip(const Message& m) {
  std::string frame;
  switch (m.type) {
    case MessageType::kHello:
      frame = fanmap::EncodeHello(m.hello);
      break;
    case MessageType::kResults:
      frame = fanmap::EncodeResults(m.run_id, m.results);
      break;
    case MessageType::kJob:
      frame = fanmap::EncodeJob(m.job);
      break;
    case MessageType::kTasks: {
      fanmap::TasksEncoder encoder;
      for (const auto& t : m.tasks) encoder.Add(t.index, t.attempt, t.item);
      frame = encoder.Finish();
      break;
    }
    default:
      return;
  }
  Message again;
  if (!fanmap::DecodeMessage(frame.data(), frame.size(), &again).ok()) abort();
  if (again.type != m.type || again.tasks.size() != m.tasks.size() ||
      again.results.size() != m.results.size() || again.job.argv != m.job.argv) {
    abort();
  }
}

void DecodeOne(const uint8_t* data, size_t size) {
  Message m;
  if (fanmap::DecodeMessage(data, size, &m).ok()) CheckRoundTrip(m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DecodeOne(data, size);
  return 0;
}

#ifdef FANMAP_FUZZ_REPLAY

namespace {

std::vector<std::string> Seeds() {
  fanmap::Result r;
  r.index = 7;
  r.ok = false;
  r.value = "exit code 3";
  r.retryable = true;
  r.retry_after_ms = 1000;
  r.extra["exit_code"] = int64_t{3};
  r.extra["stderr"] = std::string("boom");
  fanmap::Result limited = r;
  limited.cause = fanmap::FailureCause::kThrottled;
  limited.limits.mut().limit_requests = 500;
  limited.limits.mut().remaining_requests = 3;
  limited.limits.mut().reset_requests_ms = 120;
  limited.limits.mut().reset_tokens_ms = 6000;
  fanmap::JobSpec job;
  job.kind = "exec";
  job.argv = {"sh", "-c", "echo {}"};
  job.options["liveness_ms"] = "5000";
  fanmap::TasksEncoder tasks;
  tasks.Add(1, 0, "item one");
  tasks.Add(2, 1, std::string("\0\xff", 2));
  return {fanmap::EncodeHello({4, "w", "host", 42}),
          fanmap::EncodeResults("run", {r, r}),
          fanmap::EncodeResults("run", {limited, r}),
          fanmap::EncodeJob(job),
          tasks.Finish(),
          fanmap::EncodeHeartbeat(),
          fanmap::EncodeStop("done"),
          fanmap::EncodeRefuse("no"),
          fanmap::EncodeBye("bye"),
          fanmap::EncodeReset("again")};
}

// One random mutation: flip, insert, delete, duplicate a range, or set a
// byte to an interesting value (msgpack type and size markers).
void Mutate(std::string* s, std::mt19937_64& rng) {
  static const uint8_t kInteresting[] = {0x00, 0x7f, 0x80, 0x90, 0x9f, 0xa0, 0xc0,
                                         0xc1, 0xc2, 0xc3, 0xcc, 0xcf, 0xd3, 0xd9,
                                         0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff};
  auto pick = [&](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); };
  switch (rng() % 5) {
    case 0:
      if (!s->empty()) (*s)[pick(s->size())] ^= static_cast<char>(1 << (rng() % 8));
      break;
    case 1:
      s->insert(s->begin() + static_cast<long>(pick(s->size() + 1)), static_cast<char>(rng()));
      break;
    case 2:
      if (!s->empty()) s->erase(pick(s->size()), 1 + pick(4));
      break;
    case 3:
      if (!s->empty()) {
        size_t at = pick(s->size());
        s->insert(at, s->substr(at, 1 + pick(8)));
      }
      break;
    default:
      if (!s->empty()) {
        (*s)[pick(s->size())] = static_cast<char>(kInteresting[pick(sizeof kInteresting)]);
      }
  }
}

}  // namespace

int main(int argc, char** argv) {
  long rounds = 200000;
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--rounds=", 0) == 0) {
      rounds = std::atol(arg.c_str() + 9);
      continue;
    }
    std::ifstream in(arg, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    inputs.push_back(ss.str());
  }
  for (const std::string& input : inputs) {
    DecodeOne(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  }
  std::vector<std::string> seeds = Seeds();
  std::mt19937_64 rng(20261126);
  for (long i = 0; i < rounds; ++i) {
    std::string frame = seeds[i % seeds.size()];
    int mutations = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < mutations; ++k) Mutate(&frame, rng);
    DecodeOne(reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
  }
  std::printf("decoded %zu given inputs and %ld mutated frames without a crash\n", inputs.size(),
              rounds);
  return 0;
}

#endif  // FANMAP_FUZZ_REPLAY
