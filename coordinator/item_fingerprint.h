// ItemFingerprinter: a 64-bit fingerprint of (the job, one item), written
// into every record of an output file as "fp", so that `--resume` can tell
// whether a record was made by this job from this item.
//
// The job's part is JobIdentity(): a canonical text of the JobSpec fields
// that decide a result (kind, argv, and the options method, headers,
// chat_model, system, max_tokens, temperature, input_format, GNU parallel's
// arg_table, replace_str, context_replace, tag and dry_run, and
// pipe_answers). Options that do not change a result (api_key, timeout_ms,
// liveness_ms) and the run id are left out, so a resumed run with a new key
// or timeout still matches.
//
// The fingerprint is FNV-1a 64 (offset basis 0xcbf29ce484222325, prime
// 0x100000001b3) over the bytes JobIdentity(job), one 0x00 byte, and the
// item's bytes (the input line without its "\n" and trailing "\r"). It is
// stable across builds, machines and versions of fanmap unless the identity
// text below changes (it carries a version line for that). It detects
// mistakes, not attackers: anyone can compute it.
//
// Thread-safety: an ItemFingerprinter is immutable after construction.
#ifndef FANMAP_COORDINATOR_ITEM_FINGERPRINT_H_
#define FANMAP_COORDINATOR_ITEM_FINGERPRINT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "common/protocol.h"

namespace fanmap {

constexpr uint64_t kFnv1a64Offset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnv1a64Prime = 0x100000001b3ull;

// FNV-1a 64 of `bytes`, continuing from `state` (the offset basis for a
// fresh hash).
inline uint64_t Fnv1a64(std::string_view bytes, uint64_t state = kFnv1a64Offset) {
  for (unsigned char c : bytes) {
    state ^= c;
    state *= kFnv1a64Prime;
  }
  return state;
}

// The canonical text of what decides a job's results:
//   "fanmap job 1\n"
//   "kind " LEN ":" BYTES "\n"
//   "argv " COUNT "\n", then per argument: LEN ":" BYTES "\n"
//   then, for each of the options above that is set, in the order listed:
//   NAME " " LEN ":" BYTES "\n"
// LEN is the decimal byte count, so no value can be mistaken for another.
std::string JobIdentity(const JobSpec& job);

class ItemFingerprinter {
 public:
  explicit ItemFingerprinter(const JobSpec& job)
      : seed_(Fnv1a64(std::string_view("\0", 1), Fnv1a64(JobIdentity(job)))) {}

  // The fingerprint of `item` in this job. No allocation; ~1 ns per byte.
  uint64_t Fingerprint(std::string_view item) const { return Fnv1a64(item, seed_); }

 private:
  uint64_t seed_;  // the hash state after the identity and its 0x00
};

// The text form of a fingerprint: exactly 16 lowercase hex digits.
constexpr size_t kFingerprintHexLength = 16;
// Appends the 16 digits of `fingerprint` to *out.
void AppendFingerprintHex(uint64_t fingerprint, std::string* out);
std::string FingerprintHex(uint64_t fingerprint);
// Parses exactly 16 lowercase hex digits; false (and *fingerprint unchanged)
// for anything else.
bool ParseFingerprintHex(std::string_view text, uint64_t* fingerprint);

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_ITEM_FINGERPRINT_H_
