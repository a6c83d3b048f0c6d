#include "worker/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace fanmap {
namespace {

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r: returns the message, which may or may not be in buf.
  return strerror_r(err, buf, sizeof buf);
}

void CloseFd(int* fd) noexcept {
  if (*fd >= 0) {
    // Not retried on EINTR: on Linux the descriptor is released anyway.
    close(*fd);
    *fd = -1;
  }
}

// Owns the descriptors of a pipe until they are handed over or closed.
struct Pipe {
  int read_fd = -1;
  int write_fd = -1;
  ~Pipe() {
    CloseFd(&read_fd);
    CloseFd(&write_fd);
  }
};

// If the worker runs with fd 0, 1 or 2 closed, pipe2() can return those
// numbers, and the child's dup2() onto 0/1/2 would then clobber one pipe end
// with another. Moving ends above 2 keeps the file actions order-independent.
int LiftAboveStdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int lifted = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int saved_errno = errno;
  close(fd);
  errno = saved_errno;
  return lifted;
}

bool MakePipe(Pipe* p) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  p->read_fd = LiftAboveStdio(fds[0]);
  p->write_fd = LiftAboveStdio(fds[1]);
  return p->read_fd >= 0 && p->write_fd >= 0;
}

// Only the parent's ends are non-blocking: O_NONBLOCK lives on the open file
// description, and a command whose stdout were non-blocking would see EAGAIN.
bool SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// RAII for the posix_spawn attribute objects.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  SpawnSetup() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

}  // namespace

Status ChildProcess::Spawn(const std::vector<std::string>& argv, const Options& options,
                           std::unique_ptr<ChildProcess>* out) {
  out->reset();
  if (argv.empty() || argv[0].empty()) return Status::Error("cannot run an empty command");
  const std::string& name = argv[0];
  auto fail = [&name](const char* what, int err) {
    return Status::Error(std::string(what) + " '" + name + "': " + ErrnoText(err));
  };

  Pipe out_pipe, err_pipe, in_pipe;
  if (!MakePipe(&out_pipe) || !MakePipe(&err_pipe) || (options.pipe_stdin && !MakePipe(&in_pipe))) {
    return fail("cannot create pipes for", errno);
  }

  SpawnSetup setup;
  // Own process group, so that Kill() reaches everything the command starts
  // and a ctrl-c aimed at the worker's group is ours to forward, not theirs.
  // The worker blocks signals for its signalfd and ignores SIGPIPE; both are
  // inherited across exec, so they are reset for the command.
  sigset_t empty_set, full_set;
  sigemptyset(&empty_set);
  sigfillset(&full_set);
  int rc = posix_spawnattr_setflags(
      &setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc == 0) rc = posix_spawnattr_setpgroup(&setup.attr, 0);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&setup.attr, &empty_set);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&setup.attr, &full_set);

  // The pipe ends are close-on-exec; dup2 onto 0/1/2 clears that flag on the
  // copies, so the command keeps only its three standard descriptors.
  if (rc == 0) {
    rc = options.pipe_stdin
             ? posix_spawn_file_actions_adddup2(&setup.actions, in_pipe.read_fd, 0)
             : posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
  }
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&setup.actions, out_pipe.write_fd, 1);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&setup.actions, err_pipe.write_fd, 2);
  if (rc != 0) return fail("cannot set up", rc);

  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const std::string& arg : argv) cargv.push_back(const_cast<char*>(arg.c_str()));
  cargv.push_back(nullptr);

  std::vector<char*> envp;
  if (!options.env.empty()) {
    // An entry "NAME=value" replaces NAME; a bare "NAME" removes it.
    auto name_of = [](const char* entry) {
      const char* eq = std::strchr(entry, '=');
      return std::string(entry, eq == nullptr ? std::strlen(entry) : eq - entry);
    };
    for (char** e = environ; *e != nullptr; ++e) {
      std::string name = name_of(*e);
      bool replaced =
          std::any_of(options.env.begin(), options.env.end(),
                      [&](const std::string& add) { return name_of(add.c_str()) == name; });
      if (!replaced) envp.push_back(*e);
    }
    for (const std::string& add : options.env) {
      if (add.find('=') != std::string::npos) envp.push_back(const_cast<char*>(add.c_str()));
    }
    envp.push_back(nullptr);
  }

  // glibc's posix_spawnp uses clone(CLONE_VM | CLONE_VFORK): it returns only
  // after the exec, and an exec failure (ENOENT, EACCES, ENOEXEC) comes back
  // as its return value with the failed child already reaped.
  pid_t pid = -1;
  rc = posix_spawnp(&pid, name.c_str(), &setup.actions, &setup.attr, cargv.data(),
                    envp.empty() ? environ : envp.data());
  if (rc != 0) return fail("cannot run", rc);

  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  // From here on, an early return destroys `child`, which kills and reaps.
  // A pidfd can be opened on a child that already exited: unreaped, it stays.
  child->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (child->pidfd_ < 0) return fail("cannot watch", errno);

  std::swap(child->stdout_fd_, out_pipe.read_fd);
  std::swap(child->stderr_fd_, err_pipe.read_fd);
  std::swap(child->stdin_fd_, in_pipe.write_fd);
  if (!SetNonBlocking(child->stdout_fd_) || !SetNonBlocking(child->stderr_fd_) ||
      (child->stdin_fd_ >= 0 && !SetNonBlocking(child->stdin_fd_))) {
    return fail("cannot set up pipes for", errno);
  }
  // The child's ends close when the Pipe objects go out of scope, so that
  // end-of-file arrives once the command (and its descendants) close theirs.
  *out = std::move(child);
  return Status::Ok();
}

