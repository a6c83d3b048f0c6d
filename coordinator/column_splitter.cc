#include "coordinator/column_splitter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace fanmap {
namespace {

// Bounds on one match: enough for any sane separator on a record of many
// megabytes (a literal or a class advances linearly), small enough that a
// pattern backtracking exponentially fails in well under a second.
constexpr uint32_t kMatchLimit = 50'000'000;
constexpr uint32_t kHeapLimitKiB = 64 * 1024;
// The JIT's own stack, grown on demand up to this size.
constexpr size_t kJitStackStart = 32 * 1024;
constexpr size_t kJitStackMax = 8 * 1024 * 1024;

// Perl's \s.
constexpr char kPerlSpace[] = " \t\n\r\f\v";

std::string ErrorText(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0)
    return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

struct ColumnSplitter::Pcre {
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  pcre2_match_data* match = nullptr;
  uint32_t groups = 0;
  ~Pcre() {
    pcre2_match_data_free(match);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_code_free(code);
  }
};

ColumnSplitter::ColumnSplitter() : pcre_(new Pcre) {}
ColumnSplitter::~ColumnSplitter() = default;

Status ColumnSplitter::Create(const std::string& pattern, std::unique_ptr<ColumnSplitter>* out) {
  std::unique_ptr<ColumnSplitter> s(new ColumnSplitter);
  s->pattern_ = pattern;
  Pcre& p = *s->pcre_;
  int error = 0;
  PCRE2_SIZE offset = 0;
  p.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &error,
                         &offset, nullptr);
  if (p.code == nullptr) {
    return Status::Error("--colsep '" + pattern + "' is not a regular expression: " +
                         ErrorText(error) + " at offset " + std::to_string(offset));
  }
  p.context = pcre2_match_context_create(nullptr);
  p.match = pcre2_match_data_create_from_pattern(p.code, nullptr);
  if (p.context == nullptr || p.match == nullptr) return Status::Error("--colsep: out of memory");
  pcre2_set_match_limit(p.context, kMatchLimit);
  pcre2_set_heap_limit(p.context, kHeapLimitKiB);
  // Without JIT (not built for this CPU) pcre2_match interprets, on the heap.
  if (pcre2_jit_compile(p.code, PCRE2_JIT_COMPLETE) == 0) {
    p.jit_stack = pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr);
    if (p.jit_stack != nullptr) pcre2_jit_stack_assign(p.context, nullptr, p.jit_stack);
  }
  pcre2_pattern_info(p.code, PCRE2_INFO_CAPTURECOUNT, &p.groups);
  *out = std::move(s);
  return Status::Ok();
}

Status ColumnSplitter::Split(const std::string& record, ArgRow* row) const {
  row->clear();
  if (record.empty()) {
    row->emplace_back();
    return Status::Ok();
  }
  const Pcre& p = *pcre_;
  auto subject = reinterpret_cast<PCRE2_SPTR>(record.data());
  size_t field = 0;  // where the current field starts
  bool matched = false;
  while (field < record.size()) {
    // Perl's split: a match must end past the field's start, so an empty
    // match there is skipped (NOTEMPTY_ATSTART) and never makes an empty field.
    int rc = pcre2_match(p.code, subject, record.size(), field, PCRE2_NOTEMPTY_ATSTART, p.match,
                         p.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      return Status::Error("--colsep '" + pattern_ + "' cannot split a record of " +
                           std::to_string(record.size()) + " bytes: " + ErrorText(rc));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(p.match);
    if (ov[0] < field || ov[1] <= field) break;  // \K tricks: no progress, stop splitting
    row->push_back(record.substr(field, ov[0] - field));
    for (uint32_t g = 1; g <= p.groups; ++g) {
      bool set = static_cast<int>(g) < rc && ov[2 * g] != PCRE2_UNSET;
      row->push_back(set ? record.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]) : std::string());
    }
    field = ov[1];
    matched = true;
  }
  if (field < record.size() || matched) row->push_back(record.substr(field));
  // parallel trims every value when --colsep is given (--trim lr): Perl's
  // \s at both ends.
  for (std::string& value : *row) {
    size_t first = value.find_first_not_of(kPerlSpace);
    if (first == std::string::npos) {
      value.clear();
      continue;
    }
    value.erase(value.find_last_not_of(kPerlSpace) + 1);
    value.erase(0, first);
  }
  return Status::Ok();
}

}  // namespace fanmap
