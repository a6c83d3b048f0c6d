#include "worker/task_result.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "common/protocol.h"

namespace fanmap {
namespace {

Task TaskOf(uint64_t index) {
  Task task;
  task.index = index;
  task.attempt = 3;
  return task;
}

TEST(TaskResultTest, TextBytesCountsTheValueAndEveryStringField) {
  Result r = OkResult(TaskOf(1), "12345");
  r.extra["stderr"] = std::string("abc");
  r.extra["exit_code"] = int64_t{7};
  EXPECT_EQ(TextBytes(r), 8u);
}

TEST(TaskResultTest, AResultWithinTheLimitIsLeftAlone) {
  Result r = OkResult(TaskOf(1), std::string(kMaxResultFieldsBytes - 1, 'x'));
  r.extra["stderr"] = std::string("e");
  EXPECT_FALSE(FailIfTooLarge(&r));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.value.size(), kMaxResultFieldsBytes - 1);
  EXPECT_EQ(r.extra.size(), 1u);
}

// A result larger than a frame carries made the coordinator drop the frame
// and the worker's connection: the worker went silent and the item hung.
TEST(TaskResultTest, AResultOverTheLimitBecomesAFinalErrorThatSaysHowLarge) {
  Result r = OkResult(TaskOf(9), std::string(kMaxResultFieldsBytes, 'x'));
  r.value_is_json = true;
  r.extra["stdout"] = std::string(10, 'o');  // the fields together pass the limit
  r.extra["exit_code"] = int64_t{0};
  EXPECT_TRUE(FailIfTooLarge(&r));
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_FALSE(r.value_is_json);
  EXPECT_EQ(r.index, 9u);
  EXPECT_EQ(r.attempt, 3u);
  EXPECT_EQ(r.value, "result of " + std::to_string(kMaxResultFieldsBytes + 10) +
                         " bytes, more than the 254 MiB a result may hold");
  ASSERT_EQ(r.extra.size(), 1u);
  EXPECT_EQ(r.extra.count("exit_code"), 1u);
}

}  // namespace
}  // namespace fanmap
