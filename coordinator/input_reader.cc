#include "coordinator/input_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/protocol.h"
#include "coordinator/arg_assembler.h"

namespace fanmap {
namespace {

constexpr size_t kReadChunk = 256 * 1024;

}  // namespace

InputReader::InputReader(int fd, bool owned) : fd_(fd), owned_(owned) {
  struct stat st;
  regular_ = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

InputReader::~InputReader() {
  if (owned_ && fd_ >= 0) close(fd_);
}

Status InputReader::Open(const std::string& path, std::unique_ptr<InputReader>* out) {
  if (path.empty() || path == "-") {
    *out = std::make_unique<InputReader>(0, false);
    return Status::Ok();
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Error("cannot open input '" + path + "': " + strerror(errno));
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    return Status::Error("cannot read input '" + path + "': " + strerror(EISDIR));
  }
  *out = std::make_unique<InputReader>(fd, true);
  (*out)->path_ = path;
  return Status::Ok();
}

void InputReader::set_assembler(std::unique_ptr<ArgAssembler> assembler) {
  assembler_ = std::move(assembler);
}

Status InputReader::item_error() const {
  if (!cut_error_.ok()) return cut_error_;
  return assembler_ != nullptr ? assembler_->error() : Status::Ok();
}

bool InputReader::done() const {
  return eof_ && start_ == buffer_.size() && (assembler_ == nullptr || assembler_->drained());
}

bool InputReader::NextLine(std::string* line) {
  if (assembler_ == nullptr) return NextRecord(line);
  std::string record;
  while (!assembler_->Next(line)) {
    if (!cut_error_.ok()) return false;
    if (NextRecord(&record)) {
      if (record_cut_) {
        // Split into arguments, its cut part would be lost without a trace.
        cut_error_ = Status::Error("line " + std::to_string(line_number_) + ": " +
                                   std::to_string(record_bytes_) + " bytes, more than the " +
                                   std::to_string(kMaxItemBytes >> 20) + " MiB an item may hold");
        return false;
      }
      assembler_->Add(std::move(record));
    } else if (eof_ && start_ == buffer_.size() && !assembler_->finished()) {
      assembler_->Finish();
    } else {
      return false;
    }
  }
  return true;
}

bool InputReader::NextRecord(std::string* line) {
  const char* base = buffer_.data();
  const void* nl = scanned_ < buffer_.size()
                       ? std::memchr(base + scanned_, delimiter_, buffer_.size() - scanned_)
                       : nullptr;
  size_t end;
  size_t next;
  if (nl != nullptr) {
    end = static_cast<const char*>(nl) - base;
    next = end + 1;
  } else if (eof_ && start_ < buffer_.size()) {
    end = next = buffer_.size();
  } else {
    scanned_ = buffer_.size();
    if (scanned_ - start_ > kMaxItemBytes + 1) {
      cut_bytes_ += scanned_ - start_ - (kMaxItemBytes + 1);
      buffer_.resize(start_ + kMaxItemBytes + 1);
      scanned_ = buffer_.size();
    }
    return false;
  }
  size_t stop = end;
  record_cut_ = cut_bytes_ > 0;
  // (A cut line keeps its last byte: it must stay too long to be an item.)
  if (!record_cut_ && delimiter_ == '\n' && stop > start_ && base[stop - 1] == '\r') --stop;
  record_bytes_ = stop - start_ + cut_bytes_;
  cut_bytes_ = 0;
  line->assign(base + start_, stop - start_);
  start_ = scanned_ = next;
  ++line_number_;
  return true;
}

Status InputReader::Fill() {
  if (eof_) return Status::Ok();
  // Drop consumed bytes once they are most of the buffer, so that it does not
  // grow with the input.
  if (start_ > 0 && start_ >= buffer_.size() / 2) {
    buffer_.erase(0, start_);
    scanned_ -= start_;
    start_ = 0;
  }
  size_t old_size = buffer_.size();
  buffer_.resize(old_size + kReadChunk);
  ssize_t n;
  do {
    n = read(fd_, &buffer_[old_size], kReadChunk);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    buffer_.resize(old_size);
    if (err == EAGAIN || err == EWOULDBLOCK) return Status::Ok();
    return Status::Error("cannot read input" +
                         (path_.empty() ? std::string() : " '" + path_ + "'") + ": " +
                         strerror(err));
  }
  buffer_.resize(old_size + static_cast<size_t>(n));
  if (n == 0) eof_ = true;
  return Status::Ok();
}

bool CountLines(const std::string& path, uint64_t* lines, char delimiter) {
  if (path.empty() || path == "-") return false;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return false;
  }
  std::string buf(1 << 20, '\0');
  uint64_t count = 0;
  char last = delimiter;
  ssize_t n;
  while ((n = read(fd, &buf[0], buf.size())) > 0) {
    const char* p = buf.data();
    const char* end = p + n;
    while ((p = static_cast<const char*>(std::memchr(p, delimiter, end - p))) != nullptr) {
      ++count;
      ++p;
    }
    last = buf[n - 1];
  }
  close(fd);
  if (last != delimiter) ++count;
  *lines = count;
  return true;
}

}  // namespace fanmap
