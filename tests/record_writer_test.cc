#include "coordinator/record_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "coordinator/item_fingerprint.h"
#include "coordinator/resume_log.h"

namespace fanmap {
namespace {

Result Ok(const std::string& value) {
  Result result;
  result.ok = true;
  result.value = value;
  return result;
}

Result Failed(const std::string& error) {
  Result result;
  result.ok = false;
  result.value = error;
  return result;
}

class RecordWriterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A write to a closed pipe must fail with EPIPE, not kill the test.
    signal(SIGPIPE, SIG_IGN);
  }

  void TearDown() override {
    writer_.reset();
    if (!path_.empty()) unlink(path_.c_str());
  }

  static std::string Format(OutputFormat format, uint64_t index, const Result& result) {
    std::string out;
    RecordWriter::FormatRecord(format, index, result, &out);
    return out;
  }
  static std::string Jsonl(uint64_t index, const Result& result) {
    return Format(OutputFormat::kJsonl, index, result);
  }
  static std::string JsonlWithFingerprint(uint64_t index, const Result& result,
                                          uint64_t fingerprint) {
    std::string out;
    RecordWriter::FormatRecord(OutputFormat::kJsonl, index, result, &out, fingerprint);
    return out;
  }
  static std::string Raw(uint64_t index, const Result& result) {
    return Format(OutputFormat::kRaw, index, result);
  }

  // Opens a writer on a fresh temporary file.
  void OpenTempFile(OutputFormat format) {
    const char* dir = getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/fanmap_output_XXXXXX";
    int fd = mkstemp(&path_[0]);
    ASSERT_GE(fd, 0);
    close(fd);
    Status status = RecordWriter::Open(path_, format, &writer_);
    ASSERT_TRUE(status.ok()) << status.message();
  }

  std::string ReadTempFile() {
    std::string data;
    int fd = open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    char buf[65536];
    ssize_t n;
    while (fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0) data.append(buf, n);
    if (fd >= 0) close(fd);
    return data;
  }

  size_t TempFileSize() {
    struct stat st;
    EXPECT_EQ(stat(path_.c_str(), &st), 0);
    return static_cast<size_t>(st.st_size);
  }

  void Flush() {
    Status status = writer_->Flush();
    ASSERT_TRUE(status.ok()) << status.message();
  }

  std::string path_;
  std::unique_ptr<RecordWriter> writer_;
};

TEST_F(RecordWriterTest, FormatsOkJsonlRecord) {
  EXPECT_EQ(Jsonl(0, Ok("a")), "{\"index\":0,\"ok\":true,\"result\":\"a\"}\n");
}

TEST_F(RecordWriterTest, FormatsLargeIndex) {
  EXPECT_EQ(Jsonl(18446744073709551615u, Ok("")),
            "{\"index\":18446744073709551615,\"ok\":true,\"result\":\"\"}\n");
}

TEST_F(RecordWriterTest, FormatsErrorRecordWithExtraFieldsInKeyOrder) {
  Result result = Failed("exit status 3");
  result.extra["stderr"] = std::string("boom\n");
  result.extra["exit_code"] = int64_t{3};
  result.extra["attempts"] = int64_t{-2};
  EXPECT_EQ(Jsonl(7, result),
            "{\"index\":7,\"ok\":false,\"error\":\"exit status 3\",\"attempts\":-2,"
            "\"exit_code\":3,\"stderr\":\"boom\\n\"}\n");
}

TEST_F(RecordWriterTest, FormatsExtremeIntegers) {
  Result result = Ok("x");
  result.extra["max"] = std::numeric_limits<int64_t>::max();
  result.extra["min"] = std::numeric_limits<int64_t>::min();
  result.extra["zero"] = int64_t{0};
  EXPECT_EQ(Jsonl(1, result),
            "{\"index\":1,\"ok\":true,\"result\":\"x\",\"max\":9223372036854775807,"
            "\"min\":-9223372036854775808,\"zero\":0}\n");
}