ChildProcess::~ChildProcess() noexcept { Release(); }

void ChildProcess::Release() noexcept {
  if (pid_ > 0 && !reaped_) {
    killpg(pid_, SIGKILL);
    Reap();
  }
  CloseFd(&stdout_fd_);
  CloseFd(&stderr_fd_);
  CloseFd(&stdin_fd_);
  CloseFd(&pidfd_);
  pid_ = -1;
}

void ChildProcess::CloseStdin() { CloseFd(&stdin_fd_); }

void ChildProcess::ReadAvailable() {
  ReadPipe(&stdout_fd_, &stdout_data_);
  ReadPipe(&stderr_fd_, &stderr_data_);
}

void ChildProcess::ReadPipe(int* fd, std::string* data) {
  if (*fd < 0) return;
  // One pipe's default capacity: a full pipe drains in one read.
  char buf[64 << 10];
  size_t budget = kReadBudgetBytes;
  while (budget > 0) {
    ssize_t n = read(*fd, buf, std::min(sizeof buf, budget));
    if (n > 0) {
      data->append(buf, static_cast<size_t>(n));
      budget -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    CloseFd(fd);
    return;
  }
}

bool ChildProcess::TryReap() {
  if (reaped_ || pid_ <= 0) return reaped_;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    reaped_ = true;
    wait_status_ = status;
  } else if (r < 0) {
    // ECHILD: someone else reaped it (a stray waitpid(-1)). The status is
    // lost; -1 is neither WIFEXITED nor WIFSIGNALED.
    reaped_ = true;
    wait_status_ = -1;
  }
  return reaped_;
}

void ChildProcess::Reap() noexcept {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  reaped_ = true;
  wait_status_ = r == pid_ ? status : -1;
}

void ChildProcess::Terminate() {
  if (pid_ > 0 && !reaped_) killpg(pid_, SIGTERM);
}

void ChildProcess::Kill(std::chrono::milliseconds grace) {
  if (pid_ <= 0 || reaped_) return;
  if (grace.count() > 0 && pidfd_ >= 0) {
    Terminate();
    WaitForExits({this}, grace);
  }
  // The leader is not reaped yet (at most a zombie), so the group id is still
  // ours and the SIGKILL reaches only the command's own processes.
  killpg(pid_, SIGKILL);
  Reap();
}

void WaitForExits(const std::vector<ChildProcess*>& children, std::chrono::milliseconds grace) {
  std::vector<pollfd> waiting;
  for (ChildProcess* child : children) {
    if (!child->reaped()) waiting.push_back(pollfd{child->pidfd(), POLLIN, 0});
  }
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (!waiting.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    int n = poll(waiting.data(), waiting.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) break;
    waiting.erase(std::remove_if(waiting.begin(), waiting.end(),
                                 [](const pollfd& p) { return p.revents != 0; }),
                  waiting.end());
  }
}

void TrimStderr(std::string* stderr_data) {
  // Keep more than the tail, so that StderrTail() can still start it on a
  // UTF-8 character boundary.
  if (stderr_data->size() > 4 * kStderrTailBytes) {
    stderr_data->erase(0, stderr_data->size() - 2 * kStderrTailBytes);
  }
}

std::string StderrTail(const std::string& stderr_data) {
  size_t start = 0;
  if (stderr_data.size() > kStderrTailBytes) {
    start = stderr_data.size() - kStderrTailBytes;
    // A UTF-8 character has at most 3 continuation bytes.
    size_t limit = std::min(stderr_data.size(), start + 3);
    while (start < limit && (static_cast<unsigned char>(stderr_data[start]) & 0xC0) == 0x80) {
      ++start;
    }
  }
  std::string tail = stderr_data.substr(start);
  DropFinalNewline(&tail);
  // Say so when the head was cut: a reader must not take a tail for the whole.
  if (start > 0) tail.insert(0, "[... earlier output cut; the last bytes follow]\n");
  return tail;
}

void DropFinalNewline(std::string* s) {
  if (!s->empty() && s->back() == '\n') s->pop_back();
}

std::string DescribeExit(int wait_status) {
  if (WIFEXITED(wait_status)) return "exit code " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return "killed by signal " + std::to_string(WTERMSIG(wait_status));
  return "exit status unknown (reaped elsewhere)";
}

void AddExitFields(int wait_status, Result::Extra* extra) {
  if (WIFEXITED(wait_status)) {
    (*extra)["exit_code"] = static_cast<int64_t>(WEXITSTATUS(wait_status));
  } else if (WIFSIGNALED(wait_status)) {
    (*extra)["signal"] = static_cast<int64_t>(WTERMSIG(wait_status));
  }
}

}  // namespace fanmap
