// Integration tests: the real fanmap and fanmap-worker binaries, real ZeroMQ
// sockets, real child processes.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <zmq.hpp>

#include "common/protocol.h"
#include "tests/farm_fixture.h"
#include "tests/farm_test_util.h"

namespace fanmap {
namespace {

using testing_util::FanmapPath;
using testing_util::InputFifo;
using testing_util::Lines;
using testing_util::ParseRecords;
using testing_util::Process;
using testing_util::ReadFile;
using testing_util::RunResult;
using testing_util::Seq;
using testing_util::TempDir;
using testing_util::WorkerPath;

using FarmTest = testing_util::FarmFixture;

TEST_F(FarmTest, EchoKeepsInputOrderAcrossWorkers) {
  RunResult r = Fanmap({"-j", "3", "--builtin", "echo"}, Seq(0, 4999));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(r.out, 5000);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i]["ok"], true);
    EXPECT_EQ(records[i]["result"], std::to_string(i));
  }
  ExpectNoProcessLeft();
}

TEST_F(FarmTest, OrderIsKeptUnderRandomPerItemDelays) {
  // Each item sleeps a pseudo-random 0-40 ms, so results finish out of order.
  std::string input;
  for (int i = 0; i < 120; ++i) input += std::to_string((i * 37) % 41 / 1000.0) + "\n";
  RunResult r =
      Fanmap({"-j", "4", "--slots", "3", "--", "sh", "-c", "sleep $1; echo $1", "sh", "{}"}, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = ParseRecords(r.out, 120);
  auto items = Lines(input);
  for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i]["result"], items[i]);
  ExpectNoProcessLeft();
}

TEST_F(FarmTest, RawOutputIsOneResultPerLine) {
  RunResult r = Fanmap({"-j", "2", "--builtin", "sleep:1", "--output-format", "raw"}, Seq(1, 300));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, Seq(1, 300));
}

TEST_F(FarmTest, UnorderedWritesEveryRecordOnce) {
  RunResult r = Fanmap({"-j", "3", "--unordered", "--builtin", "echo"}, Seq(0, 2999));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<int> seen;
  for (const std::string& line : Lines(r.out)) {
    auto record = nlohmann::json::parse(line);
    EXPECT_TRUE(seen.insert(record["index"].get<int>()).second) << "duplicate " << line;
    EXPECT_EQ(record["result"], std::to_string(record["index"].get<int>()));
  }
  EXPECT_EQ(seen.size(), 3000u);
}

TEST_F(FarmTest, ExecFailureIsARecordWithExitCodeAndStderr) {
  RunResult r = Fanmap({"-j", "2", "--", "sh", "-c",
                        "if [ $1 = 3 ]; then echo broken >&2; exit 7; fi; echo ok$1", "sh"},
                       Seq(0, 5));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(r.out, 6);
  for (int i = 0; i < 6; ++i) {
    if (i == 3) continue;
    EXPECT_EQ(records[i]["ok"], true);
    EXPECT_EQ(records[i]["result"], "ok" + std::to_string(i));
  }
  EXPECT_EQ(records[3]["ok"], false);
  EXPECT_EQ(records[3]["exit_code"], 7);
  EXPECT_EQ(records[3]["stderr"], "broken");
  EXPECT_NE(records[3]["error"].get<std::string>().find("7"), std::string::npos);
  EXPECT_NE(r.err.find("1 of 6 item(s) failed"), std::string::npos) << r.err;
  ExpectNoProcessLeft();
}

TEST_F(FarmTest, CommandNotFoundFailsEveryItemWithAClearError) {
  RunResult r = Fanmap({"-j", "1", "--", "no-such-command-fanmap"}, "a\nb\n");
  EXPECT_EQ(r.exit_code, 1);
  auto records = ParseRecords(r.out, 2);
  for (auto& record : records) {
    EXPECT_EQ(record["ok"], false);
    EXPECT_NE(record["error"].get<std::string>().find("no-such-command-fanmap"), std::string::npos);
  }
}

