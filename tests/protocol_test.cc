#include "common/protocol.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

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
  EXPECT_FALSE(got.fatal);
}

TEST_F(ProtocolTest, CauseAndServerLimitsRoundTrip) {
  Result r = OkResultForTest();
  r.ok = false;
  r.retryable = true;
  r.cause = FailureCause::kThrottled;
  r.limits.mut().limit_requests = 500;
  r.limits.mut().remaining_requests = 0;
  r.limits.mut().reset_requests_ms = 20;
  r.limits.mut().remaining_tokens = 1234;
  Result plain = OkResultForTest();
  Message m = Decode(EncodeResults("run", {r, plain}));
  ASSERT_EQ(m.results.size(), 2u);
  const Result& got = m.results[0];
  EXPECT_EQ(got.cause, FailureCause::kThrottled);
  EXPECT_EQ(got.limits->limit_requests, std::optional<uint64_t>(500));
  EXPECT_EQ(got.limits->remaining_requests, std::optional<uint64_t>(0));
  EXPECT_EQ(got.limits->reset_requests_ms, std::optional<uint64_t>(20));
  EXPECT_FALSE(got.limits->limit_tokens.has_value());
  EXPECT_EQ(got.limits->remaining_tokens, std::optional<uint64_t>(1234));
  EXPECT_FALSE(got.limits->reset_tokens_ms.has_value());
  EXPECT_EQ(m.results[1].cause, FailureCause::kNone);
  EXPECT_TRUE(m.results[1].limits->empty());
}

// A result whose cause byte is patched to `cause` (it is the byte before the
// final nil of a result without limits).
std::string ResultsFrameWithCause(uint8_t cause) {
  std::string frame = EncodeResults("run", {OkResultForTest()});
  EXPECT_EQ(static_cast<uint8_t>(frame.back()), 0xc0);
  frame[frame.size() - 2] = static_cast<char>(cause);
  return frame;
}

TEST_F(ProtocolTest, RejectsUnknownFailureCause) {
  Decode(ResultsFrameWithCause(kMaxFailureCause));
  Reject(ResultsFrameWithCause(kMaxFailureCause + 1));
  Reject(ResultsFrameWithCause(0x7f));
}

TEST_F(ProtocolTest, RejectsServerLimitsOutOfBounds) {
  Result r = OkResultForTest();
  r.limits.mut().limit_requests = 10;
  r.limits.mut().remaining_requests = 11;  // more left than the limit
  Reject(EncodeResults("run", {r}));
  r.limits.mut().remaining_requests = 10;
  Decode(EncodeResults("run", {r}));
  r.limits.mut().reset_tokens_ms = kMaxLimitResetMs + 1;
  Reject(EncodeResults("run", {r}));
  r.limits.mut().reset_tokens_ms = kMaxLimitResetMs;
  Decode(EncodeResults("run", {r}));
  r.limits.mut().limit_tokens = kMaxLimitCount + 1;
  Reject(EncodeResults("run", {r}));
}

TEST_F(ProtocolTest, RejectsServerLimitsOfTheWrongShape) {
  Result r = OkResultForTest();
  r.limits.mut().limit_requests = 10;
  std::string frame = EncodeResults("run", {r});
  // The limits array [10, nil x 5] ends the frame: 0x96 0x0a 0xc0...
  size_t at = frame.size() - 7;
  ASSERT_EQ(static_cast<uint8_t>(frame[at]), 0x96);
  std::string five = frame.substr(0, at) + "\x95\x0a" + std::string(4, '\xc0');
  Reject(five);
  std::string text = frame.substr(0, at) + "\x96\xa1x" + std::string(5, '\xc0');
  Reject(text);
  std::string negative = frame.substr(0, at) + "\x96\xff" + std::string(5, '\xc0');
  Reject(negative);
}