TEST_F(RecordWriterTest, EmbedsJsonValueVerbatim) {
  Result result = Ok("{\"n\":[1,2]}");
  result.value_is_json = true;
  EXPECT_EQ(Jsonl(2, result), "{\"index\":2,\"ok\":true,\"result\":{\"n\":[1,2]}}\n");
}

TEST_F(RecordWriterTest, EmbedsJsonFieldsUnderTheirNameWithoutTheSuffix) {
  Result result = Ok("x");
  result.extra["metadata:json"] = std::string(R"({"k":["v"]})");
  result.extra["custom_id"] = std::string("c-1");
  EXPECT_EQ(Jsonl(3, result),
            "{\"index\":3,\"ok\":true,\"result\":\"x\",\"custom_id\":\"c-1\","
            "\"metadata\":{\"k\":[\"v\"]}}\n");
}

TEST_F(RecordWriterTest, FormatsOpenAiBatchLinesLedByTheResumeFields) {
  Result ok = Ok(R"({"status_code":200,"request_id":"r","body":{}})");
  ok.value_is_json = true;
  ok.extra["custom_id"] = std::string("a");
  ok.extra["latency_ms"] = int64_t{5};
  std::string out;
  RecordWriter::FormatRecord(OutputFormat::kOpenAiBatch, 4, ok, &out, 0xabcu);
  EXPECT_EQ(out,
            R"({"index":4,"ok":true,"fp":"0000000000000abc","id":"batch_req_4","custom_id":"a",)"
            R"("response":{"status_code":200,"request_id":"r","body":{}},"error":null})"
            "\n");
  Result failed = Failed("HTTP 400: no");
  failed.extra["status"] = int64_t{400};
  failed.extra["response:json"] =
      std::string(R"({"status_code":400,"request_id":null,"body":"no"})");
  out.clear();
  RecordWriter::FormatRecord(OutputFormat::kOpenAiBatch, 5, failed, &out);
  EXPECT_EQ(out, R"({"index":5,"ok":false,"id":"batch_req_5","custom_id":null,)"
                 R"("response":{"status_code":400,"request_id":null,"body":"no"},)"
                 R"("error":{"code":"http_400","message":"HTTP 400: no"}})"
                 "\n");
  out.clear();
  RecordWriter::FormatRecord(OutputFormat::kOpenAiBatch, 6, Failed("timed out"), &out);
  EXPECT_EQ(out, R"({"index":6,"ok":false,"id":"batch_req_6","custom_id":null,"response":null,)"
                 R"("error":{"code":"request_failed","message":"timed out"}})"
                 "\n");
}

// Regression: a failure after a 2xx answer (a body over the size limit, a
// header line too long) said "http_200", as if the status were the error.
TEST_F(RecordWriterTest, ABatchErrorNamesTheStatusOnlyWhenTheStatusWasTheFailure) {
  Result too_large = Failed("response larger than 64 MiB");
  too_large.extra["status"] = int64_t{200};
  std::string out;
  RecordWriter::FormatRecord(OutputFormat::kOpenAiBatch, 7, too_large, &out);
  EXPECT_EQ(out, R"({"index":7,"ok":false,"id":"batch_req_7","custom_id":null,"response":null,)"
                 R"("error":{"code":"request_failed","message":"response larger than 64 MiB"}})"
                 "\n");
  for (int64_t status : {int64_t{199}, int64_t{300}, int64_t{503}}) {
    Result failed = Failed("HTTP " + std::to_string(status));
    failed.extra["status"] = status;
    out.clear();
    RecordWriter::FormatRecord(OutputFormat::kOpenAiBatch, 8, failed, &out);
    EXPECT_NE(out.find(R"("code":"http_)" + std::to_string(status) + "\""), std::string::npos)
        << out;
  }
}

TEST_F(RecordWriterTest, QuotesJsonLookingTextThatIsNotMarkedJson) {
  EXPECT_EQ(Jsonl(2, Ok("{\"n\":1}")), "{\"index\":2,\"ok\":true,\"result\":\"{\\\"n\\\":1}\"}\n");
}

