// Integration tests of --http over TLS: the real fanmap and fanmap-worker
// binaries against Debian's nginx as a TLS + HTTP/2 front of the real
// mock-llm, with a CA and a server certificate made at run time by openssl
// (scripts/tls-front). Everything listens on 127.0.0.1.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/farm_fixture.h"
#include "tests/farm_test_util.h"
#include "tests/loopback_port.h"

namespace fanmap {
namespace {

using Json = nlohmann::json;
using testing_util::Lines;
using testing_util::Process;
using testing_util::ReadFile;
using testing_util::RunResult;
using testing_util::TempDir;

const std::string kMockLlm = testing_util::BinaryPath("mock-llm");
const std::string kNginx = "/usr/sbin/nginx";
const std::string kTlsFront = std::string(FANMAP_SOURCE_DIR) + "/scripts/tls-front";

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

std::string Prompts(int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += "prompt " + std::to_string(i) + "\n";
  return text;
}

class HttpsIntegrationTest : public testing_util::FarmFixture {
 protected:
  HttpsIntegrationTest() {
    setenv("no_proxy", "*", 1);
    unsetenv("OPENAI_API_KEY");
  }

  void SetUp() override {
    RunResult certs = testing_util::Run({kTlsFront, "certs", dir_.File("tls")}, "");
    ASSERT_EQ(certs.exit_code, 0) << certs.err;
    mock_ = std::make_unique<Process>(
        std::vector<std::string>{kMockLlm, "--port", "0", "--latency-ms", "20"}, "",
        dir_.File("mock.out"), dir_.File("mock.err"), Env());
    std::string out = testing_util::WaitForText(dir_.File("mock.out"), "\n");
    std::smatch match;
    ASSERT_TRUE(
        std::regex_match(out, match, std::regex("listening on http://127\\.0\\.0\\.1:(\\d+)\n")))
        << out << ReadFile(dir_.File("mock.err"));
    upstream_ = match[1];
    StartNginx(/*http2=*/true);
  }

  // (Re)starts nginx in front of mock-llm; `http2`: offered by ALPN.
  void StartNginx(bool http2) {
    nginx_.reset();
    // The port may be taken before nginx binds it: try again.
    for (int attempt = 0; attempt < 5 && nginx_ == nullptr; ++attempt) {
      int port = testing_util::UnusedLoopbackPort();
      RunResult conf =
          testing_util::Run({kTlsFront, "conf", dir_.File("tls"), std::to_string(port), upstream_},
                            "", {std::string("TLS_FRONT_HTTP2=") + (http2 ? "on" : "off")});
      ASSERT_EQ(conf.exit_code, 0) << conf.err;
      auto nginx = std::make_unique<Process>(
          std::vector<std::string>{kNginx, "-p", dir_.File("tls"), "-c",
                                   dir_.File("tls/nginx.conf"), "-e", dir_.File("tls/error.log")},
          "", dir_.File("nginx.out"), dir_.File("nginx.err"), Env());
      bool up = testing_util::WaitUntil([&] { return Accepts(port) || nginx->Exited(); });
      if (up && !nginx->Exited()) {
        nginx_ = std::move(nginx);
        url_ = "https://127.0.0.1:" + std::to_string(port) + "/v1/chat/completions";
        host_ = "127.0.0.1:" + std::to_string(port);
      }
    }
    ASSERT_NE(nginx_, nullptr) << ReadFile(dir_.File("tls/error.log"));
  }

  RunResult Chat(std::vector<std::string> args, int prompts) {
    args.insert(args.end(), {"--http", url_, "--chat", "mock-model", "--progress", "never"});
    return Fanmap(args, Prompts(prompts));
  }

  // nginx's access log, once it holds `n` lines (it is flushed every 100 ms).
  std::vector<std::string> AccessLog(size_t n) {
    std::vector<std::string> lines;
    testing_util::WaitUntil([&] {
      lines = Lines(ReadFile(dir_.File("tls/access.log")));
      return lines.size() >= n;
    });
    return lines;
  }

  static void ExpectEchoes(const RunResult& r, int n) {
    std::vector<Json> records = testing_util::ParseRecords(r.out, n);
    for (int i = 0; i < static_cast<int>(records.size()); ++i) {
      if (records[i]["ok"] != true || records[i]["result"] != "echo: prompt " + std::to_string(i)) {
        ADD_FAILURE() << "record " << i << ": " << records[i].dump();
        break;
      }
    }
  }

  TempDir dir_;
  std::unique_ptr<Process> mock_;
  std::unique_ptr<Process> nginx_;
  std::string upstream_;  // mock-llm's port
  std::string url_;
  std::string host_;
};

TEST_F(HttpsIntegrationTest, CacertGivesEveryAnswerInOrderOverAFewHttp2Connections) {
  constexpr int kN = 3000;
  RunResult r = Chat({"-j", "2", "--slots", "300", "--cacert", dir_.File("tls/ca.crt")}, kN);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectEchoes(r, kN);
  EXPECT_EQ(r.err.find("silent"), std::string::npos) << r.err;
  std::vector<std::string> log = AccessLog(kN);
  ASSERT_EQ(log.size(), static_cast<size_t>(kN));
  std::set<std::string> connections;
  for (const std::string& line : log) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, std::regex("(\\d+) (\\S+) 200"))) << line;
    EXPECT_EQ(m[2], "HTTP/2.0") << line;
    connections.insert(m[1]);
  }
  // Two workers, each at most kMaxHttp2Connections (16), where HTTP/1.1
  // would need 600.
  EXPECT_LE(connections.size(), 32u);
}

