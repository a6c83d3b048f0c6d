// Builtin payloads for demos, tests and benchmarks:
//   echo          the result is the item
//   sleep:MS      the result is the item, after MS milliseconds (a timer, so
//                 `--slots K` overlaps K sleeps in one worker)
//   sha256:ROUNDS the result is the hex SHA-256 of the item hashed ROUNDS
//                 times (CPU-bound; run in slices so heartbeats keep flowing)
//   fail-on:TEXT  like echo, but an item equal to TEXT fails (for tests)
#ifndef FANMAP_WORKER_PAYLOAD_BUILTIN_H_
#define FANMAP_WORKER_PAYLOAD_BUILTIN_H_

#include <memory>
#include <string>

#include "worker/payload.h"

namespace fanmap {

// `spec` is the text after --builtin, e.g. "sleep:1000".
Status MakeBuiltinPayload(const std::string& spec, ResultSink* sink, std::unique_ptr<Payload>* out);

// Hex SHA-256 of `item` iterated `rounds` times (exposed for tests).
std::string Sha256Rounds(const std::string& item, uint64_t rounds);

}  // namespace fanmap

#endif  // FANMAP_WORKER_PAYLOAD_BUILTIN_H_