TEST_F(RecordWriterTest, EscapesQuotesControlCharactersAndNewlines) {
  EXPECT_EQ(Jsonl(0, Ok("a\"b\\c\nd\te\x01")),
            "{\"index\":0,\"ok\":true,\"result\":\"a\\\"b\\\\c\\nd\\te\\u0001\"}\n");
}

TEST_F(RecordWriterTest, EscapesErrorText) {
  EXPECT_EQ(Jsonl(0, Failed("bad \"x\"\n")),
            "{\"index\":0,\"ok\":false,\"error\":\"bad \\\"x\\\"\\n\"}\n");
}

TEST_F(RecordWriterTest, ReplacesInvalidUtf8) {
  EXPECT_EQ(Jsonl(0, Ok("a\xff"
                        "b")),
            "{\"index\":0,\"ok\":true,\"result\":\"a\\ufffdb\"}\n");
}

TEST_F(RecordWriterTest, FormatsFingerprintAfterResultBeforeExtraFields) {
  Result result = Ok("a");
  result.extra["attempts"] = int64_t{2};
  EXPECT_EQ(JsonlWithFingerprint(4, result, 0x8e6cc5433de9cad0ull),
            "{\"index\":4,\"ok\":true,\"result\":\"a\",\"fp\":\"8e6cc5433de9cad0\","
            "\"attempts\":2}\n");
}

TEST_F(RecordWriterTest, FormatsFingerprintOfErrorRecordWithLeadingZeros) {
  EXPECT_EQ(JsonlWithFingerprint(0, Failed("e"), 0xabcull),
            "{\"index\":0,\"ok\":false,\"error\":\"e\",\"fp\":\"0000000000000abc\"}\n");
}

TEST_F(RecordWriterTest, FingerprintWinsOverExtraFieldOfTheSameName) {
  Result result = Ok("a");
  result.extra["fp"] = std::string("forged");
  EXPECT_EQ(JsonlWithFingerprint(1, result, 1),
            "{\"index\":1,\"ok\":true,\"result\":\"a\",\"fp\":\"0000000000000001\"}\n");
}

TEST_F(RecordWriterTest, RawIgnoresFingerprint) {
  std::string out;
  RecordWriter::FormatRecord(OutputFormat::kRaw, 0, Ok("text"), &out, 42);
  EXPECT_EQ(out, "text\n");
}

TEST_F(RecordWriterTest, RecordsWithFingerprintAreReadBackByResumeLog) {
  OpenTempFile(OutputFormat::kJsonl);
  JobSpec job;
  job.kind = "builtin";
  job.argv = {"echo"};
  ItemFingerprinter fingerprinter(job);
  Result json = Ok("{\"n\":[1,2]}");
  json.value_is_json = true;
  Result failed = Failed("exit status 3");
  failed.extra["exit_code"] = int64_t{3};
  failed.extra["stderr"] = std::string("boom\n");
  writer_->Write(0, Ok("zero"), fingerprinter.Fingerprint("zero"));
  writer_->Write(1, failed, fingerprinter.Fingerprint("one"));
  writer_->Write(2, json, fingerprinter.Fingerprint("two"));
  writer_.reset();
  ResumeLog log;
  Status status = ResumeLog::Load(path_, /*keep_failed=*/true, /*ordered=*/true, &log);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(log.kept(), 3u);
  EXPECT_TRUE(log.append());
  EXPECT_TRUE(log.CheckItem(0, fingerprinter.Fingerprint("zero")).ok());
  EXPECT_TRUE(log.CheckItem(1, fingerprinter.Fingerprint("one")).ok());
  EXPECT_FALSE(log.CheckItem(2, fingerprinter.Fingerprint("three")).ok());
}

