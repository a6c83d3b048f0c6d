// Helpers shared by the payload unit tests (header-only: each test is one
// binary).
#ifndef FANMAP_TESTS_PAYLOAD_TEST_UTIL_H_
#define FANMAP_TESTS_PAYLOAD_TEST_UTIL_H_

#include <errno.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "common/protocol.h"

namespace fanmap {
namespace testing_util {

// Generous: only a broken payload gets near it.
constexpr std::chrono::seconds kPayloadTimeout(20);

// No test may leave a child behind, reaped or not.
inline ::testing::AssertionResult NoChildrenLeft() {
  int status;
  pid_t r = waitpid(-1, &status, WNOHANG);
  if (r == -1 && errno == ECHILD) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "waitpid(-1, WNOHANG) returned " << r << (r > 0 ? " (a zombie)" : " (a running child)");
}

// The integer extra field `key`, or -1.
inline int64_t IntExtra(const Result& r, const std::string& key) {
  auto it = r.extra.find(key);
  if (it == r.extra.end() || !std::holds_alternative<int64_t>(it->second)) return -1;
  return std::get<int64_t>(it->second);
}

// The string extra field `key`, or "<absent>".
inline std::string StringExtra(const Result& r, const std::string& key) {
  auto it = r.extra.find(key);
  if (it == r.extra.end() || !std::holds_alternative<std::string>(it->second)) return "<absent>";
  return std::get<std::string>(it->second);
}

}  // namespace testing_util
}  // namespace fanmap

#endif  // FANMAP_TESTS_PAYLOAD_TEST_UTIL_H_