TEST_F(HttpsIntegrationTest, Http11FlagNeverSpeaksHttp2) {
  constexpr int kN = 400;
  RunResult r =
      Chat({"-j", "1", "--slots", "50", "--http1.1", "--cacert", dir_.File("tls/ca.crt")}, kN);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectEchoes(r, kN);
  std::vector<std::string> log = AccessLog(kN);
  ASSERT_EQ(log.size(), static_cast<size_t>(kN));
  for (const std::string& line : log) {
    ASSERT_NE(line.find(" HTTP/1.1 200"), std::string::npos) << line;
  }
}

// A TLS server that declines HTTP/2: the cap of 16 connections that HTTP/2
// needs is lifted at the first HTTP/1.1 answer, or 16 requests would be all
// that is ever in flight.
TEST_F(HttpsIntegrationTest, ServerWithoutHttp2GetsAConnectionPerRequestInFlight) {
  StartNginx(/*http2=*/false);
  constexpr int kN = 1000;
  RunResult r = Chat({"-j", "1", "--slots", "200", "--cacert", dir_.File("tls/ca.crt")}, kN);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectEchoes(r, kN);
  std::vector<std::string> log = AccessLog(kN);
  std::set<std::string> connections;
  for (const std::string& line : log) {
    ASSERT_NE(line.find(" HTTP/1.1 200"), std::string::npos) << line;
    connections.insert(line.substr(0, line.find(' ')));
  }
  EXPECT_GT(connections.size(), 100u);
}

// A CA file as large as the system's bundle, and 500 HTTP/1.1 connections (a
// handshake each): the store is parsed once per worker, not per handshake
// (which cost ~15 ms each and kept the worker silent past its heartbeat).
TEST_F(HttpsIntegrationTest, ManyHandshakesWithALargeCaFileNeverSilenceAWorker) {
  constexpr int kN = 2000;
  std::string bundle = ReadFile("/etc/ssl/certs/ca-certificates.crt");
  ASSERT_FALSE(bundle.empty()) << "the system CA bundle (ca-certificates) is missing";
  testing_util::WriteFile(dir_.File("bundle.pem"), bundle + ReadFile(dir_.File("tls/ca.crt")));
  RunResult r =
      Chat({"-j", "1", "--slots", "500", "--http1.1", "--cacert", dir_.File("bundle.pem")}, kN);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("silent"), std::string::npos) << r.err;
  ExpectEchoes(r, kN);
  std::vector<std::string> log = AccessLog(kN);
  std::set<std::string> connections;
  for (const std::string& line : log) connections.insert(line.substr(0, line.find(' ')));
  EXPECT_GT(connections.size(), 100u) << "HTTP/1.1: a connection per request in flight";
}

// Lines of stderr other than the end-of-run summary (run_summary.h: "N ok, M
// failed ..." and "latency ..."): what the run had to say about what went wrong.
std::vector<std::string> ErrorLines(const std::string& err) {
  std::vector<std::string> lines;
  for (const std::string& line : Lines(err)) {
    bool summary = line.rfind("fanmap: latency ", 0) == 0 ||
                   (line.rfind("fanmap: ", 0) == 0 && line.find(" ok, ") != std::string::npos &&
                    line.find(" failed in ") != std::string::npos);
    if (!summary) lines.push_back(line);
  }
  return lines;
}

// Without the CA, every handshake fails: the run stops at once with one error
// naming the server and the problem, and no request reaches the server.
TEST_F(HttpsIntegrationTest, UntrustedCertificateStopsTheRunWithOneErrorNamingTheHost) {
  RunResult r = Chat({"-j", "2", "--slots", "500"}, 20000);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  std::vector<std::string> err = ErrorLines(r.err);
  ASSERT_EQ(err.size(), 1u) << r.err;
  EXPECT_NE(err[0].find("certificate of " + host_ + " is not trusted"), std::string::npos)
      << err[0];
  EXPECT_NE(err[0].find("unable to get local issuer certificate"), std::string::npos) << err[0];
  EXPECT_NE(err[0].find("--cacert"), std::string::npos) << err[0];
  // Far fewer records than items: the run stopped.
  EXPECT_LT(Lines(r.out).size(), 20000u);
  for (const std::string& line : Lines(r.out)) {
    EXPECT_NE(line.find("\"ok\":false"), std::string::npos) << line;
  }
  EXPECT_EQ(ReadFile(dir_.File("tls/access.log")), "");
}

TEST_F(HttpsIntegrationTest, AnotherCaIsNotEnough) {
  RunResult r = Chat({"-j", "1", "--cacert", dir_.File("tls/other-ca.crt")}, 100);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  ASSERT_EQ(ErrorLines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("certificate of " + host_), std::string::npos) << r.err;
}

TEST_F(HttpsIntegrationTest, CacertThatIsNotPemIsAUsageError) {
  testing_util::WriteFile(dir_.File("junk.crt"), "not a certificate\n");
  RunResult r = Chat({"-j", "1", "--cacert", dir_.File("junk.crt")}, 3);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("junk.crt"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no PEM certificate"), std::string::npos) << r.err;
  r = Chat({"-j", "1", "--cacert", dir_.File("missing.crt")}, 3);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("missing.crt"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace fanmap
