// fanmap-worker: flags → WorkerConfig → RunWorker.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "common/exit_status.h"
#include "common/version.h"
#include "worker/worker.h"

int main(int argc, char** argv) {
  fanmap::WorkerConfig config;
  long parent_pid = 0;
  CLI::App app{
      "fanmap-worker: runs the tasks of a fanmap coordinator.\n"
      "Start it by hand (or with ssh, srun, ...) next to `fanmap --listen ENDPOINT`;\n"
      "it receives the job from the coordinator and exits when the run ends."};
  app.add_option("--connect", config.endpoint, "coordinator endpoint, e.g. tcp://HOST:PORT")
      ->required();
  app.add_option("--slots", config.slots, "tasks in flight in this worker (default: the job's)");
  app.add_option("--name", config.name, "name shown by the coordinator (default: host:pid)");
  app.add_option("--connect-timeout", config.connect_timeout_s,
                 "seconds to wait for a job before giving up; 0 waits forever")
      ->capture_default_str();
  app.add_flag("-q,--quiet", config.quiet, "no log lines on stderr");
  app.add_option("--curve-secret", config.curve_secret_path,
                 "CurveZMQ: this worker's secret key file (from 'fanmap keygen')");
  app.add_option("--server-key", config.server_key,
                 "CurveZMQ: the coordinator's public key, or a file holding it");
  // Made only when asked for: naming libcurl's version loads libcurl (common/lazy_curl.cc).
  app.set_version_flag(
      "--version", [] { return fanmap::VersionText("fanmap-worker"); },
      "print the version (and the protocol, libzmq and libcurl versions)");
  // Set by a coordinator that spawns local workers: die with it.
  app.add_option("--parent-pid", parent_pid)->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? fanmap::kExitOk : fanmap::kExitUsage;
  }

  // A coordinator blocks the signals it reads through signalfd; children
  // inherit that mask, so start from a clean one.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_UNBLOCK, &all, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (parent_pid > 0) {
    config.rejoin = false;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    // The parent may have died before prctl took effect.
    if (getppid() != parent_pid) return fanmap::kExitItemsFailed;
  }
  return fanmap::RunWorker(config);
}
