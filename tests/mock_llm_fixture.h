// MockLlmFixture: a FarmFixture that also runs the real mock-llm server on
// 127.0.0.1 (tests/mock_llm) and reads its counters, for the end-to-end tests
// of the HTTP payload (http_integration_test, rate_integration_test).
//
// Children inherit the test's environment: no proxy may divert 127.0.0.1
// traffic, and a developer's real OPENAI_API_KEY must not reach the mock.
#ifndef FANMAP_TESTS_MOCK_LLM_FIXTURE_H_
#define FANMAP_TESTS_MOCK_LLM_FIXTURE_H_

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/farm_fixture.h"
#include "tests/farm_test_util.h"

namespace fanmap {
namespace testing_util {

class MockLlmFixture : public FarmFixture {
 protected:
  MockLlmFixture() {
    setenv("no_proxy", "*", 1);
    unsetenv("OPENAI_API_KEY");
  }

  // Starts mock-llm with `args`; false if it never printed its URL.
  bool StartMock(std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("mock-llm"), "--port", "0"});
    mock_ = std::make_unique<Process>(args, "", dir_.File("mock.out"), dir_.File("mock.err"));
    std::string out = WaitForText(dir_.File("mock.out"), "\n");
    std::smatch match;
    if (!std::regex_match(out, match, std::regex("listening on (http://127\\.0\\.0\\.1:\\d+)\n"))) {
      ADD_FAILURE() << "mock-llm stdout: '" << out
                    << "' stderr: " << ReadFile(dir_.File("mock.err"));
      return false;
    }
    base_url_ = match[1];
    return true;
  }

  // The body of a GET (or an empty POST) of `path` on the mock.
  std::string Call(const std::string& method, const std::string& path) {
    std::string body;
    CURL* curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, (base_url_ + path).c_str());
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(kDeadlineS));
    if (method == "POST") curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    CURLcode code = curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    EXPECT_EQ(code, CURLE_OK) << curl_easy_strerror(code);
    return body;
  }
  // mock-llm's counters (GET /stats).
  nlohmann::json Stats() { return nlohmann::json::parse(Call("GET", "/stats"), nullptr, false); }
  static int64_t CountOf(const nlohmann::json& stats, const std::string& status) {
    return stats["by_status"].value(status, int64_t{0});
  }

  TempDir dir_;
  std::unique_ptr<Process> mock_;
  std::string base_url_;

 private:
  static size_t AppendBody(char* data, size_t size, size_t count, void* body) {
    static_cast<std::string*>(body)->append(data, size * count);
    return size * count;
  }
};

}  // namespace testing_util
}  // namespace fanmap

#endif  // FANMAP_TESTS_MOCK_LLM_FIXTURE_H_
