// Integration tests of who may join a coordinator: CurveZMQ keys, the ZAP
// handler, the refusal to listen beyond loopback without keys, and workers
// joining, leaving and rejoining. Real binaries and sockets on 127.0.0.1.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <thread>
#include <zmq.hpp>

#include "tests/farm_fixture.h"
#include "tests/farm_test_util.h"

namespace fanmap {
namespace {

using testing_util::FanmapPath;
using testing_util::Lines;
using testing_util::Process;
using testing_util::ReadFile;
using testing_util::RunResult;
using testing_util::Seq;
using testing_util::TempDir;
using testing_util::WorkerPath;
using testing_util::WriteFile;

class SecurityTest : public testing_util::FarmFixture {
 protected:
  std::string Path(const std::string& name) { return dir_.File(name); }

  // `fanmap keygen NAME` in the test's directory.
  void Keygen(const std::string& name) {
    RunResult r = testing_util::Run({FanmapPath(), "keygen", Path(name)}, "", Env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // Starts a coordinator listening on a free loopback port; returns the
  // endpoint it reports.
  std::string StartCoordinator(std::vector<std::string> args) {
    args.insert(args.begin(), {FanmapPath(), "--listen", "tcp://127.0.0.1:*"});
    coordinator_ = std::make_unique<Process>(args, "", Path("out"), Path("err"), Env());
    std::string endpoint = testing_util::ListeningEndpoint(Path("err"));
    EXPECT_FALSE(endpoint.empty()) << ReadFile(Path("err"));
    return endpoint;
  }

  std::unique_ptr<Process> StartWorker(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {WorkerPath(), "--name", name});
    return std::make_unique<Process>(args, "", Path(name + ".out"), Path(name + ".err"), Env());
  }

  // The records in the coordinator's output (see testing_util::ParseRecords).
  std::vector<nlohmann::json> Records(size_t expected) {
    return testing_util::ParseRecords(ReadFile(Path("out")), expected);
  }

  TempDir dir_;
  std::unique_ptr<Process> coordinator_;
};

TEST_F(SecurityTest, KeygenWritesAPrivateSecretAndAPublicKey) {
  Keygen("coord");
  struct stat st;
  ASSERT_EQ(stat(Path("coord.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadFile(Path("coord.pub")).size(), 41u);  // 40 Z85 characters and "\n"
  RunResult again = testing_util::Run({FanmapPath(), "keygen", Path("coord")}, "", Env());
  EXPECT_EQ(again.exit_code, 2) << "keygen must not overwrite keys";
}

TEST_F(SecurityTest, OnlyAuthorizedWorkersJoinACurveCoordinator) {
  Keygen("coord");
  mkdir(Path("workers").c_str(), 0755);
  Keygen("workers/good");
  Keygen("stranger");
  WriteFile(Path("in"), Seq(0, 99));
  std::string endpoint = StartCoordinator({"-j", "0", "--curve-secret", Path("coord.key"),
                                           "--authorized-keys", Path("workers"), "--builtin",
                                           "sleep:20", "-i", Path("in"), "-o", Path("out")});
  ASSERT_FALSE(endpoint.empty());

  // A worker with an unknown key, and a plain ZeroMQ client without keys.
  auto stranger =
      StartWorker("stranger", {"--connect", endpoint, "--curve-secret", Path("stranger.key"),
                               "--server-key", Path("coord.pub"), "--connect-timeout", "2"});
  zmq::context_t context;
  zmq::socket_t plain(context, zmq::socket_type::dealer);
  plain.set(zmq::sockopt::linger, 0);
  plain.set(zmq::sockopt::rcvtimeo, 1500);
  plain.connect(endpoint);
  plain.send(zmq::str_buffer("hello?"), zmq::send_flags::dontwait);
  zmq::message_t reply;
  EXPECT_FALSE(plain.recv(reply)) << "a client without keys must get nothing";
  EXPECT_EQ(stranger->Wait(30), 1) << "an unknown key must never receive a job";
  EXPECT_NE(ReadFile(Path("stranger.err")).find("no job"), std::string::npos);
  EXPECT_NE(ReadFile(Path("stranger.err")).find("refused our handshake"), std::string::npos)
      << "the refused worker must say why it gets nothing: " << ReadFile(Path("stranger.err"));

  auto good = StartWorker("good", {"--connect", endpoint, "--curve-secret",
                                   Path("workers/good.key"), "--server-key", Path("coord.pub")});
  ASSERT_EQ(coordinator_->Wait(), 0) << ReadFile(Path("err"));
  EXPECT_EQ(good->Wait(30), 0) << ReadFile(Path("good.err"));
  auto records = Records(100);
  for (auto& record : records) EXPECT_EQ(record["worker"], "good");
  std::string err = ReadFile(Path("err"));
  EXPECT_NE(err.find("refused key"), std::string::npos) << err;
  EXPECT_NE(err.find("failed the CurveZMQ handshake"), std::string::npos) << err;
  EXPECT_NE(err.find("worker good joined"), std::string::npos) << err;
  EXPECT_EQ(err.find("worker stranger joined"), std::string::npos) << err;
}

TEST_F(SecurityTest, LocalWorkersJoinACurveCoordinatorWithTheirOwnKeys) {
  Keygen("coord");
  Keygen("w");
  RunResult r = testing_util::Run(
      {FanmapPath(), "-j", "2", "--listen", "tcp://127.0.0.1:*", "--curve-secret",
       Path("coord.key"), "--authorized-keys", Path("w.pub"), "--builtin", "echo"},
      Seq(0, 499), Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 500u);
}

TEST_F(SecurityTest, ListeningBeyondLoopbackNeedsKeysOrInsecure) {
  RunResult refused = testing_util::Run(
      {FanmapPath(), "-j", "1", "--listen", "tcp://0.0.0.0:*", "--builtin", "echo"}, "x\n", Env());
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("without keys"), std::string::npos) << refused.err;
  RunResult insecure = testing_util::Run(
      {FanmapPath(), "-j", "1", "--listen", "tcp://0.0.0.0:*", "--insecure", "--builtin", "echo"},
      "x\n", Env());
  EXPECT_EQ(insecure.exit_code, 0) << insecure.err;
  RunResult half = testing_util::Run(
      {FanmapPath(), "-j", "1", "--authorized-keys", Path("none"), "--builtin", "echo"}, "x\n",
      Env());
  EXPECT_EQ(half.exit_code, 2);
}

TEST_F(SecurityTest, WorkerStoppedBySignalHandsItsTasksBackAtOnce) {
  WriteFile(Path("in"), Seq(0, 299));
  // A long heartbeat: only the worker's BYE can explain a quick hand-back.
  std::string endpoint = StartCoordinator({"-j", "0", "--heartbeat", "600", "--builtin", "sleep:20",
                                           "--slots", "2", "-i", Path("in"), "-o", Path("out")});
  auto leaving = StartWorker("leaving", {"--connect", endpoint});
  auto staying = StartWorker("staying", {"--connect", endpoint});
  testing_util::WaitForText(Path("out"), "\"index\":20,");
  kill(leaving->pid(), SIGTERM);
  EXPECT_EQ(leaving->Wait(30), 130);
  ASSERT_EQ(coordinator_->Wait(120), 0) << ReadFile(Path("err"));
  staying->Wait(30);
  Records(300);
  EXPECT_NE(ReadFile(Path("err")).find("worker leaving left"), std::string::npos)
      << ReadFile(Path("err"));
}

TEST_F(SecurityTest, WorkerDeclaredDeadRejoinsWhenItComesBack) {
  WriteFile(Path("in"), Seq(0, 499));
  std::string endpoint = StartCoordinator({"-j", "0", "--heartbeat", "1", "--builtin", "sleep:10",
                                           "-i", Path("in"), "-o", Path("out")});
  auto sleepy = StartWorker("sleepy", {"--connect", endpoint});
  auto steady = StartWorker("steady", {"--connect", endpoint});
  testing_util::WaitForText(Path("out"), "\"index\":20,");
  kill(sleepy->pid(), SIGSTOP);
  testing_util::WaitForText(Path("err"), "sleepy silent for");
  kill(sleepy->pid(), SIGCONT);
  std::string err;
  for (int i = 0; i < 500; ++i) {
    err = ReadFile(Path("err"));
    size_t first = err.find("worker sleepy joined");
    if (first != std::string::npos &&
        err.find("worker sleepy joined", first + 1) != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(coordinator_->Wait(120), 0) << ReadFile(Path("err"));
  Records(500);
  err = ReadFile(Path("err"));
  size_t first = err.find("worker sleepy joined");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_NE(err.find("worker sleepy joined", first + 1), std::string::npos)
      << "the worker must join again after being declared dead\n"
      << err << ReadFile(Path("sleepy.err"));
  EXPECT_EQ(sleepy->Wait(30), 0) << ReadFile(Path("sleepy.err"));
  EXPECT_EQ(steady->Wait(30), 0);
}

}  // namespace
}  // namespace fanmap
