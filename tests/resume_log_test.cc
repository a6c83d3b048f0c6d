#include "coordinator/resume_log.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace fanmap {
namespace {

// A complete record line as the writer produces it.
std::string Record(uint64_t index, bool ok, const std::string& value = "") {
  std::string v = value.empty() ? "value" + std::to_string(index) : value;
  return "{\"index\":" + std::to_string(index) + ",\"ok\":" + (ok ? "true" : "false") +
         ",\"value\":\"" + v + "\"}\n";
}

class ResumeLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TMPDIR");
    dir_ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/fanmap_resume_XXXXXX";
    ASSERT_NE(mkdtemp(&dir_[0]), nullptr);
    path_ = dir_ + "/out.jsonl";
  }

  void TearDown() override {
    log_.reset();
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }

  void Write(const std::string& contents) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << contents;
    ASSERT_TRUE(out.good());
  }

  // Writes the records of `indices`, all ok, in that order; returns the text.
  std::string WriteRecords(const std::vector<uint64_t>& indices) {
    std::string text;
    for (uint64_t index : indices) text += Record(index, true);
    Write(text);
    return text;
  }

  void Load(bool keep_failed = true, bool ordered = true) {
    log_ = std::make_unique<ResumeLog>();
    Status status = ResumeLog::Load(path_, keep_failed, ordered, log_.get());
    ASSERT_TRUE(status.ok()) << status.message();
  }

  // "ok", "failed" or "absent" for the record of `index`.
  std::string Kept(uint64_t index) const {
    bool ok = false;
    if (!log_->Has(index, &ok)) return "absent";
    return ok ? "ok" : "failed";
  }

  std::string Line(uint64_t index) const {
    std::string line;
    Status status = log_->Line(index, &line);
    EXPECT_TRUE(status.ok()) << status.message();
    return line;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<ResumeLog> log_;
};

TEST_F(ResumeLogTest, MissingFileGivesEmptyLogToAppendTo) {
  Load();
  EXPECT_EQ(log_->kept(), 0u);
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->valid_bytes(), 0u);
  EXPECT_EQ(log_->torn_bytes(), 0u);
  EXPECT_EQ(log_->dropped(), 0u);
  EXPECT_EQ(Kept(0), "absent");
}

TEST_F(ResumeLogTest, EmptyFileGivesEmptyLogToAppendTo) {
  Write("");
  Load();
  EXPECT_EQ(log_->kept(), 0u);
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->valid_bytes(), 0u);
  EXPECT_EQ(log_->torn_bytes(), 0u);
}

TEST_F(ResumeLogTest, UnreadablePathIsError) {
  // A directory opens but cannot be read.
  ResumeLog directory;
  EXPECT_FALSE(ResumeLog::Load(dir_, true, true, &directory).ok());
  // A path below a regular file cannot be opened.
  WriteRecords({0});
  ResumeLog below_file;
  EXPECT_FALSE(ResumeLog::Load(path_ + "/x", true, true, &below_file).ok());
}

TEST_F(ResumeLogTest, AppendsToOrderedPrefix) {
  std::string text = Record(0, true) + Record(1, false) + Record(2, true) + Record(3, true);
  Write(text);
  Load(/*keep_failed=*/true, /*ordered=*/true);
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->kept(), 4u);
  EXPECT_EQ(log_->valid_bytes(), text.size());
  EXPECT_EQ(log_->torn_bytes(), 0u);
  EXPECT_EQ(log_->dropped(), 0u);
  EXPECT_EQ(Kept(0), "ok");
  EXPECT_EQ(Kept(1), "failed");
  EXPECT_EQ(Kept(2), "ok");
  EXPECT_EQ(Kept(3), "ok");
  EXPECT_EQ(Kept(4), "absent");
}

TEST_F(ResumeLogTest, CutsTornLastLine) {
  std::string whole = WriteRecords({0, 1, 2});
  std::string torn = "{\"index\":3,\"ok\":tr";
  Write(whole + torn);
  Load();
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->kept(), 3u);
  EXPECT_EQ(log_->valid_bytes(), whole.size());
  EXPECT_EQ(log_->torn_bytes(), torn.size());
  EXPECT_EQ(Kept(2), "ok");
  EXPECT_EQ(Kept(3), "absent");
}

