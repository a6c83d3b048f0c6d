#include "coordinator/guarded_http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace fanmap {
namespace {

// A generous failure bound for anything that should take milliseconds.
constexpr int kBoundS = 30;

class GuardedHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Get("/", [] {
      HttpAnswer answer;
      answer.content_type = "text/plain";
      answer.body = "hello";
      answer.headers.emplace_back("X-Extra", "yes");
      return answer;
    });
    Status bound = server_.Bind("127.0.0.1", 0, &port_);
    ASSERT_TRUE(bound.ok()) << bound.message();
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.Run(); });
  }
  void TearDown() override {
    if (!thread_.joinable()) return;
    server_.Stop();
    thread_.join();
  }

  // A connected socket, with kBoundS as a failure bound on every send and recv.
  int Connect() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0);
    timeval timeout{kBoundS, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  }

  // Everything the server sends on `fd` before it closes; closes `fd`.
  static std::string ReadAll(int fd) {
    std::string answer;
    char buffer[4096];
    ssize_t n;
    while ((n = recv(fd, buffer, sizeof buffer, 0)) > 0) answer.append(buffer, n);
    close(fd);
    return answer;
  }

  // Sends `request` on a new connection and returns all the server answers
  // before it closes.
  std::string Exchange(const std::string& request) {
    int fd = Connect();
    EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    return ReadAll(fd);
  }

  GuardedHttpServer server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(GuardedHttpServerTest, AnswersARouteAndCloses) {
  std::string answer = Exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("Connection: close\r\n"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Content-Type: text/plain\r\n"), std::string::npos) << answer;
  EXPECT_NE(answer.find("X-Extra: yes\r\n"), std::string::npos) << answer;
  EXPECT_EQ(answer.substr(answer.find("\r\n\r\n") + 4), "hello") << answer;
}

TEST_F(GuardedHttpServerTest, MatchesThePathWithoutItsQuery) {
  std::string answer = Exchange("GET /?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
}

TEST_F(GuardedHttpServerTest, AnswersOtherPaths404AndOtherMethods405) {
  EXPECT_EQ(Exchange("GET /etc/passwd HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404 ", 0), 0u);
  std::string post = Exchange("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.rfind("HTTP/1.1 405 ", 0), 0u) << post;
}

TEST_F(GuardedHttpServerTest, RefusesWhatIsNotHttpWith400) {
  std::string answer = Exchange("HELLO\x01 there\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 400 ", 0), 0u) << answer;
}

TEST_F(GuardedHttpServerTest, RefusesAHeadThatDoesNotEndWithinTheCapWith431) {
  // Header fields of exactly the cap, so that nothing is left unread (which
  // would reset the connection before the answer is read).
  std::string fields = "X-A: ";
  fields += std::string(GuardedHttpServer::kMaxHeadBytes - fields.size(), 'a');
  std::string answer = Exchange("GET / HTTP/1.1\r\n" + fields);
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

// With every connection taken by clients that send nothing, a further one
// waits (in the kernel's backlog) until their deadlines free them, and is
// answered then: the number open is bounded, and nobody is starved.
TEST_F(GuardedHttpServerTest, ServesAConnectionBeyondTheCapOnceOthersEnd) {
  std::vector<int> idle;
  for (size_t i = 0; i < GuardedHttpServer::kMaxConnections; ++i) idle.push_back(Connect());
  std::string answer = Exchange("GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
  for (int fd : idle) EXPECT_EQ(ReadAll(fd).rfind("HTTP/1.1 408 ", 0), 0u);
}

TEST_F(GuardedHttpServerTest, StopEndsRunWithRequestsInProgress) {
  int fd = Connect();
  ASSERT_GT(send(fd, "GET / HTTP/1.1\r\n", 16, MSG_NOSIGNAL), 0);
  EXPECT_EQ(Exchange("GET / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  server_.Stop();
  thread_.join();  // not after the head deadline: ctest's timeout is the bound
  close(fd);
}

TEST(GuardedHttpServerBindTest, APortInUseIsAnError) {
  GuardedHttpServer first;
  int port = 0;
  ASSERT_TRUE(first.Bind("127.0.0.1", 0, &port).ok());
  GuardedHttpServer second;
  int second_port = 0;
  Status status = second.Bind("127.0.0.1", port, &second_port);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("in use"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace fanmap
