#include "coordinator/resume_log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string_view>

#include "common/protocol.h"
#include "coordinator/item_fingerprint.h"

namespace fanmap {
namespace {

constexpr char kLeftAsItIs[] = "; --resume leaves the file as it is";
// How every record RecordWriter writes begins.
constexpr std::string_view kRecordStart = "{\"index\":";
// Longer than any record fanmap writes (a result's text is at most
// kMaxResultFieldsBytes, six bytes each once escaped, and a few fields
// besides), and within an Entry's 32-bit length: a longer line is not a
// record, and is not read into memory whole.
constexpr uint64_t kMaxRecordLineBytes = 3ull << 30;
static_assert(kMaxRecordLineBytes > 6ull * kMaxResultFieldsBytes + (64u << 10), "");
static_assert(kMaxRecordLineBytes <= UINT32_MAX, "Entry::length");

enum class LineKind { kRecord, kWithoutFingerprint, kNotRecord };

struct Record {
  uint64_t index = 0;
  bool ok = false;
  uint64_t fingerprint = 0;
};

LineKind ParseRecord(const char* begin, const char* end, Record* out) {
  // nlohmann's parser stops at a NUL and accepts what came before it.
  if (std::memchr(begin, '\0', static_cast<size_t>(end - begin)) != nullptr) {
    return LineKind::kNotRecord;
  }
  nlohmann::json record = nlohmann::json::parse(begin, end, nullptr, /*allow_exceptions=*/false);
  if (!record.is_object()) return LineKind::kNotRecord;
  auto i = record.find("index");
  auto k = record.find("ok");
  if (i == record.end() || !i->is_number_unsigned() || k == record.end() || !k->is_boolean()) {
    return LineKind::kNotRecord;
  }
  out->index = i->get<uint64_t>();
  out->ok = k->get<bool>();
  auto f = record.find("fp");
  if (f == record.end() || !f->is_string() ||
      !ParseFingerprintHex(f->get_ref<const std::string&>(), &out->fingerprint)) {
    return LineKind::kWithoutFingerprint;
  }
  return LineKind::kRecord;
}

// True if the bytes after the last "\n" may be the start of a record that a
// killed run was writing: they begin like one (or are a whole record).
bool IsTornRecord(const std::string& tail) {
  size_t n = std::min(tail.size(), kRecordStart.size());
  if (std::string_view(tail).substr(0, n) == kRecordStart.substr(0, n)) return true;
  Record record;
  return ParseRecord(tail.data(), tail.data() + tail.size(), &record) == LineKind::kRecord;
}

std::string LineError(const std::string& path, uint64_t line, const std::string& what) {
  return path + " line " + std::to_string(line) + ": " + what + kLeftAsItIs;
}

}  // namespace

ResumeLog::~ResumeLog() {
  if (fd_ >= 0) close(fd_);
}

Status ResumeLog::Load(const std::string& path, bool keep_failed, bool ordered, ResumeLog* out) {
  out->path_ = path;
  out->keep_failed_ = keep_failed;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::Error("cannot read '" + path + "' to resume: " + strerror(errno));
  }
  out->fd_ = fd;
  std::string buffer;
  uint64_t buffer_offset = 0;  // file offset of buffer[0]
  uint64_t line_number = 0;
  char chunk[1 << 16];
  bool records_in_order = true;
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Error("cannot read '" + path + "' to resume: " + strerror(errno));
    }
    if (n == 0) break;
    size_t scanned = buffer.size();  // the bytes before hold no '\n'
    buffer.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buffer.find('\n', std::max(start, scanned))) != std::string::npos;
         start = nl + 1) {
      ++line_number;
      Record record;
      switch (ParseRecord(buffer.data() + start, buffer.data() + nl, &record)) {
        case LineKind::kRecord:
          break;
        case LineKind::kWithoutFingerprint:
          return Status::Error(LineError(
              path, line_number,
              "a record without a fingerprint (\"fp\"): written by an older fanmap, or not by "
              "fanmap"));
        case LineKind::kNotRecord:
          return Status::Error(LineError(path, line_number, "not a fanmap record"));
      }
      if (!out->records_.empty() && record.index <= out->records_.back().index) {
        records_in_order = false;
      }
      out->records_.push_back(Entry{record.index, buffer_offset + start, record.fingerprint,
                                    static_cast<uint32_t>(nl + 1 - start), record.ok});
      if (out->IsKept(out->records_.back())) {
        ++out->kept_;
      } else {
        ++out->dropped_;
      }
    }
    buffer.erase(0, start);
    buffer_offset += start;
    // A line that does not begin like a record is none, however long.
    if (buffer.compare(0, std::min(buffer.size(), kRecordStart.size()), kRecordStart, 0,
                       std::min(buffer.size(), kRecordStart.size())) != 0) {
      return Status::Error(LineError(path, line_number + 1, "not a fanmap record"));
    }
    if (buffer.size() > kMaxRecordLineBytes) {
      return Status::Error(LineError(path, line_number + 1,
                                     "longer than any fanmap record (over " +
                                         std::to_string(kMaxRecordLineBytes >> 30) +
                                         " GiB without a newline)"));
    }
  }
  if (!buffer.empty() && !IsTornRecord(buffer)) {
    return Status::Error(
        LineError(path, line_number + 1, "not a fanmap record (and no newline at its end)"));
  }
  out->valid_bytes_ = buffer_offset;
  out->torn_bytes_ = buffer.size();
  std::stable_sort(out->records_.begin(), out->records_.end());
  auto twice =
      std::adjacent_find(out->records_.begin(), out->records_.end(),
                         [](const Entry& a, const Entry& b) { return a.index == b.index; });
  if (twice != out->records_.end()) {
    // Stable sort: the first of the two is the earlier line.
    return Status::Error(LineError(path, out->LineNumberAt(twice[1].offset),
                                   "a second record of item " + std::to_string(twice->index) +
                                       " (the first is on line " +
                                       std::to_string(out->LineNumberAt(twice->offset)) + ")"));
  }
  bool prefix = out->records_.empty() || out->records_.back().index + 1 == out->records_.size();
  // In unordered mode too, only a prefix is appended to: a record for a gap
  // would be written before the items after it were checked, and a refusal
  // then would leave the file changed.
  out->append_ = out->dropped_ == 0 && prefix && (!ordered || records_in_order);
  return Status::Ok();
}

