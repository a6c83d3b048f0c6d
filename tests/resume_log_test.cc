#include "coordinator/resume_log.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/item_fingerprint.h"
#include "coordinator/record_writer.h"

namespace fanmap {
namespace {

// The tests' job: item N is the text "itemN".
const ItemFingerprinter& Fingerprinter() {
  static const ItemFingerprinter* fingerprinter = [] {
    JobSpec job;
    job.kind = "builtin";
    job.argv = {"echo"};
    return new ItemFingerprinter(job);
  }();
  return *fingerprinter;
}

std::string Item(uint64_t index) { return "item" + std::to_string(index); }
uint64_t Fp(uint64_t index) { return Fingerprinter().Fingerprint(Item(index)); }

// A complete record line as the writer produces it for a file.
std::string Record(uint64_t index, bool ok, const std::string& value = "") {
  Result result;
  result.ok = ok;
  result.value = value.empty() ? "value" + std::to_string(index) : value;
  std::string line;
  RecordWriter::FormatRecord(OutputFormat::kJsonl, index, result, &line, Fp(index));
  return line;
}

// The same record without "fp", as fanmap wrote it before fingerprints.
std::string RecordWithoutFingerprint(uint64_t index) {
  std::string line;
  Result result;
  result.ok = true;
  result.value = "value" + std::to_string(index);
  RecordWriter::FormatRecord(OutputFormat::kJsonl, index, result, &line);
  return line;
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

  std::string Read() const {
    std::ifstream in(path_, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  void Load(bool keep_failed = true, bool ordered = true) {
    log_ = std::make_unique<ResumeLog>();
    Status status = ResumeLog::Load(path_, keep_failed, ordered, log_.get());
    ASSERT_TRUE(status.ok()) << status.message();
  }

  // Loads a file that must be refused, checks that it was left as it was,
  // and returns the message.
  std::string Refused(bool keep_failed = true, bool ordered = true) {
    std::string before = Read();
    ResumeLog log;
    Status status = ResumeLog::Load(path_, keep_failed, ordered, &log);
    EXPECT_FALSE(status.ok());
    EXPECT_EQ(Read(), before);
    EXPECT_NE(status.message().find(path_), std::string::npos) << status.message();
    EXPECT_NE(status.message().find("leaves the file as it is"), std::string::npos)
        << status.message();
    return status.message();
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

TEST_F(ResumeLogTest, CutsTornLineThatIsOnlyTheStartOfARecord) {
  std::string whole = WriteRecords({0});
  for (std::string torn : {"{", "{\"ind", "{\"index\":"}) {
    Write(whole + torn);
    Load();
    EXPECT_EQ(log_->valid_bytes(), whole.size()) << torn;
    EXPECT_EQ(log_->torn_bytes(), torn.size()) << torn;
  }
}

TEST_F(ResumeLogTest, CutsTornFirstLine) {
  std::string torn = Record(0, true);
  torn.resize(torn.size() / 2);
  Write(torn);
  Load();
  EXPECT_EQ(log_->kept(), 0u);
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->valid_bytes(), 0u);
  EXPECT_EQ(log_->torn_bytes(), torn.size());
}

TEST_F(ResumeLogTest, RefusesTextFileNamingLineOne) {
  Write("first line of my notes\nsecond line\n");
  std::string message = Refused();
  EXPECT_NE(message.find(" line 1: not a fanmap record"), std::string::npos) << message;
}

// A line was read whole before it was judged: a file of gigabytes without a
// newline (a disk image named by mistake, a sparse file) took that much
// memory. A line that does not begin like a record is refused at once.
TEST_F(ResumeLogTest, RefusesAHugeLineThatIsNoRecordWithoutReadingIt) {
  Write(Record(0, true));
  ASSERT_EQ(truncate(path_.c_str(), 4ll << 30), 0);  // 4 GiB: zeros, without a newline
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct rlimit limit = {1ull << 30, 1ull << 30};  // 1 GiB of address space
    setrlimit(RLIMIT_AS, &limit);
    int code = 3;
    try {
      ResumeLog log;
      Status status = ResumeLog::Load(path_, true, true, &log);
      code =
          !status.ok() && status.message().find(" line 2: not a fanmap record") != std::string::npos
              ? 0
              : 2;
    } catch (const std::bad_alloc&) {
      code = 4;
    }
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: not refused as line 2; 4: out of memory";
}

TEST_F(ResumeLogTest, RefusesTextWithoutNewlineInsteadOfCuttingIt) {
  Write("just one line, no newline");
  std::string message = Refused();
  EXPECT_NE(message.find(" line 1: "), std::string::npos) << message;
}

TEST_F(ResumeLogTest, RefusesLastLineWithoutNewlineThatDoesNotStartLikeARecord) {
  Write(Record(0, true) + Record(1, true) + "trailing words");
  std::string message = Refused();
  EXPECT_NE(message.find(" line 3: "), std::string::npos) << message;
}

TEST_F(ResumeLogTest, RefusesGarbageLineInTheMiddleNamingItsNumber) {
  std::string text;
  for (uint64_t i = 0; i < 10; ++i) text += Record(i, true);
  text += "garbage\n";
  for (uint64_t i = 10; i < 20; ++i) text += Record(i, true);
  Write(text);
  std::string message = Refused();
  EXPECT_NE(message.find(" line 11: not a fanmap record"), std::string::npos) << message;
}

TEST_F(ResumeLogTest, RefusesCompleteLastLineThatIsNotJson) {
  WriteRecords({0, 1});
  Write(Read() + "{\"index\":2,\"ok\":true,\"result\":\"x\n");
  std::string message = Refused();
  EXPECT_NE(message.find(" line 3: not a fanmap record"), std::string::npos) << message;
}

TEST_F(ResumeLogTest, RefusesEmptyLine) {
  Write(Record(0, true) + "\n" + Record(1, true));
  EXPECT_NE(Refused().find(" line 2: "), std::string::npos);
}

TEST_F(ResumeLogTest, RefusesLineWithoutIndex) {
  Write(Record(0, true) + "{\"ok\":true,\"fp\":\"" + FingerprintHex(Fp(1)) + "\"}\n");
  EXPECT_NE(Refused().find(" line 2: not a fanmap record"), std::string::npos);
}

TEST_F(ResumeLogTest, RefusesLineWithoutOk) {
  Write(Record(0, true) + "{\"index\":1,\"fp\":\"" + FingerprintHex(Fp(1)) + "\"}\n");
  EXPECT_NE(Refused().find(" line 2: not a fanmap record"), std::string::npos);
}

TEST_F(ResumeLogTest, RefusesNonNumericOrNegativeIndex) {
  for (const char* index : {"\"1\"", "-1", "1.5"}) {
    Write(Record(0, true) + "{\"index\":" + index + ",\"ok\":true,\"fp\":\"" +
          FingerprintHex(Fp(1)) + "\"}\n");
    EXPECT_NE(Refused().find(" line 2: not a fanmap record"), std::string::npos) << index;
  }
}

TEST_F(ResumeLogTest, RefusesRecordWithoutFingerprint) {
  Write(Record(0, true) + RecordWithoutFingerprint(1) + Record(2, true));
  std::string message = Refused();
  EXPECT_NE(message.find(" line 2: a record without a fingerprint"), std::string::npos) << message;
}

TEST_F(ResumeLogTest, RefusesFileOfAnOlderFanmap) {
  Write(RecordWithoutFingerprint(0) + RecordWithoutFingerprint(1));
  EXPECT_NE(Refused().find(" line 1: a record without a fingerprint"), std::string::npos);
}

TEST_F(ResumeLogTest, RefusesMalformedFingerprint) {
  for (const std::string fp :
       {"\"8e6cc5433de9cad\"", "\"8E6CC5433DE9CAD0\"", "\"8e6cc5433de9cad00\"", "12", "null"}) {
    Write("{\"index\":0,\"ok\":true,\"fp\":" + fp + "}\n");
    EXPECT_NE(Refused().find(" line 1: a record without a fingerprint"), std::string::npos) << fp;
  }
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

TEST_F(ResumeLogTest, AppendsToPrefixInAnyOrderInUnorderedMode) {
  std::string text = WriteRecords({2, 0, 1});
  Load(/*keep_failed=*/true, /*ordered=*/false);
  EXPECT_TRUE(log_->append());
  EXPECT_EQ(log_->kept(), 3u);
  EXPECT_EQ(log_->valid_bytes(), text.size());
  EXPECT_EQ(Kept(0), "ok");
  EXPECT_EQ(Kept(2), "ok");
  EXPECT_EQ(Kept(3), "absent");
}

TEST_F(ResumeLogTest, RewritesSetWithGapsInUnorderedMode) {
  // Appending the record of 1 could happen before item 5 is checked: a
  // refusal then would leave the file changed.
  WriteRecords({3, 0, 5});
  Load(/*keep_failed=*/true, /*ordered=*/false);
  EXPECT_FALSE(log_->append());
  EXPECT_EQ(log_->kept(), 3u);
  EXPECT_EQ(Kept(0), "ok");
  EXPECT_EQ(Kept(1), "absent");
  EXPECT_EQ(Kept(3), "ok");
  EXPECT_EQ(Kept(5), "ok");
  EXPECT_EQ(Line(5), Record(5, true));
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

TEST_F(ResumeLogTest, RefusesIndexWrittenTwiceNamingBothLines) {
  Write(Record(0, true, "first") + Record(1, true) + Record(0, false, "second"));
  std::string message = Refused(/*keep_failed=*/true, /*ordered=*/false);
  EXPECT_NE(message.find(" line 3: a second record of item 0 (the first is on line 1)"),
            std::string::npos)
      << message;
}

TEST_F(ResumeLogTest, RefusesManyIndicesWrittenTwiceNamingTheFirstRepeat) {
  std::string text;
  for (uint64_t i = 0; i < 100; ++i) text += Record(i, true, "first" + std::to_string(i));
  for (uint64_t i = 0; i < 100; ++i) text += Record(i, true, "second" + std::to_string(i));
  Write(text);
  std::string message = Refused(/*keep_failed=*/true, /*ordered=*/false);
  EXPECT_NE(message.find(" line 101: a second record of item 0 (the first is on line 1)"),
            std::string::npos)
      << message;
}

TEST_F(ResumeLogTest, RefusesIndexWrittenTwiceEvenIfFailedRecordsAreDropped) {
  Write(Record(0, false) + Record(1, true) + Record(0, false));
  std::string message = Refused(/*keep_failed=*/false, /*ordered=*/true);
  EXPECT_NE(message.find(" line 3: a second record of item 0"), std::string::npos) << message;
}

TEST_F(ResumeLogTest, LineReturnsExactRecordBytes) {
  std::string odd = "{ \"value\" : \"a  b\\n\" ,\"ok\":true, \"fp\":\"" + FingerprintHex(Fp(1)) +
                    "\",  \"index\": 1 }\n";
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

TEST_F(ResumeLogTest, LoadLeavesTheFileAsItWas) {
  std::string torn = "{\"index\":2,\"ok\":tr";
  std::string text = WriteRecords({0, 1}) + torn;
  Write(text);
  Load(/*keep_failed=*/false, /*ordered=*/true);
  EXPECT_EQ(log_->torn_bytes(), torn.size());
  EXPECT_EQ(Read(), text);
}

TEST_F(ResumeLogTest, CheckItemAcceptsTheItemsTheRecordsWereMadeFrom) {
  WriteRecords({0, 1, 2});
  Load();
  for (uint64_t i = 0; i < 6; ++i) {
    Status status = log_->CheckItem(i, Fp(i));
    EXPECT_TRUE(status.ok()) << status.message();
  }
}

TEST_F(ResumeLogTest, CheckItemAcceptsAnyItemWithoutRecord) {
  WriteRecords({0, 2});
  Load(/*keep_failed=*/true, /*ordered=*/false);
  EXPECT_TRUE(log_->CheckItem(0, Fp(0)).ok());
  EXPECT_TRUE(log_->CheckItem(1, 12345).ok());
  EXPECT_TRUE(log_->CheckItem(2, Fp(2)).ok());
  EXPECT_TRUE(log_->CheckItem(3, 12345).ok());
}

TEST_F(ResumeLogTest, CheckItemSaysTheJobChangedWhenTheFirstRecordDiffers) {
  WriteRecords({0, 1, 2});
  Load();
  JobSpec other;
  other.kind = "builtin";
  other.argv = {"sha256:1"};
  Status status = log_->CheckItem(0, ItemFingerprinter(other).Fingerprint(Item(0)));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path_ + ": the job changed (payload, command or URL)"),
            std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find("item 0 (input line 1)"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("leaves the file as it is"), std::string::npos);
}

TEST_F(ResumeLogTest, CheckItemNamesTheItemThatDiffersAfterOthersMatched) {
  WriteRecords({0, 1, 2, 3, 4, 5, 6});
  Load();
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(log_->CheckItem(i, Fp(i)).ok());
  Status status = log_->CheckItem(5, Fingerprinter().Fingerprint("changed"));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(
      status.message().find(path_ + ": item 5 (input line 6) differs from the one its record was "
                                    "made from"),
      std::string::npos)
      << status.message();
}

TEST_F(ResumeLogTest, CheckItemChecksDroppedFailedRecordsToo) {
  Write(Record(0, true) + Record(1, false));
  Load(/*keep_failed=*/false, /*ordered=*/true);
  EXPECT_EQ(Kept(1), "absent");
  EXPECT_TRUE(log_->CheckItem(0, Fp(0)).ok());
  EXPECT_FALSE(log_->CheckItem(1, Fp(7)).ok());
}

TEST_F(ResumeLogTest, CheckItemWorksOutOfOrder) {
  WriteRecords({0, 1, 2, 3});
  Load();
  EXPECT_TRUE(log_->CheckItem(3, Fp(3)).ok());
  EXPECT_TRUE(log_->CheckItem(1, Fp(1)).ok());
  EXPECT_TRUE(log_->CheckItem(1, Fp(1)).ok());
  EXPECT_FALSE(log_->CheckItem(0, Fp(2)).ok());
  EXPECT_TRUE(log_->CheckItem(2, Fp(2)).ok());
}

TEST_F(ResumeLogTest, CheckTotalRefusesRecordsOfItemsTheInputDoesNotHave) {
  std::vector<uint64_t> indices;
  for (uint64_t i = 0; i < 100; ++i) indices.push_back(i);
  WriteRecords(indices);
  Load();
  Status status = log_->CheckTotal(50);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(
      status.message().find(path_ + " holds a record of index 99, the input has only 50 items"),
      std::string::npos)
      << status.message();
  EXPECT_FALSE(log_->CheckTotal(99).ok());
  EXPECT_TRUE(log_->CheckTotal(100).ok());
  EXPECT_TRUE(log_->CheckTotal(150).ok());
}

TEST_F(ResumeLogTest, CheckTotalCountsDroppedFailedRecords) {
  Write(Record(0, true) + Record(1, true) + Record(2, false));
  Load(/*keep_failed=*/false, /*ordered=*/true);
  EXPECT_FALSE(log_->CheckTotal(2).ok());
  EXPECT_TRUE(log_->CheckTotal(3).ok());
}

TEST_F(ResumeLogTest, CheckTotalOfEmptyLogAcceptsAnyInput) {
  Load();
  EXPECT_TRUE(log_->CheckTotal(0).ok());
  EXPECT_TRUE(log_->CheckItem(0, 1).ok());
}

}  // namespace
}  // namespace fanmap