TEST_F(ResumeLogTest, CutsRecordWithoutFinalNewline) {
  std::string whole = WriteRecords({0, 1});
  std::string last = Record(2, true);
  last.pop_back();
  Write(whole + last);
  Load();
  EXPECT_EQ(log_->valid_bytes(), whole.size());
  EXPECT_EQ(log_->torn_bytes(), last.size());
  EXPECT_EQ(Kept(2), "absent");
  EXPECT_EQ(log_->kept(), 2u);
}

TEST_F(ResumeLogTest, CutsCompleteLastLineThatIsNotJson) {
  std::string whole = WriteRecords({0, 1});
  std::string garbage = "{\"index\":2,\"ok\":true,\"value\":\"x\n";
  Write(whole + garbage);
  Load();
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->kept(), 2u);
  EXPECT_EQ(log_->valid_bytes(), whole.size());
  EXPECT_EQ(log_->torn_bytes(), garbage.size());
  EXPECT_EQ(Kept(2), "absent");
}

TEST_F(ResumeLogTest, LineWithoutIndexIsNotARecord) {
  std::string whole = WriteRecords({0, 1});
  std::string last = "{\"ok\":true,\"value\":\"value2\"}\n";
  Write(whole + last);
  Load();
  EXPECT_EQ(log_->kept(), 2u);
  EXPECT_EQ(log_->valid_bytes(), whole.size());
  EXPECT_GT(log_->torn_bytes(), 0u);
}

TEST_F(ResumeLogTest, LineWithoutOkIsNotARecord) {
  std::string whole = WriteRecords({0, 1});
  std::string last = "{\"index\":2,\"value\":\"value2\"}\n";
  Write(whole + last);
  Load();
  EXPECT_EQ(log_->kept(), 2u);
  EXPECT_EQ(Kept(2), "absent");
  EXPECT_EQ(log_->valid_bytes(), whole.size());
  EXPECT_GT(log_->torn_bytes(), 0u);
}

TEST_F(ResumeLogTest, LineWithNonNumericIndexIsNotARecord) {
  std::string whole = WriteRecords({0, 1});
  Write(whole + "{\"index\":\"2\",\"ok\":true}\n");
  Load();
  EXPECT_EQ(log_->kept(), 2u);
  EXPECT_EQ(log_->valid_bytes(), whole.size());
  EXPECT_GT(log_->torn_bytes(), 0u);
}

TEST_F(ResumeLogTest, DropsFailedRecordsWhenResumingFailed) {
  Write(Record(0, true) + Record(1, false) + Record(2, true) + Record(3, false));
  Load(/*keep_failed=*/false, /*ordered=*/true);
  EXPECT_EQ(Kept(0), "ok");
  EXPECT_EQ(Kept(1), "absent");
  EXPECT_EQ(Kept(2), "ok");
  EXPECT_EQ(Kept(3), "absent");
  EXPECT_EQ(log_->kept(), 2u);
  EXPECT_EQ(log_->dropped(), 2u);
  EXPECT_FALSE(log_->append());
}

TEST_F(ResumeLogTest, RewritesPrefixFollowedByFailedRecordWhenResumingFailed) {
  Write(Record(0, true) + Record(1, true) + Record(2, false));
  Load(/*keep_failed=*/false, /*ordered=*/true);
  EXPECT_EQ(log_->kept(), 2u);
  EXPECT_EQ(log_->dropped(), 1u);
  EXPECT_FALSE(log_->append());
}

TEST_F(ResumeLogTest, DropsFailedRecordsWhenResumingFailedInUnorderedMode) {
  Write(Record(2, true) + Record(0, false) + Record(1, true));
  Load(/*keep_failed=*/false, /*ordered=*/false);
  EXPECT_EQ(Kept(0), "absent");
  EXPECT_EQ(Kept(1), "ok");
  EXPECT_EQ(Kept(2), "ok");
  EXPECT_EQ(log_->dropped(), 1u);
  EXPECT_FALSE(log_->append());
}

TEST_F(ResumeLogTest, AppendsWhenResumingFailedFindsNoFailures) {
  std::string text = WriteRecords({0, 1, 2});
  Load(/*keep_failed=*/false, /*ordered=*/true);
  EXPECT_EQ(log_->dropped(), 0u);
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->valid_bytes(), text.size());
}