TEST_F(FarmTest, BadJsonlLineIsAnErrorRecordNamingTheLine) {
  std::string input = "{\"a\":1}\n{\"a\":\n[1,2]\n\"text\"\n";
  RunResult r = Fanmap({"-j", "2", "--input-format", "jsonl", "--builtin", "echo"}, input);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto records = ParseRecords(r.out, 4);
  EXPECT_EQ(records[0]["result"], "{\"a\":1}");
  EXPECT_EQ(records[1]["ok"], false);
  std::string error = records[1]["error"];
  EXPECT_NE(error.find("line 2"), std::string::npos) << error;
  EXPECT_NE(error.find("invalid JSON"), std::string::npos) << error;
  EXPECT_EQ(records[2]["result"], "[1,2]");
  EXPECT_EQ(records[3]["result"], "\"text\"");
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
}

TEST_F(FarmTest, FailedBuiltinItemsGiveExitStatusOne) {
  RunResult r = Fanmap({"-j", "2", "--builtin", "fail-on:7"}, Seq(0, 9));
  EXPECT_EQ(r.exit_code, 1);
  auto records = ParseRecords(r.out, 10);
  EXPECT_EQ(records[7]["ok"], false);
  EXPECT_EQ(records[8]["ok"], true);
}

TEST_F(FarmTest, EmptyInputWritesNothingAndSucceeds) {
  RunResult r = Fanmap({"-j", "2", "--builtin", "echo"}, "");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  ExpectNoProcessLeft();
}

TEST_F(FarmTest, UsageErrorsExitTwoWithAMessage) {
  RunResult none = Fanmap({"-j", "1"}, "x\n");
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("nothing to run"), std::string::npos) << none.err;
  RunResult both = Fanmap({"--builtin", "echo", "--", "cat"}, "x\n");
  EXPECT_EQ(both.exit_code, 2);
  RunResult bad_flag = Fanmap({"--no-such-flag", "--builtin", "echo"}, "x\n");
  EXPECT_EQ(bad_flag.exit_code, 2);
  RunResult missing = Fanmap({"-i", "/no/such/file", "--builtin", "echo"}, "");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("/no/such/file"), std::string::npos) << missing.err;
  RunResult bad_builtin = Fanmap({"-j", "1", "--builtin", "nope"}, "x\n");
  EXPECT_EQ(bad_builtin.exit_code, 2);
  EXPECT_NE(bad_builtin.err.find("unknown builtin"), std::string::npos) << bad_builtin.err;
  ExpectNoProcessLeft();
}

TEST_F(FarmTest, HelpExitsZero) {
  RunResult r = Fanmap({"--help"}, "");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--builtin"), std::string::npos);
}

TEST_F(FarmTest, KilledWorkerLosesNoItem) {
  TempDir dir;
  // The run cannot end before the input does: the kill always hits a worker of a run
  // still going.
  InputFifo in(dir.File("in"));
  Process fanmap({FanmapPath(), "-j", "2", "--builtin", "sleep:10", "-i", in.path()}, "",
                 dir.File("out"), dir.File("err"), Env());
  in.Write(Seq(0, 399));
  // Kill one worker once the run is under way.
  std::vector<pid_t> workers;
  ASSERT_TRUE(testing_util::WaitUntil([&] {
    workers = testing_util::ProcessesNamed(token_, "fanmap-worker");
    return workers.size() >= 2;
  })) << ReadFile(dir.File("err"));
  ASSERT_FALSE(testing_util::WaitForText(dir.File("out"), "\"index\":20,").empty())
      << ReadFile(dir.File("err"));
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);
  in.Close();
  ASSERT_EQ(fanmap.Wait(), 0) << ReadFile(dir.File("err"));
  auto records = ParseRecords(ReadFile(dir.File("out")), 400);
  for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i]["result"], std::to_string(i));
  EXPECT_NE(ReadFile(dir.File("err")).find("killed by signal 9"), std::string::npos)
      << ReadFile(dir.File("err"));
  ExpectNoProcessLeft();
}

