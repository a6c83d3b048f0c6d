#include "coordinator/item_fingerprint.h"

#include "common/job_keys.h"

namespace fanmap {
namespace {

// Changing this text (or JobIdentity's layout) changes every fingerprint:
// files written before could no longer be resumed. Bump it only on purpose.
constexpr char kIdentityVersion[] = "fanmap job 1\n";

// The options that decide a result, in identity order. api_key, timeout_ms
// and liveness_ms are left out on purpose: they change how, not what.
constexpr const char* kResultOptions[] = {
    job_key::kMethod,
    job_key::kHeaders,
    job_key::kChatModel,
    job_key::kSystem,
    job_key::kMaxTokens,
    job_key::kTemperature,
    job_key::kInputFormat,
    // exec under GNU parallel's options (absent otherwise, so older files
    // keep their fingerprints)
    job_key::kArgTable,
    job_key::kReplaceStr,
    job_key::kContextReplace,
    job_key::kTag,
    job_key::kDryRun,
    // --pipe-answers json reads the same lines into other records (set only
    // then, so --pipe files of the default format keep their fingerprints)
    job_key::kPipeAnswers,
};

void AppendSized(std::string_view value, std::string* out) {
  out->append(std::to_string(value.size()));
  out->push_back(':');
  out->append(value);
  out->push_back('\n');
}

}  // namespace

std::string JobIdentity(const JobSpec& job) {
  std::string out = kIdentityVersion;
  out.append("kind ");
  AppendSized(job.kind, &out);
  out.append("argv ");
  out.append(std::to_string(job.argv.size()));
  out.push_back('\n');
  for (const std::string& arg : job.argv) AppendSized(arg, &out);
  for (const char* key : kResultOptions) {
    auto it = job.options.find(key);
    if (it == job.options.end()) continue;
    out.append(key);
    out.push_back(' ');
    AppendSized(it->second, &out);
  }
  return out;
}

void AppendFingerprintHex(uint64_t fingerprint, std::string* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char text[kFingerprintHexLength];
  for (size_t i = kFingerprintHexLength; i-- > 0; fingerprint >>= 4) {
    text[i] = kDigits[fingerprint & 0xf];
  }
  out->append(text, kFingerprintHexLength);
}

std::string FingerprintHex(uint64_t fingerprint) {
  std::string out;
  AppendFingerprintHex(fingerprint, &out);
  return out;
}

bool ParseFingerprintHex(std::string_view text, uint64_t* fingerprint) {
  if (text.size() != kFingerprintHexLength) return false;
  uint64_t value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return false;
    }
    value = value << 4 | static_cast<uint64_t>(digit);
  }
  *fingerprint = value;
  return true;
}

}  // namespace fanmap
