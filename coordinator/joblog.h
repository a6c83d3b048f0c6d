// Joblog: GNU parallel's --joblog file, one TSV line per command.
//
// Header "Seq Host Starttime JobRuntime Send Receive Exitval Signal Command"
// (tab-separated), then per command, in input order: Seq = job number ({#}),
// Host ":" (this machine, as parallel writes it), Starttime in epoch seconds
// with 3 decimals, JobRuntime in seconds ("%10.3f"), Send 0, Receive the
// bytes of stdout, Exitval the exit code (-1 if the command could not be
// started or was stopped by fanmap), Signal the signal that ended it or 0,
// Command the command line as parallel prints it (a newline or a tab in it
// written as \n or \t, so that every command stays one row). It reads the "start_us",
// "command", "exit_code", "signal" and "stdout" fields the exec payload adds
// with the "joblog" job option.
#ifndef FANMAP_COORDINATOR_JOBLOG_H_
#define FANMAP_COORDINATOR_JOBLOG_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/protocol.h"
#include "common/status.h"

namespace fanmap {

class Joblog {
 public:
  ~Joblog();
  Joblog(const Joblog&) = delete;
  Joblog& operator=(const Joblog&) = delete;

  // Creates `path` with the header, or (`append`, for --resume) appends to it
  // and writes the header only if the file is empty.
  static Status Open(const std::string& path, bool append, std::unique_ptr<Joblog>* out);

  // Buffers the line of item `index`; written by Flush() or when large.
  void Write(uint64_t index, const Result& result);
  Status Flush();

  static std::string FormatLine(uint64_t index, const Result& result);
  static const char kHeader[];

 private:
  Joblog(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  std::string buffer_;
  Status error_;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_JOBLOG_H_