TEST_F(FarmTest, TwoWorkersJoinByConnect) {
  TempDir dir;
  // The run lasts until both workers have joined, however slowly they start.
  InputFifo in(dir.File("in"));
  Process fanmap({FanmapPath(), "-j", "0", "--listen", "tcp://127.0.0.1:*", "--builtin", "sleep:5",
                  "-i", in.path()},
                 "", dir.File("out"), dir.File("err"), Env());
  in.Write(Seq(0, 199));
  std::string endpoint = testing_util::ListeningEndpoint(dir.File("err"));
  ASSERT_FALSE(endpoint.empty()) << ReadFile(dir.File("err"));
  Process w1({WorkerPath(), "--connect", endpoint, "--name", "first"}, "", dir.File("w1.out"),
             dir.File("w1.err"), Env());
  Process w2({WorkerPath(), "--connect", endpoint, "--name", "second"}, "", dir.File("w2.out"),
             dir.File("w2.err"), Env());
  EXPECT_FALSE(testing_util::WaitForText(dir.File("err"), "worker first joined").empty());
  EXPECT_FALSE(testing_util::WaitForText(dir.File("err"), "worker second joined").empty());
  in.Close();
  ASSERT_EQ(fanmap.Wait(), 0) << ReadFile(dir.File("err"));
  ParseRecords(ReadFile(dir.File("out")), 200);
  std::string err = ReadFile(dir.File("err"));
  EXPECT_NE(err.find("worker first joined"), std::string::npos) << err;
  EXPECT_NE(err.find("worker second joined"), std::string::npos) << err;
  // The run's end stops every worker.
  EXPECT_EQ(w1.Wait(testing_util::kDeadlineS), 0) << ReadFile(dir.File("w1.err")) << err;
  EXPECT_EQ(w2.Wait(testing_util::kDeadlineS), 0) << ReadFile(dir.File("w2.err")) << err;
  ExpectNoProcessLeft();
}

// A peer that speaks raw ZeroMQ to a listening coordinator.
class RawPeer {
 public:
  explicit RawPeer(const std::string& endpoint) : socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvtimeo, testing_util::kDeadlineS * 1000);
    socket_.connect(endpoint);
  }
  void Send(const std::string& frame) { socket_.send(zmq::buffer(frame), zmq::send_flags::none); }
  bool Receive(Message* message) {
    zmq::message_t frame;
    if (!socket_.recv(frame)) return false;
    DecodeMessage(frame.data(), frame.size(), message);
    return true;
  }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
};

TEST_F(FarmTest, GarbageFramesAndOtherVersionsAreRefusedWithoutHarm) {
  TempDir dir;
  // The run lasts until the coordinator has handled the garbage and the old version.
  InputFifo in(dir.File("in"));
  Process fanmap({FanmapPath(), "-j", "1", "--listen", "tcp://127.0.0.1:*", "--builtin", "sleep:2",
                  "-i", in.path()},
                 "", dir.File("out"), dir.File("err"), Env());
  in.Write(Seq(0, 299));
  std::string endpoint = testing_util::ListeningEndpoint(dir.File("err"));
  ASSERT_FALSE(endpoint.empty()) << ReadFile(dir.File("err"));

  RawPeer garbage(endpoint);
  garbage.Send("");
  garbage.Send(std::string("\xdd\xff\xff\xff\xff", 5));
  garbage.Send("GET / HTTP/1.1\r\n\r\n");
  garbage.Send(EncodeHeartbeat() + "trailing");

  RawPeer old_version(endpoint);
  std::string hello = EncodeHello(Hello{1, "old", "h", 1});
  hello[1] = 9;  // claim protocol version 9
  old_version.Send(hello);
  Message reply;
  ASSERT_TRUE(old_version.Receive(&reply));
  EXPECT_EQ(reply.type, MessageType::kRefuse);
  EXPECT_NE(reply.reason.find("version 9"), std::string::npos) << reply.reason;
  EXPECT_FALSE(testing_util::WaitForText(dir.File("err"), "dropped a frame").empty())
      << ReadFile(dir.File("err"));
  in.Close();

  ASSERT_EQ(fanmap.Wait(), 0) << ReadFile(dir.File("err"));
  ParseRecords(ReadFile(dir.File("out")), 300);
  std::string err = ReadFile(dir.File("err"));
  EXPECT_NE(err.find("refused a worker"), std::string::npos) << err;
  EXPECT_NE(err.find("bad frame"), std::string::npos) << err;
  ExpectNoProcessLeft();
}

