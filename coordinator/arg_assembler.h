// ArgAssembler: turns input records into the argument tables of GNU
// parallel's command lines (common/arg_table.h), one task item each.
//
// Sources: the first one streams in through Add() (the lines of -i, stdin,
// a :::: or -a file, or the values of a first :::); the others are given
// whole at construction (parallel reads them whole too). Each record becomes
// one row: its --colsep columns, or the record as one field.
// - Without link, rows are every combination, the first source outermost
//   and the last varying fastest (`::: a b ::: 1 2` → a 1, a 2, b 1, b 2).
// - With link, the i-th records of all sources make row i, the shorter
//   sources wrapping around, as many rows as the longest source has; the
//   first source is then kept whole until Finish().
// - An empty source among several counts as one empty value, as in parallel
//   (`::: a b :::: /dev/null` → "a ", "b "); with --link too (parallel fails
//   there with an internal error). A first source alone and empty: no rows.
// Rows are grouped into tables: one row each, or up to max_args (-n), or as
// many as fit max_chars bytes of arguments (-X), the last table smaller.
// Memory: the other sources, the pending rows of one table, and (link) the
// first source.
#ifndef FANMAP_COORDINATOR_ARG_ASSEMBLER_H_
#define FANMAP_COORDINATOR_ARG_ASSEMBLER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/arg_table.h"
#include "common/status.h"
#include "coordinator/column_splitter.h"

namespace fanmap {

struct ArgAssemblerOptions {
  std::string colsep;    // Perl regex (ColumnSplitter); "" = one field per record
  bool link = false;     // --link
  size_t max_args = 0;   // -n; 0 = one row per table unless fill
  bool fill = false;     // -X: as many rows as fit max_chars
  size_t max_chars = 0;  // -X's limit on the sum of the table's row costs
  // -X: what a row adds to the command (CommandTemplate::RowCost); unset:
  // its fields' bytes plus one each.
  std::function<size_t(const ArgRow&)> row_cost;
};

class ArgAssembler {
 public:
  // `others`: the records of the second and later sources. A --colsep that
  // is not a valid regex is reported by Create.
  static Status Create(const ArgAssemblerOptions& options,
                       const std::vector<std::vector<std::string>>& others,
                       std::unique_ptr<ArgAssembler>* out);

  // One record of the first source. A record --colsep cannot split (the
  // match limit) sets error(); no item is made after it.
  void Add(std::string record);
  const Status& error() const { return error_; }
  // The first source has ended.
  void Finish();
  bool finished() const { return finished_; }
  // Moves the next complete table, encoded, into *item. False if none is
  // ready yet (Add more, or Finish).
  bool Next(std::string* item);
  // Finished and every item taken.
  bool drained() const;

 private:
  explicit ArgAssembler(const ArgAssemblerOptions& options) : options_(options) {}
  // `number`: the record's 1-based number in its source, for errors.
  Status Split(const std::string& record, uint64_t number, ArgRow* row) const;
  bool NextRow(ArgRow* row);
  bool TableFull() const;
  void Flush();

  ArgAssemblerOptions options_;
  std::unique_ptr<ColumnSplitter> colsep_;
  Status error_ = Status::Ok();
  uint64_t added_ = 0;  // records of the first source
  std::vector<std::vector<ArgRow>> others_;
  std::deque<ArgRow> first_;  // pending (or, with link, all) rows of the first source
  bool finished_ = false;
  // Without link: the first-source row being combined, and the position in
  // every other source (an odometer, the last one turning fastest).
  bool have_current_ = false;
  ArgRow current_;
  std::vector<size_t> odometer_;
  // With link: the next row number and how many there are.
  size_t link_next_ = 0;
  size_t link_rows_ = 0;
  ArgTable table_;  // rows of the table being filled
  size_t table_chars_ = 0;
  std::deque<std::string> ready_;
};

// How the coordinator reads items under GNU parallel's input options
// (Config::arg_input, filled by coordinator/parallel_args.h).
struct ArgInput {
  char delimiter = '\n';  // -0, -d
  bool assemble = false;  // items are argument tables (ArgAssembler)
  ArgAssemblerOptions options;
  // A first source given as ::: values (the input is then empty); otherwise
  // the input's records are the first source.
  std::vector<std::string> first_values;
  std::vector<std::vector<std::string>> others;  // the later sources' records
  std::vector<std::string> files;  // every source read from a file (-a, ::::), in order
  // How many items (tables) there will be, when every source is known in
  // advance (for the progress display); 0 = not known.
  uint64_t KnownItems() const;
  // How many rows `first_records` records of the first source make with the
  // other sources (0: none, or too many to count).
  uint64_t Rows(uint64_t first_records) const;
};

class InputReader;

// Sets `reader` up for `input`: its delimiter and, when assembling, an
// ArgAssembler fed with first_values. Fails on a bad --colsep.
Status AttachArgInput(const ArgInput& input, InputReader* reader);

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_ARG_ASSEMBLER_H_
