#include "coordinator/status_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"

namespace fanmap {
namespace {

// How long the trickling client keeps at it: far longer than the grace.
constexpr int64_t kTrickleMs = 60000;

TEST(ParseStatusAddressTest, AcceptsHostAndPort) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(ParseStatusAddress("127.0.0.1:8080", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(ParseStatusAddress("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
  ASSERT_TRUE(ParseStatusAddress("localhost:65535", &host, &port).ok());
  EXPECT_EQ(host, "localhost");
  EXPECT_EQ(port, 65535);
}

TEST(ParseStatusAddressTest, RefusesWhatIsNotHostColonPortNamingTheText) {
  for (const char* bad : {"8080", ":8080", "host:", "host:65536", "host:-1", "host:8x", "::1:80",
                          "host:123456", ""}) {
    std::string host;
    int port;
    Status status = ParseStatusAddress(bad, &host, &port);
    EXPECT_FALSE(status.ok()) << bad;
    EXPECT_NE(status.message().find(std::string("'") + bad + "'"), std::string::npos)
        << status.message();
  }
}

class StatusServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status started = StatusServer::Start("127.0.0.1:0", &server_);
    ASSERT_TRUE(started.ok()) << started.message();
    std::string address = server_->address();
    port_ = std::stoi(address.substr(address.rfind(':') + 1));
  }

  httplib::Result Get(const std::string& path) {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(30);
    return client.Get(path.c_str());
  }

  std::unique_ptr<StatusServer> server_;
  int port_ = 0;
};

TEST_F(StatusServerTest, BindsAFreePortWhenAskedForPortZero) {
  EXPECT_EQ(server_->address().rfind("127.0.0.1:", 0), 0u);
  EXPECT_GT(port_, 0);
}

TEST_F(StatusServerTest, ServesTheLatestSnapshotAsJsonAndMetrics) {
  auto empty = Get("/status");
  ASSERT_TRUE(empty) << httplib::to_string(empty.error());
  EXPECT_EQ(empty->status, 200);
  EXPECT_EQ(empty->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(nlohmann::json::parse(empty->body)["workers"].size(), 0u);

  FarmSnapshot snapshot;
  snapshot.items_done = 42;
  WorkerView w;
  w.id = 7;
  w.name = "w7";
  w.host = "node7";
  w.tasks_done = 42;
  snapshot.workers.push_back(w);
  server_->Publish(snapshot, NowMicros());
  EXPECT_EQ(server_->Latest()->items_done, 42u);

  auto status = Get("/status");
  ASSERT_TRUE(status);
  nlohmann::json j = nlohmann::json::parse(status->body);
  EXPECT_EQ(j["items"]["done"], 42);
  ASSERT_EQ(j["workers"].size(), 1u);
  EXPECT_EQ(j["workers"][0]["name"], "w7");
  EXPECT_EQ(j["workers"][0]["host"], "node7");

  auto metrics = Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(metrics->body.find("\nfanmap_items_done_total 42\n"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find(
                "fanmap_worker_tasks_done_total{id=\"7\",worker=\"w7\",host=\"node7\"} 42"),
            std::string::npos);
}

TEST_F(StatusServerTest, ServesAPageThatLoadsNothingFromElsewhere) {
  auto page = Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("fetch(\"status\""), std::string::npos);
  EXPECT_EQ(page->body.find("http://"), std::string::npos);
  EXPECT_EQ(page->body.find("https://"), std::string::npos);
  EXPECT_EQ(page->body.find("innerHTML"), std::string::npos) << "peer text is set as textContent";
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'none'"),
            std::string::npos);
}

TEST_F(StatusServerTest, AnswersOnlyItsOwnPaths) {
  auto missing = Get("/etc/passwd");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  httplib::Client client("127.0.0.1", port_);
  auto post = client.Post("/status", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_NE(post->status, 200);
}

// With SO_REUSEPORT (cpp-httplib's default) a second server would bind the
// same port and take a share of the requests.
TEST_F(StatusServerTest, APortInUseIsAnErrorNamingTheAddress) {
  std::string address = server_->address();
  std::unique_ptr<StatusServer> second;
  Status status = StatusServer::Start(address, &second);
  EXPECT_FALSE(status.ok()) << "a second server shares " << address;
  EXPECT_EQ(second, nullptr);
  EXPECT_NE(status.message().find(address), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("in use"), std::string::npos) << status.message();
}

// A request in progress is waited for only so long: a client that trickles
// its headers (a byte now and then, each read within the read timeout) must
// not hold the run's end.
TEST_F(StatusServerTest, AClientThatTricklesARequestDoesNotHoldTheEnd) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port_));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::atomic<bool> stop{false};
  std::atomic<bool> trickling{true};
  std::mutex mu;
  std::condition_variable started;
  bool first_sent = false;
  std::thread trickler([&] {
    const std::string kStart = "GET /status HTTP/1.1\r\n";
    bool ok = send(fd, kStart.data(), kStart.size(), MSG_NOSIGNAL) > 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      first_sent = true;
    }
    started.notify_all();
    int64_t give_up = NowMillis() + kTrickleMs;
    while (ok && !stop && NowMillis() < give_up) {
      ok = send(fd, "X-A: b\r\n", 8, MSG_NOSIGNAL) > 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    trickling = false;
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    started.wait(lock, [&] { return first_sent; });
  }
  // The server has accepted the connection once a plain request after it is
  // answered.
  ASSERT_TRUE(Get("/status"));
  server_.reset();
  EXPECT_TRUE(trickling) << "the server waited for the trickling client";
  stop = true;
  trickler.join();
  close(fd);
}

// A connected socket to the server, with `timeout_s` as a failure bound on
// every send and recv.
int ConnectTo(int port, int timeout_s) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval timeout{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// The process's peak resident memory (VmHWM), in KiB.
int64_t PeakRssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// A header line that never ends must not grow the server's memory with it:
// the server refuses the request and closes the connection after a few KiB,
// instead of reading (and keeping) all of it.
TEST_F(StatusServerTest, AHugeHeaderIsRefusedWithTheServersMemoryBounded) {
  constexpr size_t kHugeBytes = size_t{64} << 20;   // what the client tries to send
  constexpr int64_t kBoundKib = int64_t{16} << 10;  // generous: the server keeps ~8 KiB
  std::ofstream("/proc/self/clear_refs") << "5";    // resets VmHWM (ignored if refused)
  int64_t peak_before = PeakRssKib();
  ASSERT_GT(peak_before, 0);

  int fd = ConnectTo(port_, 30);
  ASSERT_GE(fd, 0);
  const std::string start = "GET /status HTTP/1.1\r\nHost: x\r\nX-A: ";
  ASSERT_EQ(send(fd, start.data(), start.size(), MSG_NOSIGNAL), static_cast<ssize_t>(start.size()));
  const std::string chunk(64 << 10, 'a');  // reused: the client's memory stays flat
  size_t sent = 0;
  int send_error = 0;
  while (sent < kHugeBytes) {
    ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      send_error = errno;
      break;
    }
    sent += static_cast<size_t>(n);
  }
  EXPECT_LT(sent, kHugeBytes) << "the server read a 64 MiB header line";
  EXPECT_TRUE(send_error == EPIPE || send_error == ECONNRESET)
      << "the server neither read on nor closed: " << strerror(send_error);
  // Whatever it answered (431, or a reset), the server has closed its end.
  char buffer[512];
  ssize_t got;
  while ((got = recv(fd, buffer, sizeof buffer, 0)) > 0) {
  }
  EXPECT_TRUE(got == 0 || errno == ECONNRESET) << "still open: " << strerror(errno);
  close(fd);

  int64_t growth = PeakRssKib() - peak_before;
  EXPECT_LT(growth, kBoundKib) << "the peak RSS grew by " << growth << " KiB";
  auto after = Get("/status");  // and the view still answers
  ASSERT_TRUE(after) << httplib::to_string(after.error());
  EXPECT_EQ(after->status, 200);
}

// Clients that trickle their requests (a byte well within every read
// timeout) get a deadline for the whole request, so they cannot hold the
// server's connections: a plain request gets its answer behind them.
TEST_F(StatusServerTest, SlowClientsDoNotStarveTheView) {
  // More than the server keeps open at once: the last ones wait for the
  // first ones' deadlines.
  constexpr int kSlowClients = StatusServer::kMaxConnections + 4;
  constexpr int64_t kAnswerBoundMs = 25000;  // generous: a few deadlines of ~2 s
  std::vector<int> slow;
  for (int i = 0; i < kSlowClients; ++i) {
    int fd = ConnectTo(port_, 30);
    ASSERT_GE(fd, 0);
    const std::string start = "GET /status HTTP/1.1\r\n";
    ASSERT_GT(send(fd, start.data(), start.size(), MSG_NOSIGNAL), 0);
    slow.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    int64_t give_up = NowMillis() + kTrickleMs;
    while (!stop && NowMillis() < give_up) {
      for (int fd : slow) (void)send(fd, "X", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the pace, not a wait
    }
  });
  int64_t start_ms = NowMillis();
  httplib::Client client("127.0.0.1", port_);
  client.set_read_timeout(kTrickleMs / 1000);
  auto answer = client.Get("/status");
  int64_t took_ms = NowMillis() - start_ms;
  stop = true;
  trickler.join();
  for (int fd : slow) close(fd);
  ASSERT_TRUE(answer) << httplib::to_string(answer.error()) << " after " << took_ms << " ms";
  EXPECT_EQ(answer->status, 200);
  EXPECT_LT(took_ms, kAnswerBoundMs);
}

TEST(StatusServerStartTest, AnAddressNoInterfaceHasIsAnError) {
  std::unique_ptr<StatusServer> server;
  Status status = StatusServer::Start("192.0.2.1:0", &server);  // TEST-NET-1: not ours
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("192.0.2.1:0"), std::string::npos) << status.message();
}

TEST_F(StatusServerTest, PublishesEveryQuarterSecond) {
  int64_t now = 1000000;
  server_->Publish(FarmSnapshot(), now);
  EXPECT_FALSE(server_->Due(now + StatusServer::kPublishEveryUs - 1));
  EXPECT_TRUE(server_->Due(now + StatusServer::kPublishEveryUs));
}

// Signals must reach the coordinator's signalfd: no thread of the server may
// take one (SIGINT's default action there would kill the run at once).
TEST_F(StatusServerTest, TheServersThreadsBlockEverySignal) {
  ASSERT_TRUE(Get("/status"));  // the server's thread exists by now
  DIR* tasks = opendir("/proc/self/task");
  ASSERT_NE(tasks, nullptr);
  std::string main_tid = std::to_string(getpid());
  int others = 0;
  while (dirent* entry = readdir(tasks)) {
    std::string tid = entry->d_name;
    if (tid == "." || tid == ".." || tid == main_tid) continue;
    std::ifstream status("/proc/self/task/" + tid + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("SigBlk:", 0) != 0) continue;
      unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE}) {
        EXPECT_TRUE(mask & (1ull << (sig - 1))) << "thread " << tid << " takes signal " << sig;
      }
      ++others;
    }
  }
  closedir(tasks);
  EXPECT_GE(others, 1) << "the server's thread";
}

}  // namespace
}  // namespace fanmap
