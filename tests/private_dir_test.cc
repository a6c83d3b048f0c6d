#include "coordinator/private_dir.h"

#include <fcntl.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

namespace fanmap {
namespace {

// Saves an environment variable and puts it back when destroyed.
class ScopedEnv {
 public:
  explicit ScopedEnv(const char* name) : name_(name) {
    if (const char* value = getenv(name)) old_ = value;
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  void Set(const std::string& value) { setenv(name_, value.c_str(), 1); }
  void Unset() { unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

int RemoveOne(const char* path, const struct stat*, int, struct FTW*) { return remove(path); }

// A pid that belonged to a process that has exited and been reaped.
pid_t DeadPid() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status;
  waitpid(pid, &status, 0);
  return pid;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

class PrivateDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TMPDIR");
    parent_ = std::string(tmp != nullptr && *tmp == '/' ? tmp : "/tmp") + "/privdir_test_XXXXXX";
    ASSERT_NE(mkdtemp(&parent_[0]), nullptr);
    xdg_.Unset();
    tmpdir_.Unset();
  }

  void TearDown() override { nftw(parent_.c_str(), RemoveOne, 16, FTW_DEPTH | FTW_PHYS); }

  void Create(PrivateDir* dir, const std::string& parent = "") {
    Status status = PrivateDir::CreateIn(parent.empty() ? parent_ : parent, dir);
    ASSERT_TRUE(status.ok()) << status.message();
  }

  void WriteFile(const std::string& path, const std::string& text = "secret") {
    std::ofstream out(path, std::ios::binary);
    out << text;
    ASSERT_TRUE(out.good()) << path;
  }

  // A directory in the parent named `name`, holding a key file.
  std::string MakeLeftover(const std::string& name) {
    std::string dir = parent_ + "/" + name;
    EXPECT_EQ(mkdir(dir.c_str(), 0700), 0) << dir;
    WriteFile(dir + "/worker.key");
    return dir;
  }

  // Binds a unix socket at `path` (leaves the socket file behind).
  static bool BindSocket(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof(address.sun_path)) return false;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    close(fd);
    return ok;
  }

