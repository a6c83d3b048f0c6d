// HaltPolicy: when a run stops before its last item, GNU parallel's --halt
// and fanmap's fail-fast rule.
//
//   --halt never            (the default) run every item, whatever fails
//   --halt now,fail=N       stop at once when N items have failed
//   --halt soon,fail=N      stop sending tasks when N items have failed;
//                           the tasks in flight finish
//   --halt WHEN,fail=P%     ... when P% of all the items have failed, as
//                           GNU parallel counts it (it reads every item
//                           first), once the input has been read to its end;
//                           before that, P% of the items read so far, and of
//                           no fewer than kMinItemsForPercent (SetItems)
//   --halt WHEN,success=N   ... when N items have succeeded (or P%)
//   --halt WHEN,done=N      ... when N items have finished (or P%)
//   --halt 0, 1, 2, -1, -2, P%   GNU parallel's old forms: never,
//                           soon,fail=1, now,fail=1, soon,success=1,
//                           now,success=1, soon,fail=P%
//
// Fail fast, whatever --halt says: when the first kFailFastItems items to
// finish all failed in a way that says the whole job will fail the same
// way (the command cannot be started, the server refused our credentials:
// Result::fatal) and none succeeded, the run stops at once with that error.
//
// It decides; the coordinator stops. Socket-free and clock-free.
#ifndef FANMAP_COORDINATOR_HALT_POLICY_H_
#define FANMAP_COORDINATOR_HALT_POLICY_H_

#include <cstdint>
#include <string>

#include "common/status.h"

namespace fanmap {

enum class HaltWhen : uint8_t { kNever, kNow, kSoon };
// What --halt counts.
enum class HaltOn : uint8_t { kFail, kSuccess, kDone };
enum class HaltDecision : uint8_t { kGoOn, kStopSoon, kStopNow };

struct HaltSpec {
  HaltWhen when = HaltWhen::kNever;
  HaltOn on = HaltOn::kFail;
  uint64_t count = 0;   // stop at this many (when percent < 0)
  double percent = -1;  // or at this percentage of the items (SetItems)
};

// Parses "never", "now,fail=3", "soon,fail=10%", "now,success=1",
// "soon,done=5", and GNU parallel's old forms ("2", "-1", "10%").
Status ParseHalt(const std::string& text, HaltSpec* out);

class HaltPolicy {
 public:
  static constexpr uint64_t kFailFastItems = 5;
  static constexpr uint64_t kMinItemsForPercent = 10;

  explicit HaltPolicy(HaltSpec spec = HaltSpec()) : spec_(spec) {}

  // An item finished; `fatal`: its failure says the whole job fails alike.
  // `error` is its error text (for the reason). Once it has said stop, it
  // keeps saying so.
  HaltDecision OnFinished(bool ok, bool fatal, const std::string& error);
  // `items` items of this run have been read; `all`: that is every one (the
  // input has ended). A percentage counts against them. Returns the
  // decision as of now.
  HaltDecision SetItems(uint64_t items, bool all);
  // Why it said stop.
  const std::string& reason() const { return reason_; }
  // True when it said stop because the first items all failed fatally (fail
  // fast), not because --halt's count was reached: a failure even under
  // WHEN,success=.
  bool failed_fast() const { return failed_fast_; }
  // The counts that made it say stop, without what the run does about it
  // ("--halt: 2 item(s) succeeded of 4 finished (of 4)").
  const std::string& counts() const { return counts_; }
  // Items that failed so far, those that finished after a stop included.
  uint64_t failed() const { return failed_; }

 private:
  // Applies --halt to the counts so far.
  HaltDecision Decide();

  HaltSpec spec_;
  uint64_t finished_ = 0;
  uint64_t failed_ = 0;
  uint64_t fatal_in_a_row_ = 0;  // from the first item on, while nothing succeeded
  bool any_success_ = false;
  uint64_t items_ = 0;      // items of the run read so far (SetItems)
  bool all_items_ = false;  // ... and that is all of them
  HaltDecision decided_ = HaltDecision::kGoOn;
  bool failed_fast_ = false;
  std::string counts_;
  std::string reason_;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_HALT_POLICY_H_
