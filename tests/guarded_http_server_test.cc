#include "coordinator/guarded_http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "common/clock.h"

namespace fanmap {
namespace {

// A generous failure bound for anything that should take milliseconds.
constexpr int64_t kBoundMs = 30000;

class SocketPair {
 public:
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_), 0); }
  ~SocketPair() {
    close(fds_[0]);
    if (fds_[1] >= 0) close(fds_[1]);
  }
  int server() const { return fds_[0]; }
  void Send(const std::string& text) {
    ASSERT_EQ(send(fds_[1], text.data(), text.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(text.size()));
  }
  void CloseClient() {
    close(fds_[1]);
    fds_[1] = -1;
  }

 private:
  int fds_[2] = {-1, -1};
};

TEST(ReadRequestHeadTest, EndsAtTheEmptyLineEvenAcrossReads) {
  SocketPair pair;
  std::string head;
  std::thread client([&] {
    pair.Send("GET / HTTP/1.1\r\nHost: x\r\n\r");
    pair.Send("\nrest");
  });
  EXPECT_EQ(ReadRequestHead(pair.server(), 8192, NowMillis() + kBoundMs, &head),
            HeadRead::kComplete);
  client.join();
  EXPECT_EQ(head.rfind("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0), 0u) << head;
}

TEST(ReadRequestHeadTest, StopsAtTheCap) {
  SocketPair pair;
  pair.Send("GET / HTTP/1.1\r\nX-A: " + std::string(10000, 'a'));
  std::string head;
  EXPECT_EQ(ReadRequestHead(pair.server(), 100, NowMillis() + kBoundMs, &head),
            HeadRead::kTooLarge);
  EXPECT_EQ(head.size(), 100u);
}

TEST(ReadRequestHeadTest, StopsAtTheDeadline) {
  SocketPair pair;
  pair.Send("GET / HTTP/1.1\r\n");
  std::string head;
  EXPECT_EQ(ReadRequestHead(pair.server(), 8192, NowMillis() + 50, &head), HeadRead::kTooSlow);
  EXPECT_EQ(head, "GET / HTTP/1.1\r\n");
}

TEST(ReadRequestHeadTest, ReportsAClientThatCloses) {
  SocketPair pair;
  pair.Send("GET / HTTP/1.1\r\n");
  pair.CloseClient();
  std::string head;
  EXPECT_EQ(ReadRequestHead(pair.server(), 8192, NowMillis() + kBoundMs, &head), HeadRead::kClosed);
}

class GuardedHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Get("/", [](const httplib::Request&, httplib::Response& response) {
      response.set_content("hello", "text/plain");
    });
    server_.Post("/", [](const httplib::Request&, httplib::Response& response) {
      response.set_content("posted", "text/plain");
    });
    server_.set_payload_max_length(0);
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      ended_ = true;
    });
  }
  void TearDown() override {
    if (!thread_.joinable()) return;
    // stop() does nothing before the server runs.
    while (!server_.is_running() && !ended_) std::this_thread::yield();
    server_.stop();
    thread_.join();
  }

  // Sends `request` on a new connection and returns all the server answers
  // before it closes.
  std::string Exchange(const std::string& request) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval timeout{kBoundMs / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    std::string answer;
    char buffer[4096];
    ssize_t n;
    while ((n = recv(fd, buffer, sizeof buffer, 0)) > 0) answer.append(buffer, n);
    close(fd);
    return answer;
  }

  GuardedHttpServer server_;
  std::thread thread_;
  std::atomic<bool> ended_{false};
  int port_ = 0;
};

TEST_F(GuardedHttpServerTest, HandsACompleteHeadToItsRoutesAndCloses) {
  std::string answer = Exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("Connection: close\r\n"), std::string::npos) << answer;
  EXPECT_EQ(answer.substr(answer.find("\r\n\r\n") + 4), "hello") << answer;
}

TEST_F(GuardedHttpServerTest, RefusesAHeadThatDoesNotEndWithinTheCapWith431) {
  // Exactly the cap, so that nothing is left unread (which would reset the
  // connection before the answer is read).
  std::string head = "GET / HTTP/1.1\r\nX-A: ";
  head += std::string(GuardedHttpServer::kMaxHeadBytes - head.size(), 'a');
  std::string answer = Exchange(head);
  EXPECT_EQ(answer.rfind("HTTP/1.1 431 ", 0), 0u) << answer;
}

TEST_F(GuardedHttpServerTest, RefusesAHeadNotInByTheDeadlineWith408) {
  std::string answer = Exchange("GET / HTTP/1.1\r\nHost: x\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 408 ", 0), 0u) << answer;
}

TEST_F(GuardedHttpServerTest, RefusesABodyWhenNoneIsAllowed) {
  std::string answer = Exchange("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde");
  EXPECT_EQ(answer.rfind("HTTP/1.1 413 ", 0), 0u) << answer;
}

}  // namespace
}  // namespace fanmap
