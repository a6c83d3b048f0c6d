// Helpers for integration tests that run the real fanmap binaries.
#ifndef FANMAP_TESTS_FARM_TEST_UTIL_H_
#define FANMAP_TESTS_FARM_TEST_UTIL_H_

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fanmap {
namespace testing_util {

// The path of the binary `name` of this build (fanmap, fanmap-worker,
// mock-llm). The directory is FANMAP_BIN_DIR, a compile definition of every
// test target that builds this file.
std::string BinaryPath(const std::string& name);
inline std::string FanmapPath() { return BinaryPath("fanmap"); }
inline std::string WorkerPath() { return BinaryPath("fanmap-worker"); }

// The numbers from `from` to `to`, one a line: "1\n2\n3\n".
std::string Seq(int from, int to);

// Parses fanmap's jsonl output. Expects (EXPECT_*, the test goes on) exactly
// `expected` records, the i-th with index i; returns what it parsed.
std::vector<nlohmann::json> ParseRecords(const std::string& out, size_t expected);

// A scratch directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);
std::vector<std::string> Lines(const std::string& text);

// A process started in the background with stdin/stdout/stderr from/to files.
class Process {
 public:
  // `env` entries ("K=V") are added to the current environment.
  Process(const std::vector<std::string>& argv, const std::string& stdin_path,
          const std::string& stdout_path, const std::string& stderr_path,
          const std::vector<std::string>& env = {});
  ~Process();  // SIGKILLs and reaps the process if it is still running
  pid_t pid() const { return pid_; }
  // Waits for the exit; returns the exit code, or 128+signal. Gives up
  // (kills it, returns -1) after `timeout_s` seconds.
  int Wait(int timeout_s = 120);
  bool Exited();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `argv` to completion with `input` on stdin.
RunResult Run(const std::vector<std::string>& argv, const std::string& input,
              const std::vector<std::string>& env = {}, int timeout_s = 120);

// Pids of processes whose environment holds `token` (as "FANMAP_TEST_TOKEN=token").
std::vector<pid_t> ProcessesWithToken(const std::string& token);
// Pids of processes whose environment holds `token` and whose command line
// contains `name`.
std::vector<pid_t> ProcessesNamed(const std::string& token, const std::string& name);

// Waits until `path` contains `needle`, up to `timeout_s`; returns the
// content (empty if it never appeared).
std::string WaitForText(const std::string& path, const std::string& needle, int timeout_s = 30);

// Waits until the stderr file `err_path` of a coordinator started with
// --listen names its endpoint ("listening on tcp://..."), up to `timeout_s`;
// returns the endpoint, or "" if it never appeared.
std::string ListeningEndpoint(const std::string& err_path, int timeout_s = 30);

std::string UniqueToken();

}  // namespace testing_util
}  // namespace fanmap

#endif  // FANMAP_TESTS_FARM_TEST_UTIL_H_
