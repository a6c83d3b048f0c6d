// CommandTemplate: GNU parallel's replacement strings, applied to a command.
//
// The command words are parsed once; Expand() builds the command of one task
// from its ArgTable (common/arg_table.h), its job number and its slot.
//
// Replacement strings, with parallel's meanings (F is a field of the table):
//   {}     every field, each one word           {.}   F without its extension
//   {/}    basename of F                        {//}  dirname of F (perl's dirname)
//   {/.}   basename without extension           {#}   job number, from 1
//   {%}    job slot, from 1                     {N} {N.} {N/} {N//} {N/.}: field N
// Fields are numbered across the whole table: one field per input source or
// --colsep column, and with -n/-X the fields of each item in turn. -I STR
// replaces "{}" by STR (the other strings stay). A command without any
// replacement string gets "{}" appended as a word.
//
// Two ways to run, chosen by the words:
// - argv (several words, or one word without shell syntax): the words run as
//   given, without a shell, as `parallel -q` runs them. A replacement that
//   gives several values splits its word there, as parallel's quoted values
//   would split in the shell: "pre{}post" with a, b gives "prea" "bpost".
// - shell (one word with spaces or shell syntax, e.g. 'gzip < {} > {}.gz',
//   unless the word is the path of an executable file, such as
//   "/opt/my tools/run", which runs as a program):
//   the word runs as `sh -c LINE` with every value quoted as parallel quotes
//   it (ShellQuote), so an item "a; rm -rf ~" stays one argument.
// With -X (context replace), a word holding a per-item replacement string is
// repeated for every item (row) of the table instead.
//
// line() is parallel's command line in both ways (what --dry-run prints and
// --joblog records): words joined by spaces, values quoted.
#ifndef FANMAP_WORKER_REPLACEMENT_H_
#define FANMAP_WORKER_REPLACEMENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/arg_table.h"

namespace fanmap {

// Quotes `s` for sh exactly as GNU parallel does: unchanged if made only of
// [-_.+a-zA-Z0-9/], '' if empty, otherwise in single quotes with each ' as
// '"'"'.
std::string ShellQuote(const std::string& s);

struct ExpandedCommand {
  std::vector<std::string> argv;  // what to spawn
  std::string line;               // parallel's command line
};

class CommandTemplate {
 public:
  struct Options {
    std::string replace_str = "{}";  // -I
    bool context_replace = false;    // -X
  };

  CommandTemplate(const std::vector<std::string>& words, const Options& options);

  ExpandedCommand Expand(const ArgTable& args, uint64_t seq, unsigned slot) const;
  bool uses_shell() const { return shell_; }

  // -X: what one command costs against execve's limits, split into the part
  // every command has and the part each row (item) adds, so that a table
  // is filled in one pass. The cost is what counts against the limit that
  // binds: in the shell, the length of the one `sh -c` argument (quoted
  // values, repeated context words, the spaces; Linux caps one argument at
  // 128 KiB); without it, every argument's bytes, its NUL and its 8-byte
  // pointer. Expand(table)'s cost is FixedCost() + the sum of RowCost(row)
  // (or less: {#} and {%} are counted at their widest).
  size_t FixedCost() const;
  size_t RowCost(const ArgRow& row) const;

 private:
  enum class Kind { kLiteral, kField, kSeq, kSlot };
  enum class Transform { kNone, kNoExtension, kBasename, kDirname, kBasenameNoExtension };
  struct Piece {
    Kind kind = Kind::kLiteral;
    std::string text;  // kLiteral
    size_t field = 0;  // kField: 0 = every field, N = field N
    Transform transform = Transform::kNone;
  };
  using Word = std::vector<Piece>;

  // Whether `word` holds a field (an item's value): -X repeats it per row.
  static bool PerItem(const Word& word);
  static Word Parse(const std::string& word, const std::string& replace_str, bool* found);
  // Appends the expansion of `word` for `args` to *words (argv mode) and to
  // *line (quoted).
  void ExpandWord(const Word& word, const ArgTable& args, uint64_t seq, unsigned slot,
                  std::vector<std::string>* words, std::string* line) const;

  std::vector<Word> words_;
  bool shell_ = false;
  bool context_replace_ = false;
};

}  // namespace fanmap

#endif  // FANMAP_WORKER_REPLACEMENT_H_
