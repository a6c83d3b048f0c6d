// PrivateDir: a directory only this user can enter, owned by one coordinator
// run. It holds the unix socket that local workers connect to ("workers") and
// the run's CurveZMQ key files, so that another local user can neither connect
// to the coordinator (and receive the JOB, with its API key) nor read a key.
//
// An abstract unix socket (ipc://@name) would leave no file behind, but it has
// no permissions and its name is listed in /proc/net/unix: anyone on the
// machine could connect. A socket file in a 0700 directory can only be
// reached by its owner (and root).
//
// The directory is "<parent>/fanmap-<pid>-XXXXXX". The pid in the name lets a
// later run remove the leftovers of a run that was killed outright (SIGKILL
// runs no destructor): see SweepStale.
//
// Not thread-safe; one owner per directory.
#ifndef FANMAP_COORDINATOR_PRIVATE_DIR_H_
#define FANMAP_COORDINATOR_PRIVATE_DIR_H_

#include <cstddef>
#include <string>

#include "common/status.h"

namespace fanmap {

class PrivateDir {
 public:
  // The name of the socket file inside the directory.
  static constexpr const char* kSocketName = "workers";
  // Longest socket path a sockaddr_un holds (sun_path, without its NUL).
  static constexpr size_t kMaxSocketPath = 107;

  // An empty PrivateDir: owns nothing, path() is "".
  PrivateDir() = default;
  // Removes the directory (see Remove).
  ~PrivateDir();
  PrivateDir(const PrivateDir&) = delete;
  PrivateDir& operator=(const PrivateDir&) = delete;
  // Moving transfers ownership; the moved-from PrivateDir is empty.
  PrivateDir(PrivateDir&& other) noexcept;
  PrivateDir& operator=(PrivateDir&& other) noexcept;

  // Creates a new private directory in the first usable parent of:
  //   $XDG_RUNTIME_DIR  if set, a directory (not a symlink) owned by us, and
  //                     short enough for the socket path;
  //   $TMPDIR           if set, a directory, and short enough;
  //   /tmp.
  // A parent in which the directory cannot be made is skipped for the next.
  // Before creating, sweeps the chosen parent (SweepStale); swept() tells how
  // many leftovers went. After creating, checks with lstat that the directory
  // is a real directory owned by our euid with mode 0700, and fails otherwise.
  // On success *out owns the new directory (whatever it owned before is
  // removed first); on error *out is left unchanged.
  static Status Create(PrivateDir* out);
  // The same in the given `parent` only (for tests and callers that know
  // where): fails if the socket path would not fit.
  static Status CreateIn(const std::string& parent, PrivateDir* out);

  // The directory, without a trailing slash; "" when empty.
  const std::string& path() const { return path_; }
  // "<path>/workers".
  std::string SocketPath() const;
  // "ipc://<path>/workers": what the coordinator binds and local workers
  // connect to.
  std::string SocketEndpoint() const;
  // How many stale directories Create swept from the parent.
  size_t swept() const { return swept_; }

  // Removes every entry of the directory that is not itself a directory
  // (files, sockets, symlinks: never followed), then the directory. Leaves
  // the PrivateDir empty. Never throws; errors are ignored (a leftover
  // directory is swept by a later run). Safe to call twice.
  void Remove() noexcept;

  // Removes the leftovers of killed runs in `parent`: each entry named
  // "fanmap-<pid>-XXXXXX" that is a directory (not a symlink) owned by our
  // euid and whose pid is not running (kill(pid, 0) fails with ESRCH). Their
  // non-directory entries go first, then the directory. Returns how many
  // directories were removed. Never follows symlinks; never touches another
  // user's directory, a live run's, or anything named otherwise.
  static size_t SweepStale(const std::string& parent);

  // The parent Create would choose now (exposed for tests).
  static std::string ChooseParent();

 private:
  std::string path_;
  size_t swept_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_PRIVATE_DIR_H_
