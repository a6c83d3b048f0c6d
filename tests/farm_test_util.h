// Helpers for integration tests that run the real fanmap binaries.
#ifndef FANMAP_TESTS_FARM_TEST_UTIL_H_
#define FANMAP_TESTS_FARM_TEST_UTIL_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace fanmap {
namespace testing_util {

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

std::string UniqueToken();

}  // namespace testing_util
}  // namespace fanmap

#endif  // FANMAP_TESTS_FARM_TEST_UTIL_H_