// Records for a pipe nobody reads stay buffered instead of blocking the
// caller; the pipe's descriptor itself stays blocking (the shell shares it);
// once the reader reads, everything arrives, in order.
TEST(RecordWriterPipeTest, APipeNobodyReadsNeverBlocksTheWriter) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string line(1000, 'x');
  {
    RecordWriter writer(fds[1], false, OutputFormat::kRaw);
    size_t written = 0;
    while (!writer.full()) {
      writer.Write(written++, Ok(line));
      ASSERT_TRUE(writer.FlushSome().ok());
      ASSERT_LT(written, 100000u) << "never full";
    }
    EXPECT_TRUE(writer.waiting());
    // The pipe took its size (64 KiB or 1 MiB), no multiple of a 1,001-byte
    // record: the last write ended inside one (a progress line must wait).
    EXPECT_FALSE(writer.at_line_start());
    EXPECT_EQ(fcntl(fds[1], F_GETFL) & O_NONBLOCK, 0);
    // Nothing is lost once the reader reads: Flush waits for it.
    pid_t reader = fork();
    ASSERT_GE(reader, 0);
    if (reader == 0) {
      // (The writer's own descriptor of the pipe is open here too: no EOF.)
      char buf[65536];
      size_t bytes = 0, expected = written * (line.size() + 1);
      for (ssize_t n; bytes < expected && (n = read(fds[0], buf, sizeof buf)) > 0;) {
        for (ssize_t i = 0; i < n; ++i) {
          bool end_of_line = (bytes + i) % (line.size() + 1) == line.size();
          if (buf[i] != (end_of_line ? '\n' : 'x')) _exit(2);
        }
        bytes += static_cast<size_t>(n);
      }
      _exit(bytes == expected ? 0 : 1);
    }
    close(fds[0]);
    EXPECT_TRUE(writer.Flush().ok());
    EXPECT_FALSE(writer.waiting());
    EXPECT_TRUE(writer.at_line_start());
    int status = 0;
    ASSERT_EQ(waitpid(reader, &status, 0), reader);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "records lost or out of order";
  }
  close(fds[1]);
}

TEST_F(RecordWriterTest, RawWritesTextAndNewline) {
  EXPECT_EQ(Raw(0, Ok("hello \"world\"")), "hello \"world\"\n");
}

TEST_F(RecordWriterTest, RawWritesEmptyLineForFailure) {
  Result result = Failed("it broke");
  result.extra["exit_code"] = int64_t{1};
  EXPECT_EQ(Raw(5, result), "\n");
}

TEST_F(RecordWriterTest, FormatAppendsToExistingText) {
  std::string out = "before\n";
  RecordWriter::FormatRecord(OutputFormat::kRaw, 0, Ok("after"), &out);
  EXPECT_EQ(out, "before\nafter\n");
}

TEST_F(RecordWriterTest, WritesBufferedRecordsOnFlush) {
  OpenTempFile(OutputFormat::kJsonl);
  writer_->Write(0, Ok("a"));
  writer_->Write(1, Failed("e"));
  EXPECT_GT(writer_->buffered(), 0u);
  EXPECT_EQ(TempFileSize(), 0u);  // nothing written before Flush
  Flush();
  EXPECT_EQ(writer_->buffered(), 0u);
  EXPECT_EQ(ReadTempFile(),
            "{\"index\":0,\"ok\":true,\"result\":\"a\"}\n"
            "{\"index\":1,\"ok\":false,\"error\":\"e\"}\n");
}

TEST_F(RecordWriterTest, WritesRawRecordsToFile) {
  OpenTempFile(OutputFormat::kRaw);
  writer_->Write(0, Ok("one"));
  writer_->Write(1, Failed("lost"));
  writer_->Write(2, Ok("three"));
  Flush();
  EXPECT_EQ(ReadTempFile(), "one\n\nthree\n");
}

TEST_F(RecordWriterTest, WritesWhenBufferFills) {
  OpenTempFile(OutputFormat::kRaw);
  const std::string line(1000, 'x');
  for (int i = 0; i < 3000; ++i) writer_->Write(i, Ok(line));
  EXPECT_GT(TempFileSize(), 0u);
  EXPECT_LT(writer_->buffered(), 3000u * 1001u);
  Flush();
  EXPECT_EQ(TempFileSize(), 3000u * 1001u);
}

