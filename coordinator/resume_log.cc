#include "coordinator/resume_log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace fanmap {
namespace {

// Parses one record line; false if it is not a record.
bool ParseRecord(const char* begin, const char* end, uint64_t* index, bool* ok) {
  nlohmann::json record = nlohmann::json::parse(begin, end, nullptr, /*allow_exceptions=*/false);
  if (!record.is_object()) return false;
  auto i = record.find("index");
  auto k = record.find("ok");
  if (i == record.end() || !i->is_number_unsigned() || k == record.end() || !k->is_boolean()) {
    return false;
  }
  *index = i->get<uint64_t>();
  *ok = k->get<bool>();
  return true;
}

}  // namespace

ResumeLog::~ResumeLog() {
  if (fd_ >= 0) close(fd_);
}

Status ResumeLog::Load(const std::string& path, bool keep_failed, bool ordered, ResumeLog* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::Error("cannot read '" + path + "' to resume: " + strerror(errno));
  }
  out->fd_ = fd;
  std::string buffer;
  uint64_t buffer_offset = 0;  // file offset of buffer[0]
  char chunk[1 << 16];
  bool records_in_order = true;
  uint64_t last_line_end = 0;
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Error("cannot read '" + path + "' to resume: " + strerror(errno));
    }
    if (n == 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
      uint64_t index;
      bool ok;
      uint64_t offset = buffer_offset + start;
      if (!ParseRecord(buffer.data() + start, buffer.data() + nl, &index, &ok)) {
        // Only the last line may be torn: anything after it is ignored.
        out->torn_bytes_ = 1;
        continue;
      }
      if (out->torn_bytes_ != 0) continue;
      last_line_end = buffer_offset + nl + 1;
      if (ok || keep_failed) {
        if (!out->kept_.empty() && index <= out->kept_.back().index) records_in_order = false;
        out->kept_.push_back(Entry{index, offset, static_cast<uint32_t>(nl + 1 - start), ok});
        out->valid_bytes_ = last_line_end;
      } else {
        ++out->dropped_;
      }
    }
    buffer.erase(0, start);
    buffer_offset += start;
  }
  off_t size = lseek(fd, 0, SEEK_END);
  out->torn_bytes_ = static_cast<uint64_t>(size) - last_line_end;
  std::stable_sort(out->kept_.begin(), out->kept_.end());
  // Keep the first record of an index written twice.
  out->kept_.erase(std::unique(out->kept_.begin(), out->kept_.end(),
                               [](const Entry& a, const Entry& b) { return a.index == b.index; }),
                   out->kept_.end());
  bool prefix =
      records_in_order && (out->kept_.empty() || out->kept_.back().index + 1 == out->kept_.size());
  out->append_ = out->dropped_ == 0 && (!ordered || prefix);
  return Status::Ok();
}

bool ResumeLog::Has(uint64_t index, bool* ok) const {
  auto it = std::lower_bound(kept_.begin(), kept_.end(), Entry{index, 0, 0, false});
  if (it == kept_.end() || it->index != index) return false;
  *ok = it->ok;
  return true;
}

Status ResumeLog::Line(uint64_t index, std::string* line) const {
  auto it = std::lower_bound(kept_.begin(), kept_.end(), Entry{index, 0, 0, false});
  if (it == kept_.end() || it->index != index) return Status::Error("no record to resume");
  line->resize(it->length);
  ssize_t n = pread(fd_, &(*line)[0], it->length, static_cast<off_t>(it->offset));
  if (n != static_cast<ssize_t>(it->length)) {
    return Status::Error(std::string("cannot re-read a record to resume: ") + strerror(errno));
  }
  return Status::Ok();
}

}  // namespace fanmap
