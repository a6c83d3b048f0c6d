#include "coordinator/joblog.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>

#include "common/write_all.h"

namespace fanmap {
namespace {

constexpr size_t kFlushBytes = 64 * 1024;

int64_t IntField(const Result& result, const char* key, int64_t fallback) {
  auto it = result.extra.find(key);
  if (it == result.extra.end()) return fallback;
  const int64_t* n = std::get_if<int64_t>(&it->second);
  return n != nullptr ? *n : fallback;
}

const std::string* TextField(const Result& result, const char* key) {
  auto it = result.extra.find(key);
  return it == result.extra.end() ? nullptr : std::get_if<std::string>(&it->second);
}

}  // namespace

const char Joblog::kHeader[] =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

Joblog::~Joblog() {
  Flush();
  if (fd_ >= 0) close(fd_);
}

Status Joblog::Open(const std::string& path, bool append, std::unique_ptr<Joblog>* out) {
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
  int fd = open(path.c_str(), flags, 0644);
  if (fd < 0) return Status::Error("cannot open --joblog '" + path + "': " + strerror(errno));
  std::unique_ptr<Joblog> log(new Joblog(fd, path));
  struct stat st;
  if (!append || (fstat(fd, &st) == 0 && st.st_size == 0)) log->buffer_ = kHeader;
  Status s = log->Flush();
  if (!s.ok()) return s;
  *out = std::move(log);
  return Status::Ok();
}

std::string Joblog::FormatLine(uint64_t index, const Result& result) {
  int64_t start_us = IntField(result, "start_us", 0);
  int64_t signal = IntField(result, "signal", 0);
  int64_t exitval = IntField(result, "exit_code", result.ok || signal != 0 ? 0 : -1);
  size_t received = result.ok ? result.value.size() : 0;
  if (const std::string* out = TextField(result, "stdout")) received = out->size();
  const std::string* command = TextField(result, "command");
  char fields[160];
  std::snprintf(fields, sizeof fields,
                "%" PRIu64 "\t:\t%" PRId64 ".%03" PRId64 "\t%10.3f\t0\t%zu\t%" PRId64 "\t%" PRId64
                "\t",
                index + 1, start_us / 1000000, (start_us / 1000) % 1000,
                static_cast<double>(result.elapsed_us) / 1e6, received, exitval, signal);
  std::string line = fields;
  if (command != nullptr) {
    // One row per command whatever the items hold: a TSV reader would split
    // a row at a raw newline or tab.
    for (char c : *command) {
      if (c == '\n') {
        line += "\\n";
      } else if (c == '\t') {
        line += "\\t";
      } else {
        line += c;
      }
    }
  }
  line += '\n';
  return line;
}

void Joblog::Write(uint64_t index, const Result& result) {
  if (!error_.ok()) return;
  buffer_ += FormatLine(index, result);
  if (buffer_.size() >= kFlushBytes) Flush();
}

Status Joblog::Flush() {
  if (!error_.ok()) return error_;
  int err = WriteAll(fd_, buffer_.data(), buffer_.size());
  buffer_.clear();
  if (err != 0) error_ = Status::Error("cannot write --joblog '" + path_ + "': " + strerror(err));
  return error_;
}

}  // namespace fanmap
