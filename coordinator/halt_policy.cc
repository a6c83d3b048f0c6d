#include "coordinator/halt_policy.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace fanmap {

Status ParseHalt(const std::string& text, HaltSpec* out) {
  auto bad = [&text]() {
    return Status::Error("--halt '" + text +
                         "' is not never or WHEN,fail=N|P%, WHEN,success=N|P% or "
                         "WHEN,done=N|P% (WHEN: now or soon), or 0, 1, 2, -1, -2 or P%");
  };
  // GNU parallel's old forms.
  static const std::pair<const char*, const char*> kOldForms[] = {
      {"0", "never"},           {"1", "soon,fail=1"},    {"2", "now,fail=1"},
      {"-1", "soon,success=1"}, {"-2", "now,success=1"},
  };
  std::string spelled = text;
  for (const auto& [old_form, form] : kOldForms) {
    if (text == old_form) spelled = form;
  }
  if (!text.empty() && text.back() == '%' && text.find(',') == std::string::npos) {
    spelled = "soon,fail=" + text;
  }
  HaltSpec spec;
  if (spelled == "never") {
    *out = spec;
    return Status::Ok();
  }
  size_t comma = spelled.find(',');
  if (comma == std::string::npos) return bad();
  std::string when = spelled.substr(0, comma);
  std::string rule = spelled.substr(comma + 1);
  if (when == "now") {
    spec.when = HaltWhen::kNow;
  } else if (when == "soon") {
    spec.when = HaltWhen::kSoon;
  } else {
    return bad();
  }
  size_t eq = rule.find('=');
  if (eq == std::string::npos) return bad();
  std::string what = rule.substr(0, eq);
  std::string number = rule.substr(eq + 1);
  if (what == "success") {
    spec.on = HaltOn::kSuccess;
  } else if (what == "done") {
    spec.on = HaltOn::kDone;
  } else if (what != "fail") {
    return bad();
  }
  bool percent = !number.empty() && number.back() == '%';
  if (percent) number.pop_back();
  char* end = nullptr;
  double v = std::strtod(number.c_str(), &end);
  if (number.empty() || *end != '\0' || !(v > 0)) return bad();
  if (percent) {
    if (v > 100) return bad();
    spec.percent = v;
  } else {
    if (v != static_cast<double>(static_cast<uint64_t>(v))) return bad();
    spec.count = static_cast<uint64_t>(v);
  }
  *out = spec;
  return Status::Ok();
}

HaltDecision HaltPolicy::OnFinished(bool ok, bool fatal, const std::string& error) {
  // Counted after a stop too: the tasks that finish after `soon` count in
  // the exit status (failed()).
  ++finished_;
  if (!ok) ++failed_;
  if (decided_ != HaltDecision::kGoOn) return decided_;
  if (ok) any_success_ = true;
  if (!any_success_ && !ok && fatal) {
    if (++fatal_in_a_row_ >= kFailFastItems) {
      reason_ = "stopping: the first " + std::to_string(kFailFastItems) +
                " items all failed and none succeeded: " + error;
      failed_fast_ = true;
      return decided_ = HaltDecision::kStopNow;
    }
  } else {
    fatal_in_a_row_ = any_success_ ? 0 : fatal_in_a_row_;
  }
  return Decide();
}

HaltDecision HaltPolicy::SetItems(uint64_t items, bool all) {
  if (decided_ != HaltDecision::kGoOn) return decided_;
  items_ = items;
  all_items_ = all;
  return Decide();
}

HaltDecision HaltPolicy::Decide() {
  if (spec_.when == HaltWhen::kNever) return decided_;
  uint64_t counted = spec_.on == HaltOn::kSuccess ? finished_ - failed_
                     : spec_.on == HaltOn::kDone  ? finished_
                                                  : failed_;
  bool reached;
  if (spec_.percent < 0) {
    reached = counted >= spec_.count;
  } else {
    // GNU parallel's count: P% of all the items (it reads them all first).
    // Until all are read, of those read so far (every finished item was),
    // and of no fewer than kMinItemsForPercent: the first failures of a
    // stream must not stop it.
    uint64_t base = std::max(items_, finished_);
    if (!all_items_) base = std::max(base, kMinItemsForPercent);
    reached = counted > 0 &&
              static_cast<double>(counted) >= static_cast<double>(base) * spec_.percent / 100;
  }
  if (!reached) return decided_;
  counts_ = std::string("--halt: ") + std::to_string(counted) + " item(s) " +
            (spec_.on == HaltOn::kSuccess ? "succeeded"
             : spec_.on == HaltOn::kDone  ? "finished"
                                          : "failed") +
            " of " + std::to_string(finished_) + " finished (of " +
            std::to_string(std::max(items_, finished_)) + (all_items_ ? "" : " read so far") + ")";
  reason_ = counts_ + (spec_.when == HaltWhen::kSoon ? "; no new tasks, the running ones finish"
                                                     : "; stopping now");
  return decided_ = spec_.when == HaltWhen::kNow ? HaltDecision::kStopNow : HaltDecision::kStopSoon;
}

}  // namespace fanmap
