#include "coordinator/arg_assembler.h"

#include <algorithm>

#include "coordinator/input_reader.h"

namespace fanmap {

Status ArgAssembler::Create(const ArgAssemblerOptions& options,
                            const std::vector<std::vector<std::string>>& others,
                            std::unique_ptr<ArgAssembler>* out) {
  std::unique_ptr<ArgAssembler> a(new ArgAssembler(options));
  if (!options.colsep.empty()) {
    Status s = ColumnSplitter::Create(options.colsep, &a->colsep_);
    if (!s.ok()) return s;
  }
  for (size_t k = 0; k < others.size(); ++k) {
    // parallel: an empty source among several counts as one empty value.
    static const std::vector<std::string> kOneEmpty = {""};
    const std::vector<std::string>& records = others[k].empty() ? kOneEmpty : others[k];
    std::vector<ArgRow> rows(records.size());
    for (size_t r = 0; r < rows.size(); ++r) {
      Status s = a->Split(records[r], r + 1, &rows[r]);
      if (!s.ok())
        return Status::Error("input source " + std::to_string(k + 2) + ": " + s.message());
    }
    a->others_.push_back(std::move(rows));
  }
  *out = std::move(a);
  return Status::Ok();
}

Status ArgAssembler::Split(const std::string& record, uint64_t number, ArgRow* row) const {
  if (colsep_ == nullptr) {
    *row = {record};
    return Status::Ok();
  }
  Status s = colsep_->Split(record, row);
  if (!s.ok()) return Status::Error("record " + std::to_string(number) + ": " + s.message());
  return Status::Ok();
}

void ArgAssembler::Add(std::string record) {
  ++added_;
  if (!error_.ok()) return;
  ArgRow row;
  error_ = Split(record, added_, &row);
  if (error_.ok()) first_.push_back(std::move(row));
}

void ArgAssembler::Finish() {
  finished_ = true;
  // An empty first source among several is one empty value too (alone, it
  // gives no command, as in parallel).
  if (added_ == 0 && !others_.empty()) Add(std::string());
  if (!options_.link) return;
  link_rows_ = first_.size();
  for (const auto& source : others_) link_rows_ = std::max(link_rows_, source.size());
  if (first_.empty()) link_rows_ = 0;  // a source alone, empty
}

bool ArgAssembler::NextRow(ArgRow* row) {
  if (options_.link) {
    if (!finished_ || link_next_ >= link_rows_) return false;
    size_t i = link_next_++;
    *row = first_[i % first_.size()];
    for (const auto& source : others_) {
      const ArgRow& fields = source[i % source.size()];
      row->insert(row->end(), fields.begin(), fields.end());
    }
    return true;
  }
  while (!have_current_) {
    if (first_.empty()) return false;
    current_ = std::move(first_.front());
    first_.pop_front();
    odometer_.assign(others_.size(), 0);
    have_current_ = std::none_of(others_.begin(), others_.end(),
                                 [](const auto& source) { return source.empty(); });
  }
  *row = current_;
  for (size_t k = 0; k < others_.size(); ++k) {
    const ArgRow& fields = others_[k][odometer_[k]];
    row->insert(row->end(), fields.begin(), fields.end());
  }
  size_t k = others_.size();
  while (k > 0) {
    --k;
    if (++odometer_[k] < others_[k].size()) return true;
    odometer_[k] = 0;
  }
  have_current_ = false;  // every combination with current_ is made
  return true;
}

bool ArgAssembler::TableFull() const {
  if (options_.max_args > 0 && table_.size() >= options_.max_args) return true;
  if (options_.fill) return table_chars_ >= options_.max_chars;
  return options_.max_args == 0;
}

void ArgAssembler::Flush() {
  ready_.push_back(EncodeArgTable(table_));
  table_.clear();
  table_chars_ = 0;
}

bool ArgAssembler::Next(std::string* item) {
  while (ready_.empty()) {
    if (!error_.ok()) return false;
    ArgRow row;
    if (NextRow(&row)) {
      size_t chars = 0;
      if (options_.fill && options_.row_cost) {
        chars = options_.row_cost(row);
      } else {
        for (const std::string& field : row) chars += field.size() + 1;
      }
      // -X: a row that would overflow the table starts the next one.
      if (options_.fill && !table_.empty() && table_chars_ + chars > options_.max_chars) Flush();
      table_chars_ += chars;
      table_.push_back(std::move(row));
      if (TableFull()) Flush();
    } else if (finished_ && !table_.empty()) {
      Flush();
    } else {
      return false;
    }
  }
  *item = std::move(ready_.front());
  ready_.pop_front();
  return true;
}

bool ArgAssembler::drained() const {
  if (!finished_ || !ready_.empty() || !table_.empty()) return false;
  if (options_.link) return link_next_ >= link_rows_;
  return !have_current_ && first_.empty();
}

uint64_t ArgInput::KnownItems() const {
  if (!assemble || options.fill) return 0;
  uint64_t rows = Rows(first_values.size());
  return options.max_args > 0 ? (rows + options.max_args - 1) / options.max_args : rows;
}

uint64_t ArgInput::Rows(uint64_t first_records) const {
  if (first_records == 0) return 0;
  uint64_t rows = first_records;
  for (const auto& source : others) {
    uint64_t size = std::max<uint64_t>(source.size(), 1);  // empty: one empty value
    if (options.link) {
      rows = std::max(rows, size);
    } else if (rows > UINT64_MAX / size) {
      return 0;
    } else {
      rows *= size;
    }
  }
  return rows;
}

Status AttachArgInput(const ArgInput& input, InputReader* reader) {
  reader->set_delimiter(input.delimiter);
  if (!input.assemble) return Status::Ok();
  std::unique_ptr<ArgAssembler> assembler;
  Status status = ArgAssembler::Create(input.options, input.others, &assembler);
  if (!status.ok()) return status;
  for (const std::string& value : input.first_values) assembler->Add(value);
  reader->set_assembler(std::move(assembler));
  return Status::Ok();
}

}  // namespace fanmap