TEST_F(RecordWriterTest, DestructorFlushes) {
  OpenTempFile(OutputFormat::kRaw);
  writer_->Write(0, Ok("kept"));
  writer_.reset();
  EXPECT_EQ(ReadTempFile(), "kept\n");
}

TEST_F(RecordWriterTest, OpenTruncatesExistingFile) {
  OpenTempFile(OutputFormat::kRaw);
  writer_->Write(0, Ok("a long first version"));
  writer_.reset();
  ASSERT_TRUE(RecordWriter::Open(path_, OutputFormat::kRaw, &writer_).ok());
  writer_->Write(0, Ok("b"));
  Flush();
  EXPECT_EQ(ReadTempFile(), "b\n");
}

TEST_F(RecordWriterTest, WritesToPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  writer_ = std::make_unique<RecordWriter>(fds[1], /*owned=*/true, OutputFormat::kJsonl);
  writer_->Write(3, Ok("p"));
  Flush();
  writer_.reset();  // closes the write end
  std::string data;
  char buf[256];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) data.append(buf, n);
  close(fds[0]);
  EXPECT_EQ(data, "{\"index\":3,\"ok\":true,\"result\":\"p\"}\n");
}

TEST_F(RecordWriterTest, WriteErrorIsStickyAndDiscardsRecords) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  writer_ = std::make_unique<RecordWriter>(fds[1], /*owned=*/true, OutputFormat::kRaw);
  writer_->Write(0, Ok("x"));
  Status first = writer_->Flush();
  EXPECT_FALSE(first.ok());
  EXPECT_FALSE(first.message().empty());
  writer_->Write(1, Ok("y"));
  EXPECT_EQ(writer_->buffered(), 0u);
  Status second = writer_->Flush();
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.message(), first.message());
}

TEST_F(RecordWriterTest, OpenOfUnwritablePathFails) {
  const std::string path = "/nonexistent-dir/x";
  Status status = RecordWriter::Open(path, OutputFormat::kJsonl, &writer_);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(status.message().empty());
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

TEST(RecordWriterStdoutTest, WritesStdoutAsItIsAndNothingForNothing) {
  std::string out;
  RecordWriter::FormatRecord(OutputFormat::kStdout, 0, Ok("a\nb"), &out);
  RecordWriter::FormatRecord(OutputFormat::kStdout, 1, Ok(""), &out);
  RecordWriter::FormatRecord(OutputFormat::kStdout, 2, Ok("c\n"), &out);
  EXPECT_EQ(out, "a\nbc\n");
}

TEST(RecordWriterStdoutTest, FailedCommandWritesItsStdoutAndStderr) {
  Result failed;
  failed.value = "exit code 3";
  failed.extra["exit_code"] = int64_t{3};
  failed.extra["stdout"] = std::string("partial\n");
  failed.extra["stderr"] = std::string("oops\n");
  std::string out;
  RecordWriter::FormatRecord(OutputFormat::kStdout, 4, failed, &out);
  EXPECT_EQ(out, "partial\n");
  EXPECT_EQ(RecordWriter::StderrOf(4, failed), "oops\n");
}

TEST(RecordWriterStdoutTest, FailureOutsideTheCommandIsToldOnStderr) {
  Result failed;
  failed.value = "cannot run 'x': No such file or directory";
  std::string out;
  RecordWriter::FormatRecord(OutputFormat::kStdout, 7, failed, &out);
  EXPECT_EQ(out, "");
  EXPECT_EQ(RecordWriter::StderrOf(7, failed),
            "fanmap: item 7: cannot run 'x': No such file or directory\n");
  EXPECT_EQ(RecordWriter::StderrOf(8, Ok("fine")), "");
}

}  // namespace
}  // namespace fanmap
