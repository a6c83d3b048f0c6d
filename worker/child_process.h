// ChildProcess: an owned handle on one spawned command.
//
// The command runs in its own process group (so that signals reach whatever
// it starts), with stdin from /dev/null unless a stdin pipe is asked for, and
// stdout and stderr connected to pipes that this handle reads. The signal
// mask is emptied and every signal disposition reset to default in the
// child, so that signals blocked or ignored by the worker (signalfd,
// SIGPIPE) behave normally in the command.
//
// Nothing here blocks except Kill() and the destructor: the caller polls
// stdout_fd(), stderr_fd() and pidfd() for readability, then calls
// ReadAvailable() and TryReap().
//
// Every descriptor is close-on-exec, so one child never inherits another's
// pipes. The destructor SIGKILLs the process group if the child has not been
// reaped yet and then reaps it: no zombie outlives the handle.
//
// Not thread-safe; one owner drives it from one thread.
#ifndef FANMAP_WORKER_CHILD_PROCESS_H_
#define FANMAP_WORKER_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"

namespace fanmap {

class ChildProcess {
 public:
  struct Options {
    // Gives the child a pipe as stdin (see stdin_fd()) instead of /dev/null.
    bool pipe_stdin = false;
    // "NAME=value" entries added to (or replacing those in) the environment;
    // a bare "NAME" removes NAME.
    std::vector<std::string> env;
  };

  // Most bytes ReadAvailable() takes from one pipe per call, so that a child
  // writing as fast as it can does not hold the caller's loop.
  static constexpr size_t kReadBudgetBytes = 4 << 20;

  // Starts argv[0], looked up in PATH as execvp() does, with arguments argv.
  // On success *out holds the running child. If it cannot be started (empty
  // argv, not found, not executable, no pipes left...) returns an error such
  // as "cannot run 'nosuchcmd': No such file or directory", and *out is reset;
  // no process is left behind.
  static Status Spawn(const std::vector<std::string>& argv, const Options& options,
                      std::unique_ptr<ChildProcess>* out);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // SIGKILLs the process group unless the child was already reaped, reaps it,
  // and closes every descriptor. Blocks only while the kernel ends the child.
  ~ChildProcess() noexcept;

  pid_t pid() const { return pid_; }

  // Read ends of the child's stdout and stderr, non-blocking; -1 once
  // ReadAvailable() has seen end-of-file on them.
  int stdout_fd() const { return stdout_fd_; }
  int stderr_fd() const { return stderr_fd_; }
  bool output_closed() const { return stdout_fd_ < 0 && stderr_fd_ < 0; }

  // Write end of the child's stdin, non-blocking (writes may fail with EAGAIN,
  // and with EPIPE once the child has closed it: ignore SIGPIPE). -1 without
  // Options::pipe_stdin or after CloseStdin().
  int stdin_fd() const { return stdin_fd_; }
  // Closes stdin_fd(), so the child sees end-of-file. Safe to call twice.
  void CloseStdin();

  // A pidfd that becomes readable when the child has exited; open until the
  // handle is destroyed, including after TryReap().
  int pidfd() const { return pidfd_; }

  // Appends what stdout and stderr hold now to stdout_data() / stderr_data(),
  // without blocking and at most kReadBudgetBytes per pipe; closes a pipe at
  // end-of-file (or on a read error, which is treated as end-of-file).
  void ReadAvailable();
  // The bytes read so far. The caller may take or trim them.
  std::string& stdout_data() { return stdout_data_; }
  std::string& stderr_data() { return stderr_data_; }

  // Reaps the child if it has exited, without blocking. Returns reaped().
  bool TryReap();
  bool reaped() const { return reaped_; }
  // The waitpid() status (use WIFEXITED / WEXITSTATUS / WIFSIGNALED /
  // WTERMSIG); meaningful once reaped().
  int wait_status() const { return wait_status_; }

  // Sends SIGTERM to the process group. No effect once reaped: the group's id
  // could then belong to someone else.
  void Terminate();
  // Sends SIGTERM to the process group, gives the child up to `grace` to exit,
  // then SIGKILLs the group and reaps the child (grace 0: SIGKILL at once).
  // Afterwards reaped() is true. No effect once reaped. Blocks for at most
  // `grace` plus the time the kernel takes to end the child.
  void Kill(std::chrono::milliseconds grace = std::chrono::milliseconds::zero());

 private:
  ChildProcess() = default;

  // Kills the group and reaps unless already reaped; closes all descriptors.
  void Release() noexcept;
  void ReadPipe(int* fd, std::string* data);
  // Blocking waitpid, retried on EINTR.
  void Reap() noexcept;

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  int stdin_fd_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  std::string stdout_data_;
  std::string stderr_data_;
};

// Waits until every child in `children` that is not reaped yet has exited
// (its pidfd is readable), or until `grace` has passed. Reaps none of them, so
// that a Kill() afterwards still reaches what they started. Lets a shutdown
// ask all its children to stop, give them one grace period together, and
// then Kill() each. Blocks for at most `grace`.
void WaitForExits(const std::vector<ChildProcess*>& children, std::chrono::milliseconds grace);

// Reporting how a command ended, for the payloads that run commands (exec,
// pipe).

// How many bytes of a command's stderr an error result carries.
constexpr size_t kStderrTailBytes = 2000;

// Keeps `*stderr_data` (ChildProcess::stderr_data(), after ReadAvailable())
// from growing without bound while only its tail will be reported: once it
// holds more than 4 * kStderrTailBytes, all but the last kStderrTailBytes
// are dropped. Trimming in big steps keeps this amortised O(1).
void TrimStderr(std::string* stderr_data);

// The last kStderrTailBytes (or fewer) of `stderr_data`, after a line that
// says the head was cut when it was, starting on a UTF-8
// character boundary so that the tail of a UTF-8 text stays valid, without a
// final "\n". Empty if there is nothing to report.
std::string StderrTail(const std::string& stderr_data);

// Removes one final "\n" from `*s`, if there is one.
void DropFinalNewline(std::string* s);

// Describes a wait status (ChildProcess::wait_status()) for an error message:
// "exit code N", "killed by signal S", or "exit status unknown (reaped
// elsewhere)" for a status that is neither (-1).
std::string DescribeExit(int wait_status);

// Records a wait status in a result's extra fields: "exit_code" if the
// command exited, "signal" if a signal ended it, nothing otherwise.
void AddExitFields(int wait_status, Result::Extra* extra);

}  // namespace fanmap

#endif  // FANMAP_WORKER_CHILD_PROCESS_H_