TEST_F(ProtocolTest, FatalFlagRoundTrips) {
  Result r = OkResultForTest();
  r.ok = false;
  r.fatal = true;
  Message m = Decode(EncodeResults("run", {r}));
  ASSERT_EQ(m.results.size(), 1u);
  EXPECT_TRUE(m.results[0].fatal);
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
  Reject(std::string("\x93\x03\x03\x00", 4));
  Reject(std::string("\x96\x03\x01\xa1x\xa1n\xa1h\x01", 10));
  Reject(std::string("\x92\x03\x63", 3));
  Reject(std::string("\x01", 1));
  // A task with a negative index.
  Reject(std::string("\x93\x03\x05\x91\x93\xff\x00\xa0", 8));
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
  EXPECT_NE(status.message().find("version 3"), std::string::npos) << status.message();
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

// Allocation accounting for ProtocolBoundsTest: this binary replaces malloc,
// calloc and realloc (glibc lets a program do so) with wrappers that count
// the bytes asked for while a test has counting on, around glibc's own
// allocator, so glibc's free still matches. msgpack's zone calls malloc
// directly, so counting operator new alone would miss the objects it builds.
// Sanitizers bring their own malloc: there the memory checks are skipped.
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#if defined(__has_feature)
#if !__has_feature(address_sanitizer) && !__has_feature(memory_sanitizer) && \
    !__has_feature(thread_sanitizer)
#define FANMAP_COUNTS_ALLOCATIONS 1
#endif
#else
#define FANMAP_COUNTS_ALLOCATIONS 1
#endif
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<size_t> g_allocated{0};
}  // namespace

#ifdef FANMAP_COUNTS_ALLOCATIONS
namespace {
void CountAllocation(size_t bytes) {
  if (g_counting.load(std::memory_order_relaxed)) {
    g_allocated.fetch_add(bytes, std::memory_order_relaxed);
  }
}
}  // namespace

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* block, size_t size);

void* malloc(size_t size) noexcept {
  CountAllocation(size);
  return __libc_malloc(size);
}
void* calloc(size_t count, size_t size) noexcept {
  CountAllocation(count * size);
  return __libc_calloc(count, size);
}
void* realloc(void* block, size_t size) noexcept {
  CountAllocation(size);
  return __libc_realloc(block, size);
}
}  // extern "C"
#endif  // FANMAP_COUNTS_ALLOCATIONS

namespace fanmap {
namespace {

// A frame refused by the decoder's first pass costs the parser's small
// stack and the error text, whatever the frame's size.
constexpr size_t kFirstPassBytes = 4096;

// msgpack-cxx's object: what unpack allocates for each element of a frame.
constexpr size_t kMsgpackObjectBytes = 24;

// The most a call may allocate for a frame that it rejects after the first
// pass: msgpack's objects, for no more elements than the frame has bytes nor
// than kMaxFrameElements, and four times the frame's bytes.
size_t AllowedBytes(size_t frame_size) {
  return 4 * frame_size + kMsgpackObjectBytes * std::min<size_t>(frame_size, kMaxFrameElements) +
         (64 << 10);
}

std::string Array32Header(uint32_t size) {
  return std::string{'\xdd', static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                     static_cast<char>(size >> 8), static_cast<char>(size)};
}

// One array32 of `size` elements, each the one-byte value `element`
// (0xc0 nil, 0x90 empty array).
std::string ArrayOf(uint32_t size, char element) {
  return Array32Header(size) + std::string(size, element);
}

Result MinimalResult(uint64_t index) {
  Result r;
  r.index = index;
  return r;
}

// A result as a command's failure leaves it: a value and three extra fields.
Result FailedCommandResult(uint64_t index) {
  Result r;
  r.index = index;
  r.attempt = 1;
  r.value = "exit code 3 after 1.2 s: " + std::to_string(index);
  r.elapsed_us = 1200000 + index;
  r.retryable = true;
  r.retry_after_ms = 250;
  r.extra["exit_code"] = int64_t{3};
  r.extra["signal"] = int64_t{0};
  r.extra["stderr"] = std::string("gzip: stdin: unexpected end of file");
  return r;
}

#ifdef FANMAP_COUNTS_ALLOCATIONS
constexpr bool kCountsAllocations = true;
#else
constexpr bool kCountsAllocations = false;
#endif

// The decoder's caps and what a hostile frame costs it.
class ProtocolBoundsTest : public ProtocolTest {
 protected:
  // Decodes `frame` and returns the bytes the call asked of malloc.
  size_t AllocatedDecoding(const std::string& frame, Status* status, Message* message) {
    g_allocated.store(0);
    g_counting.store(true);
    *status = DecodeMessage(frame.data(), frame.size(), message);
    g_counting.store(false);
    return g_allocated.load();
  }

