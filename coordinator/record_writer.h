// RecordWriter: turns results into output records and writes them to a file
// descriptor through its own buffer (one write(2) per ~1 MiB).
//
// A regular file (or block device) is written with plain write(2). A pipe, a
// terminal or a socket may block a write for as long as its reader pleases
// (`| less` left on its first page), and the coordinator must go on
// answering its workers meanwhile: those are written without blocking (a
// pipe or terminal through a descriptor of its own opened O_NONBLOCK from
// /proc/self/fd, which leaves the shared one as it is; a socket with
// MSG_DONTWAIT). Buffered records then wait for the caller to see fd()
// writable (waiting()) and call FlushSome(); full() says when to stop
// producing records.
//
// jsonl: {"index":N,"ok":true,"result":...} or
//        {"index":N,"ok":false,"error":"..."}, then, when the caller gives the
//        item's fingerprint (records written to a file, for --resume),
//        "fp":"<16 lowercase hex>" (coordinator/item_fingerprint.h), then the
//        result's extra fields (exit_code, stderr, ...) in key order (a
//        key ending in ":json" is written without it, its value as JSON:
//        common/record_fields.h). The
//        caller keeps extra fields named "index", "ok", "result" or "error"
//        out of `result`; an extra "fp" is dropped when "fp" is written.
// raw:   the result text and "\n"; a failed item writes an empty line, so
//        that line N of the output still belongs to item N.
// stdout: the result text as it is (a command's stdout, byte for byte, as
//        `parallel -k` writes it: nothing for a command that printed
//        nothing), a failed command's "stdout"; its "stderr" goes to
//        descriptor 2 at once, grouped, and a failure that is not the
//        command's exit ("cannot run ...", a timeout) is told there too.
// openai-batch: a line of the OpenAI Batch API's output file, led by the
//        fields --resume reads:
//        {"index":N,"ok":B,"fp":"...","id":"batch_req_N","custom_id":C,
//         "response":{"status_code":S,"request_id":R,"body":...},"error":null}
//        custom_id is the extra "custom_id" (null if none); response is the
//        value of an ok result that is JSON, else the extra "response:json"
//        (null if none); error is null for an ok result, else
//        {"code":"http_<status>" when the status (outside 2xx) was the
//         failure, else "request_failed",
//         "message":<the error text>}. Other extra fields are left out.
#ifndef FANMAP_COORDINATOR_RECORD_WRITER_H_
#define FANMAP_COORDINATOR_RECORD_WRITER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/protocol.h"
#include "common/status.h"

namespace fanmap {

enum class OutputFormat { kJsonl, kRaw, kStdout, kOpenAiBatch };

class RecordWriter {
 public:
  // Takes ownership of `fd` if `owned`.
  RecordWriter(int fd, bool owned, OutputFormat format);
  ~RecordWriter();
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  // Opens `path` for writing, truncating it ("" or "-" means stdout).
  static Status Open(const std::string& path, OutputFormat format,
                     std::unique_ptr<RecordWriter>* out);

  // Opens `path` for appending after its first `keep_bytes` bytes (the rest,
  // e.g. a torn last line, is cut off when the first record is written).
  // Used by --resume.
  static Status OpenAppend(const std::string& path, uint64_t keep_bytes, OutputFormat format,
                           std::unique_ptr<RecordWriter>* out);

  // Buffers the record of item `index`; writes when the buffer is full.
  // `fingerprint`: the item's fingerprint, written as "fp" in jsonl (none:
  // no "fp", e.g. on stdout); raw output ignores it.
  void Write(uint64_t index, const Result& result,
             std::optional<uint64_t> fingerprint = std::nullopt);
  // Buffers an already formatted record (a line with its "\n").
  void WriteVerbatim(const std::string& line);
  // Writes everything buffered, waiting for a reader that is slow. After a
  // write error (e.g. EPIPE) every call returns that error and further
  // records are discarded.
  Status Flush();
  // Writes what can be written without blocking (all of it to a regular
  // file); returns the write error, if any, as Flush() does.
  Status FlushSome();
  size_t buffered() const { return buffer_.size() - sent_; }
  // Records are buffered for a reader that is not reading: poll fd() for
  // POLLOUT, then FlushSome().
  bool waiting() const { return sink_ != Sink::kFile && buffered() > 0; }
  // As many records are buffered as should be: make no more until some are
  // written.
  bool full() const;
  // False while the last write ended inside a record (a reader that took
  // part of it): a progress line drawn on the same terminal now would land
  // in the middle of it.
  bool at_line_start() const { return at_line_start_; }
  // Drops what is buffered and not written (the run is told to stop now,
  // and the reader takes nothing); returns how many records that held, a
  // record cut short counted too.
  size_t Abandon();
  // The descriptor records go to (e.g. to tell whether it is the terminal
  // the progress line is drawn on).
  int fd() const { return fd_; }
  // The first write error, if any (e.g. EPIPE when the reader went away).
  const Status& error() const { return error_; }

  // Appends the record of `result` to *out (exposed for tests).
  static void FormatRecord(OutputFormat format, uint64_t index, const Result& result,
                           std::string* out, std::optional<uint64_t> fingerprint = std::nullopt);
  // What the stdout format writes to stderr for `result` (exposed for tests).
  static std::string StderrOf(uint64_t index, const Result& result);

 private:
  enum class Sink : uint8_t { kFile, kNonBlocking, kSocket };

  // Writes buffer_ from sent_ on, until done or (`block` false) the reader
  // is full.
  Status WriteOut(bool block);
  // The stderr text of records already written goes out.
  void WriteDueStderr();

  int fd_;
  bool owned_;
  int nonblocking_fd_ = -1;  // Sink::kNonBlocking: our own descriptor of fd_'s file
  Sink sink_ = Sink::kFile;
  OutputFormat format_;
  std::string buffer_;
  int64_t truncate_at_ = -1;   // OpenAppend: cut the file here before the first write
  size_t sent_ = 0;            // bytes of buffer_ already written
  bool at_line_start_ = true;  // the last byte written ended a line
  uint64_t flushed_ = 0;       // bytes written in all
  // The stdout format's stderr text, due once the output before it is out.
  std::deque<std::pair<uint64_t, std::string>> stderr_due_;
  Status error_;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_RECORD_WRITER_H_
