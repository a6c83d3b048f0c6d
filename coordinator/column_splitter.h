// ColumnSplitter: --colsep, GNU parallel's `split /REGEX/, $line, -1`.
//
// The pattern is a Perl-compatible regex (PCRE2, JIT-compiled where the
// platform has it), and a record splits as Perl's split does:
// - the fields are the text between matches, and every capture group of a
//   match is a field of its own in between (an unset group is "");
// - an empty match never ends a field where it starts: "x*" on "abc" gives
//   a, b, c, "" (no empty first field);
// - empty fields, trailing ones included, are kept (limit -1);
// - an empty record is one empty field;
// - then, as parallel trims values under --colsep, whitespace (Perl's \s)
//   at both ends of every field is removed.
// Matching runs without recursion on the C stack, with a match limit and a
// heap limit: a pattern that backtracks without end on a record makes
// Split() fail for that record with a message saying so, never a crash.
#ifndef FANMAP_COORDINATOR_COLUMN_SPLITTER_H_
#define FANMAP_COORDINATOR_COLUMN_SPLITTER_H_

#include <memory>
#include <string>

#include "common/arg_table.h"
#include "common/status.h"

namespace fanmap {

class ColumnSplitter {
 public:
  // Fails if `pattern` is not a regex, naming the error and its offset.
  static Status Create(const std::string& pattern, std::unique_ptr<ColumnSplitter>* out);
  ~ColumnSplitter();
  ColumnSplitter(const ColumnSplitter&) = delete;
  ColumnSplitter& operator=(const ColumnSplitter&) = delete;

  // Replaces *row with the fields of `record`.
  Status Split(const std::string& record, ArgRow* row) const;

 private:
  struct Pcre;
  ColumnSplitter();
  std::string pattern_;
  std::unique_ptr<Pcre> pcre_;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_COLUMN_SPLITTER_H_