  // Decodes `frame`, expecting a rejection that allocated at most
  // `max_bytes`; returns the error text.
  std::string RejectWithin(const std::string& frame, size_t max_bytes) {
    Message message;
    Status status;
    size_t allocated = AllocatedDecoding(frame, &status, &message);
    EXPECT_FALSE(status.ok());
    if (kCountsAllocations) {
      EXPECT_LE(allocated, max_bytes) << "allocated while rejecting a frame of " << frame.size()
                                      << " bytes: " << status.message();
    }
    return status.message();
  }
};

TEST_F(ProtocolBoundsTest, RejectsSixteenMebibyteArrayOfNilsWithoutAllocatingForIt) {
  std::string frame = ArrayOf(16u << 20, '\xc0');
  EXPECT_NE(RejectWithin(frame, kFirstPassBytes).find("array of 16777216 elements"),
            std::string::npos);
}

TEST_F(ProtocolBoundsTest, RejectsSixteenMebibyteArrayOfEmptyArraysWithoutAllocatingForIt) {
  RejectWithin(ArrayOf(16u << 20, '\x90'), kFirstPassBytes);
}

TEST_F(ProtocolBoundsTest, RejectsResultsListOfSixteenMillionNilsBeforeSizingTheList) {
  std::string frame = std::string("\x94\x03\x02\xa3run", 7) + ArrayOf(16u << 20, '\xc0');
  RejectWithin(frame, kFirstPassBytes);
}

TEST_F(ProtocolBoundsTest, RejectsSixtyFourMebibyteFrameWithoutAllocatingForIt) {
  // Four arrays of just under 16M nils or empty arrays: each under any
  // per-array limit that only compares an array with the frame's size.
  const uint32_t size = (16u << 20) - 5;
  std::string frame = "\x94" + ArrayOf(size, '\xc0') + ArrayOf(size, '\x90') +
                      ArrayOf(size, '\xc0') + ArrayOf(size, '\x90');
  ASSERT_GT(frame.size(), 64u << 20);
  RejectWithin(frame, kFirstPassBytes);
}

TEST_F(ProtocolBoundsTest, RejectsFrameOverTheElementCapThoughEveryArrayIsWithinItsOwn) {
  // Ten arrays of 65,536 nils: 655,371 elements, each array within the
  // longest a message has (a JOB's argv).
  static_assert(10 * (kMaxJobArgv + 1) + 1 > kMaxFrameElements);
  std::string frame = "\x9a";
  for (int i = 0; i < 10; ++i) frame += ArrayOf(kMaxJobArgv, '\xc0');
  EXPECT_NE(RejectWithin(frame, kFirstPassBytes).find("elements"), std::string::npos);
}

TEST_F(ProtocolBoundsTest, RejectsArraysNestedOneHundredThousandDeep) {
  // Over kUnscannedFrameBytes: the first pass rejects it.
  std::string frame = std::string(100000, '\x91') + "\xc0";
  EXPECT_NE(RejectWithin(frame, kFirstPassBytes).find("nested"), std::string::npos);
}

TEST_F(ProtocolBoundsTest, RejectsASmallFrameNestedOneThousandDeepWithinTheSmallFrameBound) {
  // A small frame skips the first pass: unpack's own depth limit rejects it,
  // within the constant bound of a frame of kUnscannedFrameBytes.
  std::string frame = std::string(1000, '\x91') + "\xc0";
  EXPECT_NE(RejectWithin(frame, AllowedBytes(kUnscannedFrameBytes)).find("depth"),
            std::string::npos);
}

TEST_F(ProtocolBoundsTest, SmallFrameDeclaringAHugeArrayAllocatesForItsBytesOnly) {
  // array16 of 65,535 nils declared, 3 bytes sent; then 64 KiB of nested
  // arrays each declaring more than the frame holds.
  RejectWithin(std::string("\xdc\xff\xff", 3), 64 << 10);
  std::string nested;
  while (nested.size() < kUnscannedFrameBytes - 3) nested += "\xdc\x03\xff";
  EXPECT_LE(nested.size(), kUnscannedFrameBytes);
  RejectWithin(nested, 96 * nested.size() + (64 << 10));
}

TEST_F(ProtocolBoundsTest, RejectsResultsFrameOverTheResultCap) {
  std::vector<Result> results;
  for (uint32_t i = 0; i <= kMaxFrameResults; ++i) results.push_back(MinimalResult(i));
  std::string frame = EncodeResults("run", results);
  RejectWithin(frame, AllowedBytes(frame.size()));
}

TEST_F(ProtocolBoundsTest, RejectsTasksFrameOverTheTaskCap) {
  TasksEncoder encoder;
  for (uint32_t i = 0; i <= kMaxFrameTasks; ++i) encoder.Add(i, 0, "");
  std::string frame = encoder.Finish();
  RejectWithin(frame, AllowedBytes(frame.size()));
}

TEST_F(ProtocolBoundsTest, RejectsExtraMapOverItsCap) {
  Result r = MinimalResult(1);
  for (uint32_t i = 0; i < kMaxResultExtra; ++i) r.extra["k" + std::to_string(i)] = int64_t{i};
  Decode(EncodeResults("run", {r}));
  r.extra["one_too_many"] = int64_t{1};
  std::string frame = EncodeResults("run", {r});
  RejectWithin(frame, AllowedBytes(frame.size()));
}

TEST_F(ProtocolBoundsTest, RejectsJobOverItsArgvAndOptionsCaps) {
  JobSpec job;
  job.argv.assign(kMaxJobArgv + 1, "x");
  std::string frame = EncodeJob(job);
  RejectWithin(frame, AllowedBytes(frame.size()));
  job.argv = {"cat"};
  for (uint32_t i = 0; i <= kMaxJobOptions; ++i) job.options["k" + std::to_string(i)] = "v";
  frame = EncodeJob(job);
  RejectWithin(frame, AllowedBytes(frame.size()));
}

TEST_F(ProtocolBoundsTest, DecodesResultsFrameOfTheMostResultsWithExtraFields) {
  std::vector<Result> results;
  for (uint32_t i = 0; i < kMaxFrameResults; ++i) results.push_back(FailedCommandResult(i));
  Message m = Decode(EncodeResults("0123456789abcdef0123456789abcdef", results));
  ASSERT_EQ(m.results.size(), kMaxFrameResults);
  const Result& last = m.results.back();
  EXPECT_EQ(last.index, kMaxFrameResults - 1);
  EXPECT_EQ(last.value, results.back().value);
  EXPECT_EQ(last.extra, results.back().extra);
}

TEST_F(ProtocolBoundsTest, DecodesResultsFrameAtTheElementCapWithFullExtraMaps) {
  // kMaxFrameResults results with kMaxResultExtra extra fields each: the
  // largest frame the caps allow, exactly kMaxFrameElements elements.
  Result r = MinimalResult(0);
  for (uint32_t i = 0; i < kMaxResultExtra; ++i) r.extra["k" + std::to_string(i)] = int64_t{i};
  std::vector<Result> results(kMaxFrameResults, r);
  Message m = Decode(EncodeResults("run", results));
  ASSERT_EQ(m.results.size(), kMaxFrameResults);
  EXPECT_EQ(m.results.back().extra.size(), kMaxResultExtra);
}

TEST_F(ProtocolBoundsTest, DecodesTasksFrameOfAsManyTasksAsTheCoordinatorSends) {
  TasksEncoder encoder;
  for (uint32_t i = 0; i < 1024; ++i) encoder.Add(i, i % 3, "item " + std::to_string(i));
  Message m = Decode(encoder.Finish());
  ASSERT_EQ(m.tasks.size(), 1024u);
  EXPECT_EQ(m.tasks[1023].item, "item 1023");
  EXPECT_EQ(m.tasks[1023].attempt, 1023u % 3);
}

TEST_F(ProtocolBoundsTest, DecodesJobWithTheMostArgvAndOptions) {
  JobSpec job;
  job.run_id = "fedcba9876543210fedcba9876543210";
  job.kind = "exec";
  for (uint32_t i = 0; i < kMaxJobArgv; ++i) job.argv.push_back("arg" + std::to_string(i));
  for (uint32_t i = 0; i < kMaxJobOptions; ++i) job.options["k" + std::to_string(i)] = "v";
  Message m = Decode(EncodeJob(job));
  EXPECT_EQ(m.job.argv, job.argv);
  EXPECT_EQ(m.job.options, job.options);
}

TEST_F(ProtocolTest, RejectedFrameLeavesNoPartialBody) {
  std::string frame = EncodeResults("run", {MinimalResult(1), MinimalResult(2)});
  // The last result's retry_after_ms (the frame's second-to-last byte)
  // becomes a string: the first result decodes, the second does not.
  frame[frame.size() - 2] = '\xa0';
  Message m;
  EXPECT_FALSE(DecodeMessage(frame.data(), frame.size(), &m).ok());
  EXPECT_TRUE(m.results.empty());
  EXPECT_TRUE(m.run_id.empty());
}

}  // namespace
}  // namespace fanmap