TEST_F(ResumeLogTest, AppendsToAnySetInUnorderedMode) {
  std::string text = WriteRecords({3, 0, 5});
  Load(/*keep_failed=*/true, /*ordered=*/false);
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->kept(), 3u);
  EXPECT_EQ(log_->valid_bytes(), text.size());
  EXPECT_EQ(Kept(0), "ok");
  EXPECT_EQ(Kept(1), "absent");
  EXPECT_EQ(Kept(3), "ok");
  EXPECT_EQ(Kept(5), "ok");
}

TEST_F(ResumeLogTest, RewritesSetThatIsNotPrefixInOrderedMode) {
  WriteRecords({3, 0, 5});
  Load(/*keep_failed=*/true, /*ordered=*/true);
  EXPECT_FALSE(log_->append());
  EXPECT_EQ(log_->kept(), 3u);
  EXPECT_EQ(Kept(5), "ok");
}

TEST_F(ResumeLogTest, RewritesPrefixWithGapInOrderedMode) {
  WriteRecords({0, 1, 3});
  Load(/*keep_failed=*/true, /*ordered=*/true);
  EXPECT_FALSE(log_->append());
}

TEST_F(ResumeLogTest, RewritesPrefixOutOfOrderInOrderedMode) {
  WriteRecords({1, 0, 2});
  Load(/*keep_failed=*/true, /*ordered=*/true);
  EXPECT_FALSE(log_->append());
  EXPECT_EQ(log_->kept(), 3u);
}

TEST_F(ResumeLogTest, KeepsFirstRecordOfIndexWrittenTwice) {
  std::string first = Record(0, true, "first");
  std::string second = Record(0, false, "second");
  Write(first + Record(1, true) + second);
  Load(/*keep_failed=*/true, /*ordered=*/false);
  EXPECT_EQ(log_->kept(), 2u);
  EXPECT_EQ(Kept(0), "ok");
  EXPECT_EQ(Line(0), first);
}

TEST_F(ResumeLogTest, KeepsFirstRecordsOfManyIndicesWrittenTwice) {
  std::string text;
  for (uint64_t i = 0; i < 100; ++i) text += Record(i, true, "first" + std::to_string(i));
  for (uint64_t i = 0; i < 100; ++i) text += Record(i, true, "second" + std::to_string(i));
  Write(text);
  Load(/*keep_failed=*/true, /*ordered=*/false);
  EXPECT_EQ(log_->kept(), 100u);
  for (uint64_t i = 0; i < 100; ++i) {
    EXPECT_EQ(Line(i), Record(i, true, "first" + std::to_string(i))) << "index " << i;
  }
}

TEST_F(ResumeLogTest, LineReturnsExactRecordBytes) {
  std::string odd = "{ \"value\" : \"a  b\\n\" ,\"ok\":true,  \"index\": 1 }\n";
  Write(Record(0, true) + odd + Record(2, false));
  Load();
  EXPECT_EQ(Line(0), Record(0, true));
  EXPECT_EQ(Line(1), odd);
  EXPECT_EQ(Line(2), Record(2, false));
}

TEST_F(ResumeLogTest, LineOfRecordNotKeptIsError) {
  WriteRecords({0, 1});
  Load();
  std::string line;
  EXPECT_FALSE(log_->Line(2, &line).ok());
}

TEST_F(ResumeLogTest, ReadsRecordLongerThanReadBuffer) {
  std::string big = Record(1, true, std::string(200000, 'x'));
  std::string text = Record(0, true) + big + Record(2, true);
  Write(text);
  Load();
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->valid_bytes(), text.size());
  EXPECT_EQ(Line(1), big);
  EXPECT_EQ(Line(2), Record(2, true));
}

TEST_F(ResumeLogTest, ReadsManyRecords) {
  std::vector<uint64_t> indices;
  for (uint64_t i = 0; i < 20000; ++i) indices.push_back(i);
  std::string text = WriteRecords(indices);
  Load();
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->kept(), indices.size());
  EXPECT_EQ(log_->valid_bytes(), text.size());
  for (uint64_t i : {0u, 4096u, 12345u, 19999u}) EXPECT_EQ(Line(i), Record(i, true));
  EXPECT_EQ(Kept(20000), "absent");
}

}  // namespace
}  // namespace fanmap
