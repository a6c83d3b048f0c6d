#include "worker/job_check.h"

#include "common/job_keys.h"
#include "worker/http_request.h"
#include "worker/pipe_answer.h"

namespace fanmap {
namespace {

bool ParseCount(const std::string& text, uint64_t* out) {
  if (text.empty() || text.size() > 12) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

Status ParseBuiltinSpec(const std::string& spec, BuiltinSpec* out) {
  auto colon = spec.find(':');
  std::string name = spec.substr(0, colon);
  std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  BuiltinSpec parsed;
  if (name == "echo" && colon == std::string::npos) {
    parsed.kind = BuiltinSpec::Kind::kEcho;
  } else if (name == "fail-on" && colon != std::string::npos) {
    parsed.kind = BuiltinSpec::Kind::kFailOn;
    parsed.text = arg;
  } else if (name == "sleep" && ParseCount(arg, &parsed.count)) {
    parsed.kind = BuiltinSpec::Kind::kSleep;
  } else if (name == "sha256" && ParseCount(arg, &parsed.count)) {
    parsed.kind = BuiltinSpec::Kind::kSha256;
  } else {
    return Status::Error("unknown builtin '" + spec +
                         "' (expected echo, sleep:MS, sha256:ROUNDS or fail-on:TEXT)");
  }
  *out = std::move(parsed);
  return Status::Ok();
}

Status ValidateJob(const JobSpec& job) {
  if (job.kind == "builtin") {
    if (job.argv.size() != 1) return Status::Error("builtin job needs exactly one spec");
    BuiltinSpec spec;
    return ParseBuiltinSpec(job.argv[0], &spec);
  }
  if (job.kind == "exec") {
    return job.argv.empty() ? Status::Error("exec job needs a command") : Status::Ok();
  }
  if (job.kind == "pipe") {
    if (job.argv.size() != 1 || job.argv[0].empty()) {
      return Status::Error("pipe job needs a command");
    }
    auto answers = job.options.find(job_key::kPipeAnswers);
    PipeAnswerFormat format;
    if (answers != job.options.end() && !ParsePipeAnswerFormat(answers->second, &format)) {
      return Status::Error("unknown pipe answer format '" + answers->second +
                           "' (expected lines or json)");
    }
    return Status::Ok();
  }
  if (job.kind == "http") {
    HttpOptions options;
    return ParseHttpOptions(job, &options);
  }
  return Status::Error("unknown payload kind '" + job.kind + "'");
}

}  // namespace fanmap
