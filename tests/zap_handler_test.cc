// ZapHandler: answers ZAP requests sent to it over inproc, as libzmq sends
// them for each CURVE handshake.
#include "coordinator/zap_handler.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/curve_keys.h"
#include "coordinator/log_limiter.h"

namespace fanmap {
namespace {

class ZapHandlerTest : public ::testing::Test {
 protected:
  // The 32-byte CURVE key numbered `n`.
  static std::array<uint8_t, 32> Key(uint32_t n) {
    std::array<uint8_t, 32> key{};
    for (int i = 0; i < 4; ++i) key[i] = static_cast<uint8_t>(n >> (8 * i));
    key[31] = 0x5a;
    return key;
  }

  ZapHandler& handler() {
    if (handler_ == nullptr) {
      handler_ = std::make_unique<ZapHandler>(
          context_, authorized_, [this](const std::string& line) { log_.push_back(line); });
      client_.connect("inproc://zeromq.zap.01");
    }
    return *handler_;
  }

  // Sends a CURVE ZAP request for `key` and returns the reply's status code.
  std::string Ask(const std::array<uint8_t, 32>& key) {
    handler();
    std::vector<std::string> frames = {"1.0", "7", "fanmap", "127.0.0.1", "", "CURVE"};
    for (const std::string& f : frames) client_.send(zmq::buffer(f), zmq::send_flags::sndmore);
    client_.send(zmq::buffer(key.data(), key.size()), zmq::send_flags::none);
    handler_->Handle();
    std::vector<std::string> reply;
    for (bool more = true; more;) {
      zmq::message_t frame;
      EXPECT_TRUE(client_.recv(frame, zmq::recv_flags::none));
      more = frame.more();
      reply.push_back(frame.to_string());
    }
    EXPECT_EQ(reply.size(), 6u);
    return reply.size() > 2 ? reply[2] : "";
  }

  zmq::context_t context_;
  zmq::socket_t client_{context_, zmq::socket_type::req};
  std::set<std::string> authorized_;
  std::vector<std::string> log_;
  std::unique_ptr<ZapHandler> handler_;
};

TEST_F(ZapHandlerTest, AcceptsAnAuthorizedKeyAndRefusesOthersOncePerKey) {
  authorized_.insert(KeyToZ85(Key(1).data()));
  EXPECT_EQ(Ask(Key(1)), "200");
  EXPECT_EQ(Ask(Key(2)), "400");
  EXPECT_EQ(Ask(Key(2)), "400");
  EXPECT_EQ(Ask(Key(3)), "400");
  EXPECT_EQ(handler().refused(), 3u);
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_NE(log_[0].find("refused key " + KeyToZ85(Key(2).data())), std::string::npos) << log_[0];
  EXPECT_NE(log_[1].find("refused key " + KeyToZ85(Key(3).data())), std::string::npos) << log_[1];
}

// A peer trying key after key must not grow the log or the handler's memory
// with each one.
TEST_F(ZapHandlerTest, ManyRefusedKeysAreCountedWithoutGrowingLogOrMemory) {
  constexpr uint32_t kTries = 2000;
  int64_t started_ms = NowMillis();
  for (uint32_t n = 0; n < kTries; ++n) ASSERT_EQ(Ask(Key(100 + n)), "400");
  int64_t took_ms = NowMillis() - started_ms;
  EXPECT_EQ(handler().refused(), kTries);
  EXPECT_LE(handler().remembered(), ZapHandler::kMaxLoggedKeys);
  // The first keys one line each, then a burst of the limiter's (and one
  // more per interval, had this taken that long).
  size_t most = ZapHandler::kMaxLoggedKeys + LogLimiter::kDefaultBurst +
                static_cast<size_t>(took_ms / LogLimiter::kDefaultIntervalMs);
  EXPECT_GT(log_.size(), ZapHandler::kMaxLoggedKeys);
  EXPECT_LE(log_.size(), most);
  EXPECT_NE(log_.back().find("further ones are logged a few at a time"), std::string::npos)
      << log_.back();
  // A key logged before the set filled up is not logged again.
  size_t lines = log_.size();
  EXPECT_EQ(Ask(Key(100)), "400");
  EXPECT_EQ(log_.size(), lines);
}

}  // namespace
}  // namespace fanmap
