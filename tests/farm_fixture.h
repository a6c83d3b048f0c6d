// FarmFixture: the base of the integration-test fixtures that run the real
// fanmap binaries.
//
// Each test gets a unique token; every process it starts through the fixture
// carries it in its environment (FANMAP_TEST_TOKEN), so that a process the
// run failed to end can be found afterwards, whoever started it.
#ifndef FANMAP_TESTS_FARM_FIXTURE_H_
#define FANMAP_TESTS_FARM_FIXTURE_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "tests/farm_test_util.h"

namespace fanmap {
namespace testing_util {

class FarmFixture : public ::testing::Test {
 protected:
  FarmFixture() : token_(UniqueToken()) {}

  // The environment entries that mark a process as this test's.
  std::vector<std::string> Env() const { return {"FANMAP_TEST_TOKEN=" + token_}; }

  // Runs fanmap with `args` and `input` on stdin, with `env` and this test's
  // token added to the environment.
  RunResult Fanmap(std::vector<std::string> args, const std::string& input,
                   std::vector<std::string> env = {}) {
    args.insert(args.begin(), FanmapPath());
    env.push_back("FANMAP_TEST_TOKEN=" + token_);
    return testing_util::Run(args, input, env);
  }

  // Expects that no process carrying this test's token is left, zombies
  // included.
  void ExpectNoProcessLeft() {
    // Orphans are reaped asynchronously by init: wait for them to go.
    std::vector<pid_t> left;
    WaitUntil([&] {
      left = ProcessesWithToken(token_);
      return left.empty();
    });
    EXPECT_TRUE(left.empty()) << left.size() << " process(es) left, first pid " << left[0];
  }

  std::string token_;
};

}  // namespace testing_util
}  // namespace fanmap

#endif  // FANMAP_TESTS_FARM_FIXTURE_H_
