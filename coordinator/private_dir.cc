#include "coordinator/private_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace fanmap {
namespace {

static_assert(PrivateDir::kMaxSocketPath == sizeof(sockaddr_un{}.sun_path) - 1,
              "kMaxSocketPath must match sockaddr_un");

constexpr const char* kPrefix = "fanmap-";
constexpr size_t kRandomChars = 6;  // mkdtemp's XXXXXX
constexpr mode_t kMode = 0700;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// "<parent>/fanmap-<pid>-XXXXXX" for this process.
std::string Template(const std::string& parent) {
  return parent + "/" + kPrefix + std::to_string(getpid()) + "-" + std::string(kRandomChars, 'X');
}

bool SocketFits(const std::string& parent) {
  return Template(parent).size() + 1 + std::strlen(PrivateDir::kSocketName) <=
         PrivateDir::kMaxSocketPath;
}

// Parses "fanmap-<pid>-XXXXXX" (the names Create makes) into *pid. The old
// key directories "fanmap-XXXXXX" carry no pid and never match: whether their
// run is over cannot be told, so they are left alone.
bool ParseName(const char* name, pid_t* pid) {
  size_t prefix = std::strlen(kPrefix);
  if (std::strncmp(name, kPrefix, prefix) != 0) return false;
  const char* p = name + prefix;
  long long value = 0;
  size_t digits = 0;
  for (; *p >= '0' && *p <= '9'; ++p, ++digits) {
    value = value * 10 + (*p - '0');
    if (value > INT_MAX) return false;
  }
  // pid 0 or a negative pid would make kill() address a process group.
  if (digits == 0 || value < 1 || *p != '-') return false;
  ++p;
  size_t random = 0;
  for (; *p != '\0'; ++p, ++random) {
    bool alnum = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
    if (!alnum) return false;
  }
  if (random != kRandomChars) return false;
  *pid = static_cast<pid_t>(value);
  return true;
}

bool ProcessIsGone(pid_t pid) { return kill(pid, 0) == -1 && errno == ESRCH; }

// Removes the non-directory entries of the directory `name` (relative to
// `parent_fd`, or a path with AT_FDCWD), then the directory itself, without
// following a symlink at any step. When `expect` is given, the directory
// opened must be that very inode (it was checked before). Returns whether
// the directory is gone.
bool RemoveFlatDir(int parent_fd, const char* name, const struct stat* expect) {
  int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_uid != geteuid() ||
      (expect != nullptr && (st.st_dev != expect->st_dev || st.st_ino != expect->st_ino))) {
    close(fd);
    return false;
  }
  DIR* dir = fdopendir(fd);  // owns fd from here on
  if (dir == nullptr) {
    close(fd);
    return false;
  }
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      names.emplace_back(entry->d_name);
    }
  }
  // A subdirectory is not ours to empty: unlinkat without AT_REMOVEDIR fails
  // on it, and so then does the rmdir below.
  for (const std::string& entry : names) unlinkat(dirfd(dir), entry.c_str(), 0);
  closedir(dir);
  return unlinkat(parent_fd, name, AT_REMOVEDIR) == 0;
}

// The absolute directory in environment variable `name`, without trailing
// slashes; "" if unset or relative.
std::string DirFromEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value != '/') return "";
  std::string dir = value;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

// The parents Create tries, best first.
std::vector<std::string> Candidates() {
  std::vector<std::string> parents;
  if (std::string xdg = DirFromEnv("XDG_RUNTIME_DIR"); !xdg.empty()) {
    struct stat st;
    if (lstat(xdg.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
        SocketFits(xdg)) {
      parents.push_back(xdg);
    }
  }
  if (std::string parent = DirFromEnv("TMPDIR"); !parent.empty()) {
    struct stat st;
    if (stat(parent.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && SocketFits(parent)) {
      parents.push_back(parent);
    }
  }
  parents.emplace_back("/tmp");
  return parents;
}

}  // namespace

PrivateDir::~PrivateDir() { Remove(); }

PrivateDir::PrivateDir(PrivateDir&& other) noexcept
    : path_(std::move(other.path_)), swept_(other.swept_) {
  other.path_.clear();
}

PrivateDir& PrivateDir::operator=(PrivateDir&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::move(other.path_);
    swept_ = other.swept_;
    other.path_.clear();
  }
  return *this;
}

