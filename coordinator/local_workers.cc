#include "coordinator/local_workers.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Boost.Process offers vfork only where _POSIX_C_SOURCE predates 2008, which
// glibc's does not; glibc has vfork all the same.
#define BOOST_POSIX_HAS_VFORK 1
#include <algorithm>
#include <boost/process.hpp>
#include <boost/process/posix.hpp>
#include <chrono>
#include <cstdlib>
#include <list>
#include <map>
#include <thread>
#include <vector>

#include "common/job_keys.h"

namespace fanmap {

namespace bp = boost::process;

struct LocalWorkers::Impl {
  std::string worker_path;
  std::string endpoint;
  unsigned slots;
  std::vector<std::string> extra_args;
  bp::group group;
  std::list<bp::child> children;
  // Each running worker's number, from 0: the lowest free one is reused, so
  // that job slots ({%}) stay 1..workers*slots across respawns.
  std::map<pid_t, unsigned> ordinals;
};

LocalWorkers::LocalWorkers(std::string worker_path, std::string endpoint, unsigned slots,
                           std::vector<std::string> extra_args)
    : impl_(new Impl{
          std::move(worker_path), std::move(endpoint), slots, std::move(extra_args), {}, {}}) {}

LocalWorkers::~LocalWorkers() { StopAll(0); }

Status LocalWorkers::Spawn(pid_t* pid) {
  std::vector<std::string> args = {"--connect",         impl_->endpoint,
                                   "--parent-pid",      std::to_string(getpid()),
                                   "--connect-timeout", "30"};
  args.insert(args.end(), impl_->extra_args.begin(), impl_->extra_args.end());
  if (impl_->slots > 0) {
    args.push_back("--slots");
    args.push_back(std::to_string(impl_->slots));
  }
  unsigned ordinal = 0;
  for (bool taken = true; taken; ordinal += taken) {
    taken = false;
    for (const auto& [_, used] : impl_->ordinals) taken |= used == ordinal;
  }
  bp::environment env = boost::this_process::environment();
  env[kSlotBaseEnv] = std::to_string(ordinal * std::max(1u, impl_->slots));
  std::error_code ec;
  // vfork: the coordinator's pages are not copied on write while the child
  // gets to exec, which on a paravirtualised machine took 2 to 6 ms a worker.
  bp::child child(impl_->worker_path, bp::args(args), bp::std_in < bp::null, impl_->group, env,
                  bp::posix::use_vfork, ec);
  if (ec) {
    return Status::Error("cannot start worker '" + impl_->worker_path + "': " + ec.message());
  }
  *pid = child.id();
  impl_->ordinals[*pid] = ordinal;
  impl_->children.push_back(std::move(child));
  return Status::Ok();
}

std::vector<ExitedWorker> LocalWorkers::Reap() {
  std::vector<ExitedWorker> exited;
  for (auto it = impl_->children.begin(); it != impl_->children.end();) {
    std::error_code ec;
    if (it->running(ec) || ec) {
      ++it;
      continue;
    }
    int status = it->native_exit_code();
    ExitedWorker w{it->id(), "", false};
    if (WIFSIGNALED(status)) {
      w.how = "killed by signal " + std::to_string(WTERMSIG(status));
    } else {
      int code = WEXITSTATUS(status);
      w.clean = code == 0;
      w.how = "exit code " + std::to_string(code);
    }
    impl_->ordinals.erase(w.pid);
    exited.push_back(std::move(w));
    it = impl_->children.erase(it);
  }
  return exited;
}

void LocalWorkers::Signal(pid_t pid, int signo) {
  for (bp::child& child : impl_->children) {
    if (child.id() == pid) kill(pid, signo);
  }
}

namespace {

// Waits until one of `children` exits or `deadline` passes: on their pidfds,
// which become readable when the process exits, so that the run ends the
// moment its last worker has (a 5 ms sleep between checks cost every run up
// to 5 ms); a 5 ms nap where pidfds are missing (kernels before 5.3).
void WaitForAnExit(const std::list<bp::child>& children,
                   std::chrono::steady_clock::time_point deadline) {
  using std::chrono::milliseconds;
  auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
  int timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count() + 1, 0, 1000));
  std::vector<pollfd> fds;
  for (const bp::child& child : children) {
    int fd = static_cast<int>(syscall(SYS_pidfd_open, child.id(), 0));
    if (fd < 0) {
      for (const pollfd& p : fds) close(p.fd);
      fds.clear();
      break;
    }
    fds.push_back(pollfd{fd, POLLIN, 0});
  }
  if (fds.size() == children.size()) {
    poll(fds.data(), fds.size(), timeout_ms);
  } else {
    std::this_thread::sleep_for(milliseconds(std::min(5, timeout_ms)));
  }
  for (const pollfd& p : fds) close(p.fd);
}

}  // namespace

void LocalWorkers::StopAll(int grace_ms) {
  using std::chrono::milliseconds;
  auto wait_all = [this](int ms) {
    auto deadline = std::chrono::steady_clock::now() + milliseconds(ms);
    while (!impl_->children.empty()) {
      Reap();
      if (impl_->children.empty() || std::chrono::steady_clock::now() >= deadline) break;
      WaitForAnExit(impl_->children, deadline);
    }
  };
  wait_all(grace_ms);
  if (impl_->children.empty()) return;
  // SIGTERM first so that workers can stop their own children.
  for (bp::child& child : impl_->children) kill(child.id(), SIGTERM);
  wait_all(1000);
  for (bp::child& child : impl_->children) {
    std::error_code ec;
    child.terminate(ec);  // SIGKILL and reap
  }
  impl_->children.clear();
  impl_->ordinals.clear();
}

std::vector<pid_t> LocalWorkers::pids() const {
  std::vector<pid_t> pids;
  for (const bp::child& child : impl_->children) pids.push_back(child.id());
  return pids;
}

size_t LocalWorkers::running() const { return impl_->children.size(); }

std::string DefaultWorkerPath() {
  if (const char* env = std::getenv("FANMAP_WORKER")) return env;
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "fanmap-worker";
  std::string self(buf, static_cast<size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + "fanmap-worker";
}

}  // namespace fanmap
