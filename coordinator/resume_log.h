// ResumeLog: what an earlier, interrupted run already wrote to the output
// file, so that `--resume` runs only the rest.
//
// Each complete line of the file must be a record ({"index":N,"ok":B,...});
// a torn last line (no final newline, or not a record) is cut off. A line
// that is not a record ends what is trusted: the records after it are run
// again rather than believed. Records
// kept are the ok ones, and with `--resume-failed` not the failed ones.
//
// Two ways to finish the file:
//  - append: the kept records are exactly what a continued run would have
//    written before its next record (a prefix 0..K-1 in ordered mode, any set
//    in unordered mode), so new records are appended after them;
//  - rewrite: otherwise (failed records to drop, or a file that is not a
//    prefix); the records are written to a new file, kept ones copied from
//    the old one by offset, and the new file replaces the old only when the
//    run completes, so an interrupted rewrite leaves the old file intact.
#ifndef FANMAP_COORDINATOR_RESUME_LOG_H_
#define FANMAP_COORDINATOR_RESUME_LOG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace fanmap {

class ResumeLog {
 public:
  ResumeLog() = default;
  ~ResumeLog();
  ResumeLog(const ResumeLog&) = delete;
  ResumeLog& operator=(const ResumeLog&) = delete;

  // Reads `path`. A missing or empty file gives an empty log (nothing kept).
  static Status Load(const std::string& path, bool keep_failed, bool ordered, ResumeLog* out);

  // True if the old file holds the record of `index`; *ok tells whether it
  // succeeded.
  bool Has(uint64_t index, bool* ok) const;
  // The record line of `index` (with its "\n"), read from the old file.
  Status Line(uint64_t index, std::string* line) const;

  bool append() const { return append_; }
  // Bytes of the file that hold whole kept lines (append: truncate here).
  uint64_t valid_bytes() const { return valid_bytes_; }
  size_t kept() const { return kept_.size(); }
  uint64_t torn_bytes() const { return torn_bytes_; }
  size_t dropped() const { return dropped_; }

 private:
  struct Entry {
    uint64_t index;
    uint64_t offset;
    uint32_t length;
    bool ok;
    bool operator<(const Entry& other) const { return index < other.index; }
  };
  int fd_ = -1;
  bool append_ = true;
  uint64_t valid_bytes_ = 0;
  uint64_t torn_bytes_ = 0;
  size_t dropped_ = 0;       // failed records not kept
  std::vector<Entry> kept_;  // sorted by index
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_RESUME_LOG_H_