Status PrivateDir::Create(PrivateDir* out) {
  Status status;
  for (const std::string& parent : Candidates()) {
    status = CreateIn(parent, out);
    if (status.ok()) return status;
  }
  return status;
}

Status PrivateDir::CreateIn(const std::string& parent, PrivateDir* out) {
  if (!SocketFits(parent)) {
    return Status::Error("cannot make a private directory in " + parent +
                         ": the socket path would pass " + std::to_string(kMaxSocketPath) +
                         " bytes");
  }
  size_t swept = SweepStale(parent);
  std::string name = Template(parent);
  // mkdtemp makes it 0700 (less the umask) and fails if the name exists,
  // so nobody can have planted it.
  if (mkdtemp(name.data()) == nullptr) return Status::Error(Errno("cannot create " + name));
  PrivateDir made;
  made.path_ = name;
  made.swept_ = swept;

  int fd = open(name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status::Error(Errno("cannot open " + name));
  struct stat st;
  // A umask such as 0277 would have left us without write permission.
  bool ok = fstat(fd, &st) == 0 && st.st_uid == geteuid() &&
            ((st.st_mode & 07777) == kMode || fchmod(fd, kMode) == 0);
  close(fd);
  struct stat lst;
  if (!ok || lstat(name.c_str(), &lst) != 0 || !S_ISDIR(lst.st_mode) || lst.st_uid != geteuid() ||
      (lst.st_mode & 07777) != kMode || lst.st_dev != st.st_dev || lst.st_ino != st.st_ino) {
    return Status::Error(name + " is not a directory of ours with mode 0700");
  }
  *out = std::move(made);
  return Status::Ok();
}

std::string PrivateDir::SocketPath() const { return path_ + "/" + kSocketName; }

std::string PrivateDir::SocketEndpoint() const { return "ipc://" + SocketPath(); }

void PrivateDir::Remove() noexcept {
  if (path_.empty()) return;
  try {
    RemoveFlatDir(AT_FDCWD, path_.c_str(), nullptr);
  } catch (...) {  // std::bad_alloc from the list of names: leave it to SweepStale
  }
  path_.clear();
}

namespace {

// True if a process accepts connections on the unix socket `path`: a run
// whose pid only looks gone (another pid namespace or host sharing this
// directory) still owns it.
bool SomeoneListens(const std::string& path) {
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) return false;
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool listening = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return listening;
}

}  // namespace

size_t PrivateDir::SweepStale(const std::string& parent) {
  int parent_fd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent_fd < 0) return 0;
  DIR* dir = fdopendir(parent_fd);
  if (dir == nullptr) {
    close(parent_fd);
    return 0;
  }
  std::vector<std::pair<std::string, struct stat>> stale;
  while (dirent* entry = readdir(dir)) {
    pid_t pid;
    if (!ParseName(entry->d_name, &pid)) continue;
    struct stat st;
    if (fstatat(parent_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) continue;
    if (ProcessIsGone(pid) && !SomeoneListens(parent + "/" + entry->d_name + "/" + kSocketName)) {
      stale.emplace_back(entry->d_name, st);
    }
  }
  size_t swept = 0;
  for (const auto& [name, st] : stale) {
    if (RemoveFlatDir(parent_fd, name.c_str(), &st)) ++swept;
  }
  closedir(dir);
  return swept;
}

std::string PrivateDir::ChooseParent() { return Candidates().front(); }

}  // namespace fanmap
