// InputReader: splits a file descriptor's bytes into items, one per line
// (or per another delimiter: -0, -d), optionally passed through an
// ArgAssembler that builds GNU parallel's argument tables from them.
//
// Reading is split from splitting so that the coordinator's poll loop decides
// when to read: NextLine() only looks at what is buffered; Fill() does one
// read(2), which does not block when poll(2) reported the descriptor readable
// (regular files always are). Memory is bounded by the longest line plus one
// read's worth of bytes, and a line is kept to kMaxItemBytes + 1 bytes: one
// longer cannot be an item (record_bytes() says how long it was).
#ifndef FANMAP_COORDINATOR_INPUT_READER_H_
#define FANMAP_COORDINATOR_INPUT_READER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace fanmap {

class ArgAssembler;

class InputReader {
 public:
  // Takes ownership of `fd` if `owned`.
  InputReader(int fd, bool owned);
  ~InputReader();  // out of line: ArgAssembler is incomplete here
  InputReader(const InputReader&) = delete;
  InputReader& operator=(const InputReader&) = delete;

  // Opens `path` ("" or "-" means stdin).
  static Status Open(const std::string& path, std::unique_ptr<InputReader>* out);

  // Records end at `delimiter` instead of "\n" (no "\r" is then removed).
  void set_delimiter(char delimiter) { delimiter_ = delimiter; }
  // Every record goes to `assembler`; NextLine() returns its items instead.
  void set_assembler(std::unique_ptr<ArgAssembler> assembler);

  // Moves the next complete line (without "\n" and one trailing "\r") into
  // *line. At end of input, a final line without "\n" is returned too.
  // Returns false if no complete line is buffered (call Fill(), or done()).
  bool NextLine(std::string* line);

  // Why NextLine() stops making items before the end: a record the
  // assembler could not split, or one too long to split whole (a usage
  // error); ok otherwise.
  Status item_error() const;

  // Reads once from the descriptor. Returns a non-ok status on a read error.
  Status Fill();

  // True when the input has ended and every line was returned.
  bool done() const;
  bool eof() const { return eof_; }
  int fd() const { return fd_; }
  // Number of lines returned so far (the 1-based number of the last one).
  uint64_t line_number() const { return line_number_; }
  // The length of the last record read, cut bytes included, and whether it
  // was cut (then it is kept to kMaxItemBytes + 1 bytes). Through an
  // assembler, a cut record is an item_error() instead.
  uint64_t record_bytes() const { return record_bytes_; }
  bool record_cut() const { return record_cut_; }
  bool is_regular_file() const { return regular_; }

 private:
  int fd_;
  bool owned_;
  bool regular_ = false;
  std::string path_;  // "" for stdin: named in errors
  bool eof_ = false;
  std::string buffer_;
  size_t start_ = 0;    // first unreturned byte
  size_t scanned_ = 0;  // bytes [start_, scanned_) hold no '\n'
  uint64_t line_number_ = 0;
  uint64_t record_bytes_ = 0;
  uint64_t cut_bytes_ = 0;  // dropped from the line being read
  bool record_cut_ = false;
  Status cut_error_;
  char delimiter_ = '\n';
  std::unique_ptr<ArgAssembler> assembler_;

  bool NextRecord(std::string* line);
};

// Counts the records of a regular file, each ending at `delimiter` (a last
// one without it counts), for the progress bar's total. Returns false if
// `path` is not a regular file.
bool CountLines(const std::string& path, uint64_t* lines, char delimiter = '\n');

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_INPUT_READER_H_
