#include "coordinator/record_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json_text.h"
#include "common/record_fields.h"
#include "coordinator/item_fingerprint.h"

namespace fanmap {
namespace {

constexpr size_t kFlushBytes = 1 << 20;
// A reader that is not reading gets this much buffered before full().
constexpr size_t kMaxBufferedBytes = 4 * kFlushBytes;

void AppendUint(uint64_t v, std::string* out) {
  char buf[24];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out->append(p, buf + sizeof buf - p);
}

}  // namespace

RecordWriter::RecordWriter(int fd, bool owned, OutputFormat format)
    : fd_(fd), owned_(owned), format_(format) {
  buffer_.reserve(kFlushBytes + 4096);
  struct stat st;
  if (fd_ < 0 || fstat(fd_, &st) != 0 || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return;
  if (S_ISSOCK(st.st_mode)) {
    sink_ = Sink::kSocket;
    return;
  }
  // A descriptor of our own: O_NONBLOCK on the one shared with the shell
  // (and whoever else writes to the pipe or terminal) would make their
  // writes fail with EAGAIN. Without /proc, writes block, as they did.
  std::string own = "/proc/self/fd/" + std::to_string(fd_);
  nonblocking_fd_ = open(own.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (nonblocking_fd_ < 0) return;
  sink_ = Sink::kNonBlocking;
  // A pipe of a flush's size takes a flush in one write instead of 16
  // (best effort: the system's pipe-max-size may be smaller).
  if (S_ISFIFO(st.st_mode)) fcntl(nonblocking_fd_, F_SETPIPE_SZ, static_cast<int>(kFlushBytes));
}

RecordWriter::~RecordWriter() {
  Flush();
  if (nonblocking_fd_ >= 0) close(nonblocking_fd_);
  if (owned_ && fd_ >= 0) close(fd_);
}

bool RecordWriter::full() const { return sink_ != Sink::kFile && buffered() >= kMaxBufferedBytes; }

Status RecordWriter::Open(const std::string& path, OutputFormat format,
                          std::unique_ptr<RecordWriter>* out) {
  if (path.empty() || path == "-") {
    *out = std::make_unique<RecordWriter>(1, false, format);
    return Status::Ok();
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Error("cannot open output '" + path + "': " + strerror(errno));
  *out = std::make_unique<RecordWriter>(fd, true, format);
  return Status::Ok();
}

Status RecordWriter::OpenAppend(const std::string& path, uint64_t keep_bytes, OutputFormat format,
                                std::unique_ptr<RecordWriter>* out) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Error("cannot open output '" + path + "': " + strerror(errno));
  // The torn tail is cut only when the first record is written: a resume
  // refused before then leaves the file as it was.
  if (lseek(fd, static_cast<off_t>(keep_bytes), SEEK_SET) != static_cast<off_t>(keep_bytes)) {
    int err = errno;
    close(fd);
    return Status::Error("cannot resume output '" + path + "': " + strerror(err));
  }
  *out = std::make_unique<RecordWriter>(fd, true, format);
  (*out)->truncate_at_ = static_cast<int64_t>(keep_bytes);
  return Status::Ok();
}

void RecordWriter::WriteVerbatim(const std::string& line) {
  if (!error_.ok()) return;
  buffer_.append(line);
  if (buffered() >= kFlushBytes) FlushSome();
}

namespace {

void AppendBatchRecord(uint64_t index, const Result& result, std::string* out,
                       std::optional<uint64_t> fingerprint) {
  out->append("{\"index\":");
  AppendUint(index, out);
  out->append(result.ok ? ",\"ok\":true" : ",\"ok\":false");
  if (fingerprint.has_value()) {
    out->append(",\"fp\":\"");
    AppendFingerprintHex(*fingerprint, out);
    out->push_back('"');
  }
  out->append(",\"id\":\"batch_req_");
  AppendUint(index, out);
  out->append("\",\"custom_id\":");
  auto custom_id = result.extra.find("custom_id");
  if (custom_id != result.extra.end() && std::holds_alternative<std::string>(custom_id->second)) {
    AppendJsonString(std::get<std::string>(custom_id->second), out);
  } else {
    out->append("null");
  }
  out->append(",\"response\":");
  // JSON fields were checked by the coordinator (SanitizeJsonFields).
  auto response = result.extra.find(JsonFieldKey("response"));
  if (result.ok && result.value_is_json) {
    out->append(result.value);
  } else if (response != result.extra.end() &&
             std::holds_alternative<std::string>(response->second)) {
    out->append(std::get<std::string>(response->second));
  } else {
    out->append("null");
  }
  if (result.ok) {
    out->append(",\"error\":null}\n");
    return;
  }
  // The code names the HTTP status only when the status was the failure: a
  // 2xx answer that still failed (a body over the size limit, a header line
  // too long) failed for the reason its message gives.
  auto status = result.extra.find("status");
  bool status_failed =
      status != result.extra.end() && std::holds_alternative<int64_t>(status->second) &&
      (std::get<int64_t>(status->second) < 200 || std::get<int64_t>(status->second) > 299);
  out->append(",\"error\":{\"code\":\"");
  if (status_failed) {
    out->append("http_");
    out->append(std::to_string(std::get<int64_t>(status->second)));
  } else {
    out->append("request_failed");
  }
  out->append("\",\"message\":");
  AppendJsonString(result.value, out);
  out->append("}}\n");
}

}  // namespace

void RecordWriter::FormatRecord(OutputFormat format, uint64_t index, const Result& result,
                                std::string* out, std::optional<uint64_t> fingerprint) {
  if (format == OutputFormat::kOpenAiBatch) {
    AppendBatchRecord(index, result, out, fingerprint);
    return;
  }
  if (format == OutputFormat::kRaw) {
    if (result.ok) out->append(result.value);
    out->push_back('\n');
    return;
  }
  if (format == OutputFormat::kStdout) {
    if (result.ok) {
      out->append(result.value);
    } else if (auto it = result.extra.find("stdout"); it != result.extra.end()) {
      if (const std::string* text = std::get_if<std::string>(&it->second)) out->append(*text);
    }
    return;
  }
  out->append("{\"index\":");
  AppendUint(index, out);
  if (result.ok) {
    out->append(",\"ok\":true,\"result\":");
    if (result.value_is_json) {
      out->append(result.value);
    } else {
      AppendJsonString(result.value, out);
    }
  } else {
    out->append(",\"ok\":false,\"error\":");
    AppendJsonString(result.value, out);
  }
  if (fingerprint.has_value()) {
    out->append(",\"fp\":\"");
    AppendFingerprintHex(*fingerprint, out);
    out->push_back('"');
  }
  for (const auto& [key, value] : result.extra) {
    // A worker's own "fp" would shadow the fingerprint --resume checks.
    if (fingerprint.has_value() && key == "fp") continue;
    out->push_back(',');
    bool is_json = false;
    AppendJsonString(RecordFieldName(key, &is_json), out);
    out->push_back(':');
    if (is_json && std::holds_alternative<std::string>(value)) {
      // Checked by the coordinator (SanitizeJsonFields) before it gets here.
      out->append(std::get<std::string>(value));
    } else if (const int64_t* number = std::get_if<int64_t>(&value)) {
      if (*number < 0) {
        out->push_back('-');
        AppendUint(static_cast<uint64_t>(-(*number + 1)) + 1, out);
      } else {
        AppendUint(static_cast<uint64_t>(*number), out);
      }
    } else {
      AppendJsonString(std::get<std::string>(value), out);
    }
  }
  out->append("}\n");
}

void RecordWriter::Write(uint64_t index, const Result& result,
                         std::optional<uint64_t> fingerprint) {
  if (!error_.ok()) return;
  FormatRecord(format_, index, result, &buffer_, fingerprint);
  if (format_ == OutputFormat::kStdout) {
    std::string err = StderrOf(index, result);
    if (!err.empty()) {
      // What the command wrote to stdout before comes first on a terminal:
      // the text waits for it.
      stderr_due_.emplace_back(flushed_ + buffered(), std::move(err));
      FlushSome();
      return;
    }
  }
  if (buffered() >= kFlushBytes) FlushSome();
}

void RecordWriter::WriteDueStderr() {
  while (!stderr_due_.empty() && stderr_due_.front().first <= flushed_) {
    const std::string& err = stderr_due_.front().second;
    for (size_t done = 0; done < err.size();) {
      ssize_t n = write(2, err.data() + done, err.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // stderr is gone: nothing to tell
      done += static_cast<size_t>(n);
    }
    stderr_due_.pop_front();
  }
}

std::string RecordWriter::StderrOf(uint64_t index, const Result& result) {
  std::string err;
  if (auto it = result.extra.find("stderr"); it != result.extra.end()) {
    if (const std::string* text = std::get_if<std::string>(&it->second)) err = *text;
  }
  // A command that ran and failed has said why; anything else (it could not
  // start, it timed out) is told here.
  if (!result.ok && result.extra.count("exit_code") == 0 && result.extra.count("signal") == 0) {
    err += "fanmap: item " + std::to_string(index) + ": " + result.value + "\n";
  }
  return err;
}

Status RecordWriter::Flush() { return WriteOut(true); }

size_t RecordWriter::Abandon() {
  size_t records = static_cast<size_t>(std::count(buffer_.begin() + sent_, buffer_.end(), '\n'));
  if (!at_line_start_ && sent_ < buffer_.size()) ++records;  // its head was written
  buffer_.clear();
  sent_ = 0;
  return records;
}

Status RecordWriter::FlushSome() { return WriteOut(sink_ == Sink::kFile); }

Status RecordWriter::WriteOut(bool block) {
  if (!error_.ok()) return error_;
  int out = sink_ == Sink::kNonBlocking ? nonblocking_fd_ : fd_;
  WriteDueStderr();
  if (truncate_at_ >= 0 && sent_ < buffer_.size()) {
    if (ftruncate(fd_, static_cast<off_t>(truncate_at_)) != 0) {
      error_ = Status::Error(std::string("cannot resume output: ") + strerror(errno));
      buffer_.clear();
      sent_ = 0;
      return error_;
    }
    truncate_at_ = -1;
  }
  while (sent_ < buffer_.size()) {
    const char* data = buffer_.data() + sent_;
    size_t size = buffer_.size() - sent_;
    ssize_t n = sink_ == Sink::kSocket ? send(out, data, size, MSG_DONTWAIT | MSG_NOSIGNAL)
                                       : write(out, data, size);
    if (n >= 0) {
      sent_ += static_cast<size_t>(n);
      if (n > 0) at_line_start_ = buffer_[sent_ - 1] == '\n';
      flushed_ += static_cast<uint64_t>(n);
      WriteDueStderr();
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      error_ = Status::Error(std::string("cannot write output: ") + strerror(errno));
      break;
    }
    if (!block) break;
    // An error or hang-up shows in the next write.
    pollfd ready = {out, POLLOUT, 0};
    poll(&ready, 1, -1);
  }
  if (!error_.ok() || sent_ == buffer_.size()) {
    buffer_.clear();
    sent_ = 0;
  } else if (sent_ >= kFlushBytes) {
    buffer_.erase(0, sent_);
    sent_ = 0;
  }
  if (!error_.ok()) {
    // The records are lost with their reader; what the commands said on
    // stderr is not.
    flushed_ = UINT64_MAX;
    WriteDueStderr();
  }
  return error_;
}

}  // namespace fanmap
