#include "common/protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace fanmap {
namespace {

Result OkResultForTest() {
  Result r;
  r.index = 4;
  r.ok = true;
  r.value = "{\"a\":1}";
  r.value_is_json = true;
  return r;
}

class ProtocolTest : public ::testing::Test {
 protected:
  // Decodes `frame`, expecting success.
  Message Decode(const std::string& frame) {
    Message message;
    Status status = DecodeMessage(frame.data(), frame.size(), &message);
    EXPECT_TRUE(status.ok()) << status.message();
    return message;
  }
  // Decodes `frame`, expecting a rejection; returns the error text.
  std::string Reject(const std::string& frame) {
    Message message;
    Status status = DecodeMessage(frame.data(), frame.size(), &message);
    EXPECT_FALSE(status.ok());
    return status.message();
  }
};

TEST_F(ProtocolTest, HelloRoundTrips) {
  Hello hello{8, "w1", "host-a", 4242};
  Message m = Decode(EncodeHello(hello));
  EXPECT_EQ(m.type, MessageType::kHello);
  EXPECT_EQ(m.hello.slots, 8u);
  EXPECT_EQ(m.hello.name, "w1");
  EXPECT_EQ(m.hello.host, "host-a");
  EXPECT_EQ(m.hello.pid, 4242u);
}

TEST_F(ProtocolTest, TasksRoundTripInOrderWithBinaryItems) {
  TasksEncoder encoder;
  std::string binary("a\0b\xff", 4);
  encoder.Add(7, 0, "first");
  encoder.Add(8, 2, binary);
  encoder.Add(1ull << 40, 1, "");
  EXPECT_EQ(encoder.count(), 3u);
  Message m = Decode(encoder.Finish());
  ASSERT_EQ(m.type, MessageType::kTasks);
  ASSERT_EQ(m.tasks.size(), 3u);
  EXPECT_EQ(m.tasks[0].index, 7u);
  EXPECT_EQ(m.tasks[0].item, "first");
  EXPECT_EQ(m.tasks[1].attempt, 2u);
  EXPECT_EQ(m.tasks[1].item, binary);
  EXPECT_EQ(m.tasks[2].index, 1ull << 40);
  EXPECT_EQ(encoder.count(), 0u) << "Finish() resets the encoder";
}

TEST_F(ProtocolTest, ResultsRoundTripWithExtraFields) {
  Result r;
  r.index = 3;
  r.attempt = 1;
  r.ok = false;
  r.value = "exit code 3";
  r.elapsed_us = 1234;
  r.extra["exit_code"] = int64_t{3};
  r.extra["delta"] = int64_t{-5};
  r.extra["stderr"] = std::string("oops");
  Message m = Decode(EncodeResults("0123456789abcdef0123456789abcdef", {r, OkResultForTest()}));
  EXPECT_EQ(m.run_id, "0123456789abcdef0123456789abcdef");
  ASSERT_EQ(m.results.size(), 2u);
  const Result& got = m.results[0];
  EXPECT_EQ(got.index, 3u);
  EXPECT_EQ(got.attempt, 1u);
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.value, "exit code 3");
  EXPECT_EQ(got.elapsed_us, 1234u);
  EXPECT_EQ(std::get<int64_t>(got.extra.at("exit_code")), 3);
  EXPECT_EQ(std::get<int64_t>(got.extra.at("delta")), -5);
  EXPECT_EQ(std::get<std::string>(got.extra.at("stderr")), "oops");
  EXPECT_TRUE(m.results[1].ok);
  EXPECT_TRUE(m.results[1].value_is_json);
}

TEST_F(ProtocolTest, JobStopRefuseAndHeartbeatRoundTrip) {
  JobSpec job;
  job.run_id = "fedcba9876543210fedcba9876543210";
  job.kind = "exec";
  job.argv = {"gzip", "-9", "{}"};
  job.options["liveness_ms"] = "5000";
  job.default_slots = 4;
  Message m = Decode(EncodeJob(job));
  EXPECT_EQ(m.type, MessageType::kJob);
  EXPECT_EQ(m.job.run_id, job.run_id);
  EXPECT_EQ(m.job.kind, "exec");
  EXPECT_EQ(m.job.argv, job.argv);
  EXPECT_EQ(m.job.options.at("liveness_ms"), "5000");
  EXPECT_EQ(m.job.default_slots, 4u);
  EXPECT_EQ(Decode(EncodeStop("bye")).reason, "bye");
  EXPECT_EQ(Decode(EncodeRefuse("no")).type, MessageType::kRefuse);
  EXPECT_EQ(Decode(EncodeHeartbeat()).type, MessageType::kHeartbeat);
}

TEST_F(ProtocolTest, RejectsEmptyAndGarbageFrames) {
  Reject("");
  Reject("hello world");
  Reject(std::string("\xc1", 1));  // never-used msgpack byte
  EXPECT_NE(Reject(std::string("\x93\x01", 2)).find("malformed"), std::string::npos);
}

TEST_F(ProtocolTest, RejectsHugeDeclaredSizesWithoutAllocating) {
  // array32 declaring 4 billion elements, map32 likewise, str32 of 4 GiB.
  Reject(std::string("\xdd\xff\xff\xff\xff", 5));
  Reject(std::string("\xdf\xff\xff\xff\xff", 5));
  Reject(std::string("\xdb\xff\xff\xff\xff", 5));
}

TEST_F(ProtocolTest, RejectsTrailingBytes) {
  std::string frame = EncodeHeartbeat() + "x";
  EXPECT_NE(Reject(frame).find("trailing"), std::string::npos);
}

TEST_F(ProtocolTest, RejectsWrongShapes) {
  // Heartbeat with an extra element; hello with a string where slots go;
  // an unknown type; a non-array root.
  Reject(std::string("\x93\x02\x03\x00", 4));
  Reject(std::string("\x96\x02\x01\xa1x\xa1n\xa1h\x01", 10));
  Reject(std::string("\x92\x02\x63", 3));
  Reject(std::string("\x01", 1));
  // A task with a negative index.
  Reject(std::string("\x93\x02\x05\x91\x93\xff\x00\xa0", 8));
}

TEST_F(ProtocolTest, EveryTruncationOfAValidFrameIsRejected) {
  Result r;
  r.index = 1;
  r.ok = true;
  r.value = "value";
  r.extra["k"] = std::string("v");
  std::string frame = EncodeResults("run", {r});
  for (size_t n = 0; n < frame.size(); ++n) {
    Message m;
    EXPECT_FALSE(DecodeMessage(frame.data(), n, &m).ok()) << "prefix of " << n << " bytes";
  }
}

TEST_F(ProtocolTest, OtherVersionIsReportedWithBothVersions) {
  std::string hello = EncodeHello(Hello{1, "w", "h", 1});
  hello[1] = 9;  // positive fixint version
  Message m;
  Status status = DecodeMessage(hello.data(), hello.size(), &m);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(m.version, 9u);
  EXPECT_EQ(m.type, MessageType::kHello);
  EXPECT_NE(status.message().find("version 9"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("version 2"), std::string::npos) << status.message();
}

TEST_F(ProtocolTest, RefuseOfAnotherVersionKeepsItsReason) {
  std::string refuse = EncodeRefuse("go away");
  refuse[1] = 7;
  Message m;
  EXPECT_FALSE(DecodeMessage(refuse.data(), refuse.size(), &m).ok());
  EXPECT_EQ(m.type, MessageType::kRefuse);
  EXPECT_EQ(m.reason, "go away");
}

}  // namespace
}  // namespace fanmap
