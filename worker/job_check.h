// Checks a JobSpec without building its payload, so that the coordinator
// can refuse a typo as a usage error before it starts any worker, without
// linking the payloads (child processes, libcurl's multi interface) it never
// runs itself.
#ifndef FANMAP_WORKER_JOB_CHECK_H_
#define FANMAP_WORKER_JOB_CHECK_H_

#include <cstdint>
#include <string>

#include "common/protocol.h"
#include "common/status.h"

namespace fanmap {

// A parsed `--builtin` spec.
struct BuiltinSpec {
  enum class Kind : uint8_t { kEcho, kFailOn, kSleep, kSha256 };
  Kind kind = Kind::kEcho;
  uint64_t count = 0;  // kSleep: milliseconds; kSha256: rounds
  std::string text;    // kFailOn: the item that fails
};

// Parses "echo", "fail-on:TEXT", "sleep:MS" or "sha256:ROUNDS".
Status ParseBuiltinSpec(const std::string& spec, BuiltinSpec* out);

// Checks that `job` describes a payload this build can run: its kind, its
// arguments, and (http) its options.
Status ValidateJob(const JobSpec& job);

}  // namespace fanmap

#endif  // FANMAP_WORKER_JOB_CHECK_H_