  ScopedEnv xdg_{"XDG_RUNTIME_DIR"};
  ScopedEnv tmpdir_{"TMPDIR"};
  std::string parent_;
};

TEST_F(PrivateDirTest, CreatesDirectoryWithMode0700OwnedByUs) {
  PrivateDir dir;
  Create(&dir);
  struct stat st;
  ASSERT_EQ(lstat(dir.path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, geteuid());
  std::string prefix = parent_ + "/fanmap-" + std::to_string(getpid()) + "-";
  EXPECT_EQ(dir.path().rfind(prefix, 0), 0u) << dir.path();
  EXPECT_EQ(dir.path().size(), prefix.size() + 6);
}

TEST_F(PrivateDirTest, Mode0700EvenUnderRestrictiveUmask) {
  mode_t old = umask(0277);
  PrivateDir dir;
  Create(&dir);
  umask(old);
  struct stat st;
  ASSERT_EQ(lstat(dir.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(PrivateDirTest, EndpointIsTheSocketFileInTheDirectory) {
  PrivateDir dir;
  Create(&dir);
  EXPECT_EQ(dir.SocketPath(), dir.path() + "/workers");
  EXPECT_EQ(dir.SocketEndpoint(), "ipc://" + dir.path() + "/workers");
  EXPECT_TRUE(BindSocket(dir.SocketPath()));
}

TEST_F(PrivateDirTest, SocketPathOfExactlySunPathLimitFitsOneMoreDoesNot) {
  // "<parent>/fanmap-<pid>-XXXXXX/workers" is the parent plus this much.
  size_t overhead = std::string("/fanmap-" + std::to_string(getpid()) + "-XXXXXX/workers").size();
  std::string at_limit = parent_ + "/";
  at_limit += std::string(PrivateDir::kMaxSocketPath - overhead - at_limit.size(), 'a');
  ASSERT_EQ(mkdir(at_limit.c_str(), 0700), 0);
  std::string over = at_limit + "b";
  ASSERT_EQ(mkdir(over.c_str(), 0700), 0);

  PrivateDir dir;
  Create(&dir, at_limit);
  EXPECT_EQ(dir.SocketPath().size(), PrivateDir::kMaxSocketPath);
  EXPECT_TRUE(BindSocket(dir.SocketPath()));

  PrivateDir too_long;
  Status status = PrivateDir::CreateIn(over, &too_long);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(too_long.path().empty());
}

TEST_F(PrivateDirTest, FallsBackToTmpWhenTmpdirIsTooLong) {
  std::string deep = parent_ + "/" + std::string(100, 'd');
  ASSERT_EQ(mkdir(deep.c_str(), 0700), 0);
  tmpdir_.Set(deep);
  EXPECT_EQ(PrivateDir::ChooseParent(), "/tmp");
  PrivateDir dir;
  Status status = PrivateDir::Create(&dir);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(dir.path().rfind("/tmp/fanmap-", 0), 0u) << dir.path();
  EXPECT_LE(dir.SocketPath().size(), PrivateDir::kMaxSocketPath);
}

TEST_F(PrivateDirTest, PrefersXdgRuntimeDirThenTmpdirThenTmp) {
  std::string xdg = parent_ + "/xdg";
  std::string tmp = parent_ + "/tmp";
  ASSERT_EQ(mkdir(xdg.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(tmp.c_str(), 01777), 0);
  EXPECT_EQ(PrivateDir::ChooseParent(), "/tmp");
  tmpdir_.Set(tmp + "/");
  EXPECT_EQ(PrivateDir::ChooseParent(), tmp);
  xdg_.Set(xdg);
  EXPECT_EQ(PrivateDir::ChooseParent(), xdg);

  PrivateDir dir;
  Status status = PrivateDir::Create(&dir);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(dir.path().rfind(xdg + "/fanmap-", 0), 0u) << dir.path();
}

TEST_F(PrivateDirTest, IgnoresXdgRuntimeDirThatIsASymlinkOrMissing) {
  std::string xdg = parent_ + "/xdg";
  ASSERT_EQ(mkdir(xdg.c_str(), 0700), 0);
  std::string link = parent_ + "/xdg-link";
  ASSERT_EQ(symlink(xdg.c_str(), link.c_str()), 0);
  xdg_.Set(link);
  EXPECT_EQ(PrivateDir::ChooseParent(), "/tmp");
  xdg_.Set(parent_ + "/missing");
  EXPECT_EQ(PrivateDir::ChooseParent(), "/tmp");
}

TEST_F(PrivateDirTest, IgnoresXdgRuntimeDirOfAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  std::string xdg = parent_ + "/xdg";
  ASSERT_EQ(mkdir(xdg.c_str(), 0700), 0);
  ASSERT_EQ(chown(xdg.c_str(), 65534, 65534), 0);
  xdg_.Set(xdg);
  EXPECT_EQ(PrivateDir::ChooseParent(), "/tmp");
}

TEST_F(PrivateDirTest, DestructorRemovesDirectoryWithItsFiles) {
  std::string outside = parent_ + "/outside.txt";
  WriteFile(outside);
  std::string path;
  {
    PrivateDir dir;
    Create(&dir);
    path = dir.path();
    WriteFile(path + "/worker.key");
    WriteFile(path + "/worker.pub");
    ASSERT_TRUE(BindSocket(dir.SocketPath()));
    ASSERT_EQ(symlink(outside.c_str(), (path + "/link").c_str()), 0);
  }
  EXPECT_FALSE(Exists(path));
  EXPECT_TRUE(Exists(outside)) << "a symlink's target is not ours to remove";
}

TEST_F(PrivateDirTest, RemoveIsSafeTwiceAndEmptiesThePrivateDir) {
  PrivateDir dir;
  Create(&dir);
  std::string path = dir.path();
  dir.Remove();
  EXPECT_FALSE(Exists(path));
  EXPECT_TRUE(dir.path().empty());
  dir.Remove();
  PrivateDir empty;
  empty.Remove();
}

TEST_F(PrivateDirTest, DoesNotRecurseIntoSubdirectories) {
  std::string path;
  {
    PrivateDir dir;
    Create(&dir);
    path = dir.path();
    ASSERT_EQ(mkdir((path + "/sub").c_str(), 0700), 0);
    WriteFile(path + "/sub/kept");
    WriteFile(path + "/worker.key");
  }
  EXPECT_TRUE(Exists(path + "/sub/kept"));
  EXPECT_FALSE(Exists(path + "/worker.key"));
}

TEST_F(PrivateDirTest, MoveTransfersOwnership) {
  PrivateDir first;
  Create(&first);
  std::string path = first.path();
  {
    PrivateDir second(std::move(first));
    EXPECT_TRUE(first.path().empty());
    EXPECT_EQ(second.path(), path);
    EXPECT_TRUE(Exists(path));
  }
  EXPECT_FALSE(Exists(path));
}

TEST_F(PrivateDirTest, SweepStaleRemovesDirectoryOfADeadRun) {
  pid_t dead = DeadPid();
  ASSERT_EQ(kill(dead, 0), -1);
  std::string leftover = MakeLeftover("fanmap-" + std::to_string(dead) + "-abcdef");
  ASSERT_TRUE(BindSocket(leftover + "/workers"));
  EXPECT_EQ(PrivateDir::SweepStale(parent_), 1u);
  EXPECT_FALSE(Exists(leftover));
}

TEST_F(PrivateDirTest, SweepStaleKeepsADirectoryWhoseSocketSomeoneListensOn) {
  // The pid looks gone (another pid namespace or host sharing the
  // directory), but a run still accepts connections there.
  pid_t dead = DeadPid();
  std::string leftover = MakeLeftover("fanmap-" + std::to_string(dead) + "-abcdef");
  std::string path = leftover + "/workers";
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(address.sun_path));
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  EXPECT_EQ(PrivateDir::SweepStale(parent_), 0u);
  EXPECT_TRUE(Exists(path));
  close(fd);
  EXPECT_EQ(PrivateDir::SweepStale(parent_), 1u) << "once nobody listens, it is swept";
}

TEST_F(PrivateDirTest, SweepStaleKeepsDirectoryOfALiveRun) {
  std::string ours = MakeLeftover("fanmap-" + std::to_string(getpid()) + "-abcdef");
  std::string init = MakeLeftover("fanmap-1-abcdef");
  EXPECT_EQ(PrivateDir::SweepStale(parent_), 0u);
  EXPECT_TRUE(Exists(ours + "/worker.key"));
  EXPECT_TRUE(Exists(init + "/worker.key"));
}

TEST_F(PrivateDirTest, SweepStaleIgnoresSymlinkNamedLikeALeftover) {
  pid_t dead = DeadPid();
  std::string target = MakeLeftover("target");
  std::string link = parent_ + "/fanmap-" + std::to_string(dead) + "-abcdef";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_EQ(PrivateDir::SweepStale(parent_), 0u);
  EXPECT_TRUE(Exists(link));
  EXPECT_TRUE(Exists(target + "/worker.key"));
}

TEST_F(PrivateDirTest, SweepStaleIgnoresOtherNamesAndFiles) {
  std::string dead = std::to_string(DeadPid());
  const char* names[] = {"fanmap-abcdef",  // made by older versions: no pid, left alone
                         "fanmap-0-abcdef", "fanmap--1-abcdef", "fanmap-x1-abcdef",
                         "other-1-abcdef"};
  for (const char* name : names) MakeLeftover(name);
  for (const std::string& name : {"fanmap-" + dead + "-abc", "fanmap-" + dead + "-abcdefg",
                                  "fanmap-" + dead + "-abc.ef", "xfanmap-" + dead + "-abcdef"}) {
    MakeLeftover(name);
  }
  std::string file = parent_ + "/fanmap-" + dead + "-fedcba";
  WriteFile(file);

  EXPECT_EQ(PrivateDir::SweepStale(parent_), 0u);
  for (const char* name : names) EXPECT_TRUE(Exists(parent_ + "/" + name + "/worker.key")) << name;
  EXPECT_TRUE(Exists(parent_ + "/fanmap-" + dead + "-abc/worker.key"));
  EXPECT_TRUE(Exists(file));
}

TEST_F(PrivateDirTest, SweepStaleKeepsAnotherUsersDirectory) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  std::string leftover = MakeLeftover("fanmap-" + std::to_string(DeadPid()) + "-abcdef");
  ASSERT_EQ(chown(leftover.c_str(), 65534, 65534), 0);
  EXPECT_EQ(PrivateDir::SweepStale(parent_), 0u);
  EXPECT_TRUE(Exists(leftover + "/worker.key"));
}

TEST_F(PrivateDirTest, SweepStaleLeavesADirectoryWithASubdirectory) {
  std::string leftover = MakeLeftover("fanmap-" + std::to_string(DeadPid()) + "-abcdef");
  ASSERT_EQ(mkdir((leftover + "/sub").c_str(), 0700), 0);
  EXPECT_EQ(PrivateDir::SweepStale(parent_), 0u);
  EXPECT_TRUE(Exists(leftover + "/sub"));
}

TEST_F(PrivateDirTest, CreateSweepsItsParent) {
  std::string leftover = MakeLeftover("fanmap-" + std::to_string(DeadPid()) + "-abcdef");
  PrivateDir dir;
  Create(&dir);
  EXPECT_EQ(dir.swept(), 1u);
  EXPECT_FALSE(Exists(leftover));
}

TEST_F(PrivateDirTest, FailedCreateLeavesTheTargetAsItWas) {
  PrivateDir dir;
  Create(&dir);
  std::string path = dir.path();
  Status status = PrivateDir::CreateIn(parent_ + "/missing", &dir);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(dir.path(), path);
  EXPECT_TRUE(Exists(path));
}

}  // namespace
}  // namespace fanmap
