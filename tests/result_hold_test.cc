#include "worker/result_hold.h"

#include <gtest/gtest.h>

namespace fanmap {
namespace {

TEST(ResultHoldTest, ResultsOfCheapTasksWaitForCompany) {
  EXPECT_EQ(ResultHoldMicros(5, false, 0), kResultHoldMicros);
  EXPECT_EQ(ResultHoldMicros(5, false, 400), kResultHoldMicros - 400);
}

TEST(ResultHoldTest, NoResultWaitsLongerThanTheHold) {
  EXPECT_EQ(ResultHoldMicros(5, false, kResultHoldMicros), 0);
  EXPECT_EQ(ResultHoldMicros(5, false, 10 * kResultHoldMicros), 0);
}

TEST(ResultHoldTest, ResultsOfSlowTasksGoAtOnce) {
  // An HTTP request of 100 ms, a command of a millisecond.
  EXPECT_EQ(ResultHoldMicros(100000, false, 0), 0);
  EXPECT_EQ(ResultHoldMicros(kHoldBelowTaskMicros, false, 0), 0);
}

TEST(ResultHoldTest, TheLastResultBeforeIdlingGoesAtOnce) {
  // Nothing else will finish to share the frame: holding would only delay.
  EXPECT_EQ(ResultHoldMicros(5, true, 0), 0);
}

TEST(ResultHoldTest, NothingIsHeldBeforeATaskTimeIsKnown) {
  EXPECT_EQ(ResultHoldMicros(-1, false, 0), 0);
}

}  // namespace
}  // namespace fanmap
