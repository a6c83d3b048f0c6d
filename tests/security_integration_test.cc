// Integration tests of who may join a coordinator: CurveZMQ keys, the ZAP
// handler, the refusal to listen beyond loopback without keys, and workers
// joining, leaving and rejoining. Real binaries and sockets on 127.0.0.1.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
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

  // A plain ZeroMQ client without keys, and a worker with an unknown key, which
  // gives up when no job came within its --connect-timeout.
  zmq::context_t context;
  zmq::socket_t plain(context, zmq::socket_type::dealer);
  plain.set(zmq::sockopt::linger, 0);
  plain.set(zmq::sockopt::rcvtimeo, 0);
  plain.connect(endpoint);
  plain.send(zmq::str_buffer("hello?"), zmq::send_flags::dontwait);
  auto stranger = StartWorker(
      "stranger", {"--connect", endpoint, "--curve-secret", Path("stranger.key"), "--server-key",
                   Path("coord.pub"), "--connect-timeout", testing_util::kShortTimeoutS});
  EXPECT_EQ(stranger->Wait(testing_util::kDeadlineS), 1)
      << "an unknown key must never receive a job";
  // Meanwhile (as long as the stranger tried) the client without keys got nothing either.
  zmq::message_t reply;
  EXPECT_FALSE(plain.recv(reply)) << "a client without keys must get nothing";
  EXPECT_NE(ReadFile(Path("stranger.err")).find("no job"), std::string::npos);
  EXPECT_NE(ReadFile(Path("stranger.err")).find("refused our handshake"), std::string::npos)
      << "the refused worker must say why it gets nothing: " << ReadFile(Path("stranger.err"));

  auto good = StartWorker("good", {"--connect", endpoint, "--curve-secret",
                                   Path("workers/good.key"), "--server-key", Path("coord.pub")});
  ASSERT_EQ(coordinator_->Wait(), 0) << ReadFile(Path("err"));
  EXPECT_EQ(good->Wait(testing_util::kDeadlineS), 0) << ReadFile(Path("good.err"));
  auto records = Records(100);
  for (auto& record : records) EXPECT_EQ(record["worker"], "good");
  std::string err = ReadFile(Path("err"));
  EXPECT_NE(err.find("refused key"), std::string::npos) << err;
  EXPECT_NE(err.find("connection(s) from clients whose key is not authorized"), std::string::npos)
      << "the end of the run counts the refusals: " << err;
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
  // The input stays open until the worker has left: it leaves a run still going.
  testing_util::InputFifo in(Path("in"));
  // A long heartbeat: only the worker's BYE can explain a quick hand-back.
  std::string endpoint = StartCoordinator({"-j", "0", "--heartbeat", "600", "--builtin", "sleep:20",
                                           "--slots", "2", "-i", in.path(), "-o", Path("out")});
  in.Write(Seq(0, 299));
  auto leaving = StartWorker("leaving", {"--connect", endpoint});
  auto staying = StartWorker("staying", {"--connect", endpoint});
  // It has joined and is at work.
  ASSERT_FALSE(testing_util::WaitForText(Path("out"), "\"worker\":\"leaving\"").empty())
      << ReadFile(Path("err"));
  kill(leaving->pid(), SIGTERM);
  EXPECT_EQ(leaving->Wait(testing_util::kDeadlineS), 130) << ReadFile(Path("leaving.err"));
  EXPECT_FALSE(testing_util::WaitForText(Path("err"), "worker leaving left").empty())
      << ReadFile(Path("err"));
  in.Close();
  ASSERT_EQ(coordinator_->Wait(120), 0) << ReadFile(Path("err"));
  EXPECT_EQ(staying->Wait(testing_util::kDeadlineS), 0) << ReadFile(Path("staying.err"));
  Records(300);
}

TEST_F(SecurityTest, WorkerDeclaredDeadRejoinsWhenItComesBack) {
  // The input stays open until the worker has joined again: the run outlasts its return.
  testing_util::InputFifo in(Path("in"));
  std::string endpoint =
      StartCoordinator({"-j", "0", "--heartbeat", testing_util::kHeartbeatS, "--builtin",
                        "sleep:10", "-i", in.path(), "-o", Path("out")});
  in.Write(Seq(0, 499));
  auto sleepy = StartWorker("sleepy", {"--connect", endpoint});
  auto steady = StartWorker("steady", {"--connect", endpoint});
  ASSERT_FALSE(testing_util::WaitForText(Path("err"), "worker sleepy joined").empty())
      << ReadFile(Path("err"));
  ASSERT_FALSE(testing_util::WaitForText(Path("err"), "worker steady joined").empty())
      << ReadFile(Path("err"));
  ASSERT_FALSE(testing_util::WaitForText(Path("out"), "\"index\":20,").empty())
      << ReadFile(Path("err"));
  kill(sleepy->pid(), SIGSTOP);
  EXPECT_FALSE(testing_util::WaitForText(Path("err"), "worker sleepy silent for").empty())
      << ReadFile(Path("err"));
  kill(sleepy->pid(), SIGCONT);
  EXPECT_TRUE(testing_util::WaitForCount(Path("err"), "worker sleepy joined", 2))
      << "the worker must join again after being declared dead\n"
      << ReadFile(Path("err")) << ReadFile(Path("sleepy.err"));
  in.Close();
  ASSERT_EQ(coordinator_->Wait(120), 0) << ReadFile(Path("err"));
  Records(500);
  EXPECT_EQ(sleepy->Wait(testing_util::kDeadlineS), 0) << ReadFile(Path("sleepy.err"));
  EXPECT_EQ(steady->Wait(testing_util::kDeadlineS), 0) << ReadFile(Path("steady.err"));
}

}  // namespace
}  // namespace fanmap
