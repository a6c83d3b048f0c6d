#include "tests/farm_test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#ifndef FANMAP_BIN_DIR
#error "FANMAP_BIN_DIR must name the directory of the binaries under test"
#endif

extern char** environ;

namespace fanmap {
namespace testing_util {

std::string BinaryPath(const std::string& name) { return std::string(FANMAP_BIN_DIR) + "/" + name; }

std::string Seq(int from, int to) {
  std::string s;
  for (int i = from; i <= to; ++i) s += std::to_string(i) + "\n";
  return s;
}

std::vector<nlohmann::json> ParseRecords(const std::string& out, size_t expected) {
  std::vector<nlohmann::json> records;
  for (const std::string& line : Lines(out)) records.push_back(nlohmann::json::parse(line));
  EXPECT_EQ(records.size(), expected);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i]["index"], i) << "record " << i << " out of order";
  }
  return records;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/fanmap-test-XXXXXX";
  if (mkdtemp(tmpl) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  if (!path_.empty()) {
    std::string cmd = "rm -rf '" + path_ + "'";
    int ignored = system(cmd.c_str());
    (void)ignored;
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

Process::Process(const std::vector<std::string>& argv, const std::string& stdin_path,
                 const std::string& stdout_path, const std::string& stderr_path,
                 const std::vector<std::string>& env) {
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) envs.push_back(*e);
  for (const std::string& e : env) envs.push_back(e);
  pid_ = fork();
  if (pid_ == 0) {
    int in = open(stdin_path.empty() ? "/dev/null" : stdin_path.c_str(), O_RDONLY);
    int out = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> args, envp;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const std::string& e : envs) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
}

Process::~Process() {
  if (pid_ > 0 && status_ < 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

bool Process::Exited() {
  if (status_ >= 0) return true;
  int status;
  if (waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
  return status_ >= 0;
}

int Process::Wait(int timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (!Exited()) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return WEXITSTATUS(status_);
}

RunResult Run(const std::vector<std::string>& argv, const std::string& input,
              const std::vector<std::string>& env, int timeout_s) {
  TempDir dir;
  WriteFile(dir.File("in"), input);
  RunResult result;
  {
    Process p(argv, dir.File("in"), dir.File("out"), dir.File("err"), env);
    result.exit_code = p.Wait(timeout_s);
  }
  result.out = ReadFile(dir.File("out"));
  result.err = ReadFile(dir.File("err"));
  return result;
}

static std::vector<pid_t> Scan(const std::string& token, const std::string& name) {
  std::vector<pid_t> pids;
  std::string needle = "FANMAP_TEST_TOKEN=" + token;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(atoi(entry->d_name));
    if (pid <= 0) continue;
    std::string base = std::string("/proc/") + entry->d_name;
    std::string environ_text = ReadFile(base + "/environ");
    if (environ_text.find(needle) == std::string::npos) continue;
    // Zombies still count: they were not reaped.
    if (!name.empty() && ReadFile(base + "/cmdline").find(name) == std::string::npos) continue;
    pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

std::vector<pid_t> ProcessesWithToken(const std::string& token) { return Scan(token, ""); }

std::vector<pid_t> ProcessesNamed(const std::string& token, const std::string& name) {
  return Scan(token, name);
}

bool Running(pid_t pid) {
  // /proc/PID/stat: "pid (comm) S ...", where comm may hold spaces and parentheses.
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t comm_end = stat.rfind(')');
  return comm_end != std::string::npos && comm_end + 2 < stat.size() && stat[comm_end + 2] != 'Z';
}

bool WaitUntil(const std::function<bool()>& condition, int timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::string WaitForText(const std::string& path, const std::string& needle, int timeout_s) {
  std::string text;
  bool found = WaitUntil(
      [&] {
        text = ReadFile(path);
        return text.find(needle) != std::string::npos;
      },
      timeout_s);
  return found ? text : "";
}

bool WaitForCount(const std::string& path, const std::string& needle, size_t count, int timeout_s) {
  return WaitUntil([&] { return Count(ReadFile(path), needle) >= count; }, timeout_s);
}

std::string ListeningEndpoint(const std::string& err_path, int timeout_s) {
  std::string err = WaitForText(err_path, "listening on tcp://", timeout_s);
  std::smatch m;
  if (!std::regex_search(err, m, std::regex("listening on (tcp://[0-9.:]+)"))) return "";
  return m[1];
}

InputFifo::InputFifo(const std::string& path) : path_(path) {
  if (mkfifo(path.c_str(), 0600) == 0) fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  EXPECT_GE(fd_, 0) << "FIFO " << path << ": " << strerror(errno);
}

InputFifo::~InputFifo() { Close(); }

void InputFifo::Write(const std::string& text) {
  size_t done = 0;
  while (fd_ >= 0 && done < text.size()) {
    ssize_t n = write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ADD_FAILURE() << "write to FIFO " << path_ << ": " << strerror(errno);
      return;
    }
    done += static_cast<size_t>(n);
  }
}

void InputFifo::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

std::string UniqueToken() {
  std::random_device rd;
  return std::to_string(getpid()) + "-" + std::to_string(rd()) + std::to_string(rd());
}

}  // namespace testing_util
}  // namespace fanmap