TEST_F(FarmTest, HttpJobsCarryADefaultTimeoutAndTheApiKeyOnlyWhenAsked) {
  // What a worker is told to do, read off the wire by a peer that says HELLO:
  // a request to a server that never answers must not hang the run, and a
  // plain --http job carries no API key.
  TempDir dir;
  InputFifo in(dir.File("in"));
  Process fanmap({FanmapPath(), "-j", "0", "--listen", "tcp://127.0.0.1:*", "--http",
                  "http://127.0.0.1:9/x", "-i", in.path()},
                 "", dir.File("out"), dir.File("err"),
                 {"FANMAP_TEST_TOKEN=" + token_, "OPENAI_API_KEY=sk-not-for-you"});
  std::string endpoint = testing_util::ListeningEndpoint(dir.File("err"));
  ASSERT_FALSE(endpoint.empty()) << ReadFile(dir.File("err"));
  RawPeer peer(endpoint);
  peer.Send(EncodeHello(Hello{1, "reader", "h", 1}));
  Message job;
  ASSERT_TRUE(peer.Receive(&job));
  ASSERT_EQ(job.type, MessageType::kJob);
  EXPECT_EQ(job.job.options.at("timeout_ms"), "600000");
  EXPECT_EQ(job.job.options.count("api_key"), 0u);
  EXPECT_EQ(job.job.run_id.size(), 32u);
  in.Close();
  kill(fanmap.pid(), SIGTERM);
  fanmap.Wait();
}

TEST_F(FarmTest, IdleRemoteWorkersAreReleasedAtTheTailOfTheRun) {
  // Three one-slot workers, three items; the last one runs until the test
  // lets it go. Once the input is over and the quick items are done, a
  // worker with nothing to do is told to stop while the run goes on; one
  // stays, so that the running item could still be retried.
  TempDir dir;
  InputFifo in(dir.File("in"));
  std::string gate = dir.File("gate");
  std::string script =
      "[ $0 = slow ] && { while [ ! -e " + gate + " ]; do sleep 0.05; done; }; echo $0";
  Process fanmap({FanmapPath(), "-j", "0", "--listen", "tcp://127.0.0.1:*", "-i", in.path(), "--",
                  "sh", "-c", script},
                 "", dir.File("out"), dir.File("err"), Env());
  std::string endpoint = testing_util::ListeningEndpoint(dir.File("err"));
  ASSERT_FALSE(endpoint.empty()) << ReadFile(dir.File("err"));
  std::vector<std::unique_ptr<Process>> workers;
  for (const char* name : {"w1", "w2", "w3"}) {
    workers.push_back(std::make_unique<Process>(
        std::vector<std::string>{WorkerPath(), "--connect", endpoint, "--name", name, "--slots",
                                 "1"},
        "", dir.File(std::string(name) + ".out"), dir.File(std::string(name) + ".err"), Env()));
    EXPECT_FALSE(
        testing_util::WaitForText(dir.File("err"), "worker " + std::string(name) + " joined")
            .empty());
  }
  in.Write("quick1\nquick2\nslow\n");
  in.Close();
  EXPECT_FALSE(testing_util::WaitForText(dir.File("out"), "quick2").empty());
  // Wait (on the condition, with a deadline) until a worker has left.
  size_t exited = 0;
  for (int i = 0; i < testing_util::kDeadlineS * 100 && exited == 0; ++i) {
    for (auto& w : workers) exited += w->Exited() ? 1 : 0;
    if (exited == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(exited, 1u) << "one idle worker released, one kept for retries";
  EXPECT_FALSE(fanmap.Exited()) << "the slow item still runs";
  testing_util::WriteFile(gate, "");
  ASSERT_EQ(fanmap.Wait(), 0) << ReadFile(dir.File("err"));
  auto records = ParseRecords(ReadFile(dir.File("out")), 3);
  EXPECT_EQ(records[2]["result"], "slow");
  for (auto& w : workers) EXPECT_EQ(w->Wait(testing_util::kDeadlineS), 0);
  ExpectNoProcessLeft();
}

}  // namespace
}  // namespace fanmap
