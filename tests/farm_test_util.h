// Helpers for integration tests that run the real fanmap binaries.
#ifndef FANMAP_TESTS_FARM_TEST_UTIL_H_
#define FANMAP_TESTS_FARM_TEST_UTIL_H_

#include <sys/types.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fanmap {
namespace testing_util {

// Tests wait for conditions, never for a time. kDeadlineS bounds each wait: generous, so that
// a loaded machine makes a test slower, never makes it fail; only a bug reaches it.
constexpr int kDeadlineS = 60;

// The --heartbeat (seconds) of tests that stop a worker (SIGSTOP, a cut link) for the
// coordinator to declare it dead. Workers heartbeat every fifth of it, so a healthy one is
// declared dead only if it gets no CPU for the whole 10 s: not a loaded machine, a broken one.
// The tests take that long at least.
constexpr const char* kHeartbeatS = "10";

// The --timeout / --connect-timeout (seconds) of tests that need a hanging task cut (or a
// refused worker to give up) while a trivial task (a `sh -c echo`, a handshake on loopback)
// must finish within it: milliseconds of work, given 10 s. The tests take that long at least.
constexpr const char* kShortTimeoutS = "10";

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
// Whether process `pid` exists and is not a zombie.
bool Running(pid_t pid);

// Calls `condition` every 10 ms until it returns true (then true), or until
// `timeout_s` have passed (then false).
bool WaitUntil(const std::function<bool()>& condition, int timeout_s = kDeadlineS);

// How many times `needle` occurs in `text`.
size_t Count(const std::string& text, const std::string& needle);

// Waits until `path` contains `needle`, up to `timeout_s`; returns the
// content (empty if it never appeared).
std::string WaitForText(const std::string& path, const std::string& needle,
                        int timeout_s = kDeadlineS);

// Waits until `path` contains `needle` at least `count` times, up to
// `timeout_s`; returns whether it did.
bool WaitForCount(const std::string& path, const std::string& needle, size_t count,
                  int timeout_s = kDeadlineS);

// Waits until the stderr file `err_path` of a coordinator started with
// --listen names its endpoint ("listening on tcp://..."), up to `timeout_s`;
// returns the endpoint, or "" if it never appeared.
std::string ListeningEndpoint(const std::string& err_path, int timeout_s = kDeadlineS);

// A named pipe for a coordinator's input (`-i path()`). A run that reads it
// cannot end before Close(): the test, not the machine's speed, decides that
// the run outlasts what it must observe (a worker joining, a frame handled).
// The test's end is held open read-write, which never blocks, and
// close-on-exec, so that no child holds it open. Write() blocks while the pipe
// is full (64 KiB) and nobody reads: keep what is written before the run
// reads it small.
class InputFifo {
 public:
  explicit InputFifo(const std::string& path);  // makes the FIFO and opens it
  ~InputFifo();                                 // Close()
  InputFifo(const InputFifo&) = delete;
  InputFifo& operator=(const InputFifo&) = delete;
  const std::string& path() const { return path_; }
  bool ok() const { return fd_ >= 0; }
  void Write(const std::string& text);
  void Close();  // end of input for the reader; safe to call twice

 private:
  std::string path_;
  int fd_ = -1;
};

std::string UniqueToken();

}  // namespace testing_util
}  // namespace fanmap

#endif  // FANMAP_TESTS_FARM_TEST_UTIL_H_