uint64_t ResumeLog::LineNumberAt(uint64_t offset) const {
  uint64_t line = 1;
  char chunk[1 << 16];
  for (uint64_t at = 0; at < offset;) {
    ssize_t n =
        pread(fd_, chunk, std::min<uint64_t>(sizeof chunk, offset - at), static_cast<off_t>(at));
    if (n <= 0) break;
    line += static_cast<uint64_t>(std::count(chunk, chunk + n, '\n'));
    at += static_cast<uint64_t>(n);
  }
  return line;
}

const ResumeLog::Entry* ResumeLog::Find(uint64_t index) const {
  auto it = std::lower_bound(records_.begin(), records_.end(), Entry{index, 0, 0, 0, false});
  if (it == records_.end() || it->index != index) return nullptr;
  return &*it;
}

Status ResumeLog::CheckItem(uint64_t index, uint64_t fingerprint) {
  if (cursor_ > 0 && records_[cursor_ - 1].index >= index) {
    // Out of order: start over from the record's place.
    cursor_ = static_cast<size_t>(
        std::lower_bound(records_.begin(), records_.end(), Entry{index, 0, 0, 0, false}) -
        records_.begin());
  }
  while (cursor_ < records_.size() && records_[cursor_].index < index) ++cursor_;
  if (cursor_ == records_.size() || records_[cursor_].index != index) return Status::Ok();
  const Entry& record = records_[cursor_++];
  if (record.fingerprint == fingerprint) {
    ++matched_;
    return Status::Ok();
  }
  std::string item =
      "item " + std::to_string(index) + " (input line " + std::to_string(index + 1) + ")";
  if (matched_ == 0) {
    // Nothing matched so far: most likely every record is another job's.
    return Status::Error(path_ +
                         ": the job changed (payload, command or URL), or the items did: the "
                         "record of " +
                         item + " was made from something else" + kLeftAsItIs);
  }
  return Status::Error(path_ + ": " + item + " differs from the one its record was made from" +
                       kLeftAsItIs);
}

Status ResumeLog::CheckTotal(uint64_t items) const {
  if (records_.empty() || records_.back().index < items) return Status::Ok();
  return Status::Error(path_ + " holds a record of index " + std::to_string(records_.back().index) +
                       ", the input has only " + std::to_string(items) + " items" + kLeftAsItIs);
}

bool ResumeLog::Has(uint64_t index, bool* ok) const {
  const Entry* entry = Find(index);
  if (entry == nullptr || !IsKept(*entry)) return false;
  *ok = entry->ok;
  return true;
}

Status ResumeLog::Line(uint64_t index, std::string* line) const {
  const Entry* entry = Find(index);
  if (entry == nullptr || !IsKept(*entry)) return Status::Error("no record to resume");
  return OldLine(index, line);
}

Status ResumeLog::OldLine(uint64_t index, std::string* line) const {
  const Entry* entry = Find(index);
  if (entry == nullptr) return Status::Error("no record");
  line->resize(entry->length);
  ssize_t n = pread(fd_, &(*line)[0], entry->length, static_cast<off_t>(entry->offset));
  if (n != static_cast<ssize_t>(entry->length)) {
    return Status::Error(std::string("cannot re-read a record to resume: ") + strerror(errno));
  }
  return Status::Ok();
}

bool ResumeLog::HasRecordFrom(uint64_t from) const {
  return !records_.empty() && records_.back().index >= from;
}

}  // namespace fanmap
