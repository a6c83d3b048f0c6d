// ResumeLog: what an earlier, interrupted run already wrote to the output
// file, so that `--resume` runs only the rest, and only if the file was made
// by the same job from the same items.
//
// Load is strict, because the file may be anything the user named with -o:
// each complete line must be a record {"index":N,"ok":B,"fp":"<16 hex>",...}
// with an index seen once. Only a torn last line (the bytes after the last
// "\n") may be cut off, and only if it begins like a record ({"index":) or
// is a whole record: anything else — a line that is not a record, a record
// without "fp" (an older fanmap's file), an index written twice — makes
// Load fail with the file's name and line number, and the file must then be
// left as it is. Load itself never modifies the file.
//
// Every record's "fp" is the fingerprint of (job, item) it was made from
// (coordinator/item_fingerprint.h). While the input is read, CheckItem()
// compares each item's fingerprint with its record's; at the end of input
// CheckTotal() refuses a file with records of items the input does not have.
//
// Records kept are the ok ones, and with `--resume-failed` not the failed
// ones. Two ways to finish the file:
//  - append: the kept records are the items 0..K-1 (in ordered mode also in
//    that order in the file) and none was dropped, so new records (K and
//    later, read after every kept record's item was checked) are appended;
//  - rewrite: otherwise; the records are written to a new file, kept ones
//    copied from the old one by offset, and the new file replaces the old
//    when the run ends: complete, or interrupted once every record of the old
//    file was checked against its item (then with every record finished so
//    far, and the old failed ones not run again yet, in any order: the next
//    --resume rewrites again). A refused rewrite, one that failed, or one
//    interrupted before the input reached the old file's last record, leaves
//    the old file as it is.
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

  // Reads `path` into *out (a fresh ResumeLog). A missing or empty file
  // gives an empty log (nothing kept). On error, *out must not be used and
  // the message names the file and, for a bad line, its number.
  static Status Load(const std::string& path, bool keep_failed, bool ordered, ResumeLog* out);

  // Compares the fingerprint of item `index` (ItemFingerprinter) with the
  // one its record was made from; ok if they match or there is no record of
  // `index` (kept or dropped). Call it for each item as it is read, before it
  // is scheduled, in index order (any order works, in order is O(1)).
  Status CheckItem(uint64_t index, uint64_t fingerprint);
  // Call at the end of input with the number of items read: refuses a file
  // holding a record of an index >= `items`.
  Status CheckTotal(uint64_t items) const;

  // True if the old file holds the kept record of `index`; *ok tells whether
  // it succeeded.
  bool Has(uint64_t index, bool* ok) const;
  // The kept record line of `index` (with its "\n"), read from the old file.
  Status Line(uint64_t index, std::string* line) const;
  // The record line of `index`, kept or not (a failed one --resume-failed
  // runs again), read from the old file.
  Status OldLine(uint64_t index, std::string* line) const;
  // True if the old file holds a record (kept or not) of an index >= `from`.
  bool HasRecordFrom(uint64_t from) const;

  bool append() const { return append_; }
  // Bytes of the file that hold whole lines (append: truncate here).
  uint64_t valid_bytes() const { return valid_bytes_; }
  size_t kept() const { return kept_; }
  uint64_t torn_bytes() const { return torn_bytes_; }
  size_t dropped() const { return dropped_; }

 private:
  struct Entry {
    uint64_t index;
    uint64_t offset;
    uint64_t fingerprint;
    uint32_t length;
    bool ok;
    bool operator<(const Entry& other) const { return index < other.index; }
  };
  bool IsKept(const Entry& entry) const { return entry.ok || keep_failed_; }
  const Entry* Find(uint64_t index) const;
  // The 1-based number of the line starting at `offset` (error path only).
  uint64_t LineNumberAt(uint64_t offset) const;

  int fd_ = -1;
  std::string path_;
  bool keep_failed_ = true;
  bool append_ = true;
  uint64_t valid_bytes_ = 0;
  uint64_t torn_bytes_ = 0;
  size_t kept_ = 0;
  size_t dropped_ = 0;          // failed records not kept
  std::vector<Entry> records_;  // every record, kept or dropped, sorted by index
  size_t cursor_ = 0;           // CheckItem: records_[cursor_ - 1].index was checked last
  uint64_t matched_ = 0;        // CheckItem: records whose fingerprint matched
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_RESUME_LOG_H_
