#include "coordinator/input_reader.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/arg_table.h"
#include "common/protocol.h"
#include "coordinator/arg_assembler.h"

namespace fanmap {
namespace {

// Writes `data` to a fresh temporary file and returns its path; the file is
// removed by the destructor.
class TempFile {
 public:
  explicit TempFile(const std::string& data) {
    const char* dir = getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/fanmap_input_XXXXXX";
    int fd = mkstemp(&path_[0]);
    if (fd < 0) {
      ADD_FAILURE() << "mkstemp failed for " << path_;
      return;
    }
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = write(fd, data.data() + done, data.size() - done);
      if (n <= 0) {
        ADD_FAILURE() << "write to " << path_ << " failed";
        break;
      }
      done += static_cast<size_t>(n);
    }
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class InputReaderTest : public ::testing::Test {
 protected:
  void TearDown() override {
    reader_.reset();
    if (pipe_write_ >= 0) close(pipe_write_);
  }

  // Makes the reader read `data` from a regular file.
  void UseFile(const std::string& data) {
    file_ = std::make_unique<TempFile>(data);
    Status status = InputReader::Open(file_->path(), &reader_);
    ASSERT_TRUE(status.ok()) << status.message();
  }

  // Makes the reader read from a pipe that the test feeds with Feed().
  void UsePipe() {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    reader_ = std::make_unique<InputReader>(fds[0], /*owned=*/true);
    pipe_write_ = fds[1];
  }

  void Feed(const std::string& data) {
    ASSERT_EQ(write(pipe_write_, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }

  void ClosePipe() {
    close(pipe_write_);
    pipe_write_ = -1;
  }

  void Fill() {
    Status status = reader_->Fill();
    ASSERT_TRUE(status.ok()) << status.message();
  }

  // Fills and splits until the input is done; returns every line.
  std::vector<std::string> ReadAll() {
    std::vector<std::string> lines;
    std::string line;
    for (int reads = 0; !reader_->done() && reads < 10000; ++reads) {
      while (reader_->NextLine(&line)) lines.push_back(line);
      if (reader_->done()) break;
      Status status = reader_->Fill();
      EXPECT_TRUE(status.ok()) << status.message();
      if (!status.ok()) break;
    }
    EXPECT_TRUE(reader_->done());
    return lines;
  }

  std::vector<std::string> ReadFile(const std::string& data) {
    UseFile(data);
    return ReadAll();
  }

  std::unique_ptr<TempFile> file_;
  std::unique_ptr<InputReader> reader_;
  int pipe_write_ = -1;
};

using Lines = std::vector<std::string>;

TEST_F(InputReaderTest, SplitsOnNewline) {
  EXPECT_EQ(ReadFile("a\nbb\nccc\n"), (Lines{"a", "bb", "ccc"}));
}

TEST_F(InputReaderTest, RemovesOneTrailingCarriageReturn) {
  EXPECT_EQ(ReadFile("a\r\nb\r\r\nc\rd\n\r\n"), (Lines{"a", "b\r", "c\rd", ""}));
}

TEST_F(InputReaderTest, ReturnsFinalLineWithoutNewline) {
  EXPECT_EQ(ReadFile("a\nlast"), (Lines{"a", "last"}));
}

TEST_F(InputReaderTest, RemovesCarriageReturnOfFinalLineWithoutNewline) {
  EXPECT_EQ(ReadFile("a\nlast\r"), (Lines{"a", "last"}));
}

TEST_F(InputReaderTest, KeepsEmptyLinesAsItems) {
  EXPECT_EQ(ReadFile("\na\n\n\nb\n\n"), (Lines{"", "a", "", "", "b", ""}));
}

TEST_F(InputReaderTest, EmptyFileHasNoLines) {
  EXPECT_EQ(ReadFile(""), Lines{});
  EXPECT_EQ(reader_->line_number(), 0u);
}

TEST_F(InputReaderTest, ReturnsNoLineBeforeFirstFill) {
  UseFile("a\n");
  std::string line;
  EXPECT_FALSE(reader_->NextLine(&line));
  EXPECT_FALSE(reader_->eof());
  EXPECT_FALSE(reader_->done());
}

TEST_F(InputReaderTest, LineNumberCountsReturnedLines) {
  UseFile("a\n\nc");
  std::string line;
  EXPECT_EQ(reader_->line_number(), 0u);
  Fill();
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_EQ(reader_->line_number(), 1u);
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_EQ(reader_->line_number(), 2u);
  EXPECT_FALSE(reader_->NextLine(&line));  // "c" is not known to be complete yet
  EXPECT_EQ(reader_->line_number(), 2u);
  Fill();
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_EQ(line, "c");
  EXPECT_EQ(reader_->line_number(), 3u);
}

TEST_F(InputReaderTest, ReadsLineLongerThanOneReadChunk) {
  const std::string long_line(1 << 20, 'x');
  Lines lines = ReadFile("short\n" + long_line + "\nafter\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "short");
  EXPECT_EQ(lines[1].size(), long_line.size());
  EXPECT_EQ(lines[1], long_line);
  EXPECT_EQ(lines[2], "after");
}

// A line longer than any item may be was read whole, however long: it is
// kept to kMaxItemBytes + 1 bytes (it fails anyway), and its length is told.
TEST_F(InputReaderTest, KeepsNoMoreOfAnOverlongLineThanTellsItIsOne) {
  const size_t big = kMaxItemBytes + (40u << 20);
  std::string data = "short\n" + std::string(big, 'x') + "\nafter\n" + std::string(big, 'y');
  UseFile(data);
  data = std::string();
  std::vector<std::pair<size_t, uint64_t>> seen;  // (line size, record_bytes)
  std::string line;
  for (int reads = 0; !reader_->done() && reads < 100000; ++reads) {
    while (reader_->NextLine(&line)) seen.emplace_back(line.size(), reader_->record_bytes());
    Fill();
  }
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], std::make_pair(size_t{5}, uint64_t{5}));
  EXPECT_GT(seen[1].first, kMaxItemBytes);
  EXPECT_LE(seen[1].first, kMaxItemBytes + (2u << 20)) << "kept whole";
  EXPECT_EQ(seen[1].second, big);
  EXPECT_EQ(seen[2], std::make_pair(size_t{5}, uint64_t{5}));
  EXPECT_GT(seen[3].first, kMaxItemBytes);  // the last line, without a newline
  EXPECT_LE(seen[3].first, kMaxItemBytes + (2u << 20)) << "kept whole";
  EXPECT_EQ(seen[3].second, big);
}

TEST_F(InputReaderTest, ReadsManyLinesAcrossChunks) {
  std::string data;
  Lines expected;
  for (int i = 0; i < 200000; ++i) {
    expected.push_back(std::to_string(i));
    data += expected.back() + "\n";
  }
  EXPECT_EQ(ReadFile(data), expected);
  EXPECT_EQ(reader_->line_number(), expected.size());
}

TEST_F(InputReaderTest, WaitsForRestOfLineArrivingThroughPipe) {
  UsePipe();
  std::string line;
  Feed("hel");
  Fill();
  EXPECT_FALSE(reader_->NextLine(&line));
  Feed("lo\nwor");
  Fill();
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_EQ(line, "hello");
  EXPECT_FALSE(reader_->NextLine(&line));
  Feed("ld\n");
  Fill();
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_EQ(line, "world");
  EXPECT_FALSE(reader_->NextLine(&line));
  EXPECT_FALSE(reader_->eof());
  EXPECT_FALSE(reader_->done());
}

TEST_F(InputReaderTest, ReturnsUnterminatedLineOnlyAfterPipeCloses) {
  UsePipe();
  std::string line;
  Feed("a\ntail");
  Fill();
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_EQ(line, "a");
  EXPECT_FALSE(reader_->NextLine(&line));
  ClosePipe();
  Fill();
  EXPECT_TRUE(reader_->eof());
  EXPECT_FALSE(reader_->done());  // "tail" not returned yet
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_EQ(line, "tail");
  EXPECT_TRUE(reader_->done());
  EXPECT_FALSE(reader_->NextLine(&line));
}

TEST_F(InputReaderTest, IsDoneOnlyWhenEofAndAllLinesReturned) {
  UseFile("a\nb\n");
  std::string line;
  Fill();
  Fill();  // the second read sees the end of the file
  EXPECT_TRUE(reader_->eof());
  EXPECT_FALSE(reader_->done());
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_FALSE(reader_->done());
  ASSERT_TRUE(reader_->NextLine(&line));
  EXPECT_TRUE(reader_->done());
  EXPECT_FALSE(reader_->NextLine(&line));
}

TEST_F(InputReaderTest, FillAfterEofIsHarmless) {
  UseFile("a\n");
  EXPECT_EQ(ReadAll(), Lines{"a"});
  Fill();
  std::string line;
  EXPECT_FALSE(reader_->NextLine(&line));
  EXPECT_TRUE(reader_->done());
}

TEST_F(InputReaderTest, RecognizesRegularFilesAndPipes) {
  UseFile("a\n");
  EXPECT_TRUE(reader_->is_regular_file());
  UsePipe();
  EXPECT_FALSE(reader_->is_regular_file());
}

TEST_F(InputReaderTest, OpenOfMissingFileNamesThePath) {
  const std::string path = "/nonexistent-dir/fanmap-missing-input.txt";
  Status status = InputReader::Open(path, &reader_);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path), std::string::npos) << status.message();
}

TEST_F(InputReaderTest, OpenOfDashReadsStandardInput) {
  ASSERT_TRUE(InputReader::Open("-", &reader_).ok());
  EXPECT_EQ(reader_->fd(), 0);
  ASSERT_TRUE(InputReader::Open("", &reader_).ok());
  EXPECT_EQ(reader_->fd(), 0);
}

class CountLinesTest : public ::testing::Test {
 protected:
  // Returns the count, or -1 if CountLines refused.
  int64_t Count(const std::string& data) {
    TempFile file(data);
    uint64_t lines = 12345;
    if (!CountLines(file.path(), &lines)) return -1;
    return static_cast<int64_t>(lines);
  }
};

TEST_F(CountLinesTest, CountsLinesWithFinalNewline) { EXPECT_EQ(Count("a\nb\nc\n"), 3); }

TEST_F(CountLinesTest, CountsLastLineWithoutNewline) { EXPECT_EQ(Count("a\nb\nc"), 3); }

TEST_F(CountLinesTest, CountsEmptyLines) { EXPECT_EQ(Count("\n\n\n"), 3); }

TEST_F(CountLinesTest, EmptyFileHasZeroLines) { EXPECT_EQ(Count(""), 0); }

// -0 and -d: the total counts records by their delimiter, not newlines
// ("4/1 100.0%" for four NUL-ended items).
TEST_F(CountLinesTest, CountsByTheGivenDelimiter) {
  TempFile file(std::string("a\0b\nc\0d\0e", 9));
  uint64_t records = 0;
  ASSERT_TRUE(CountLines(file.path(), &records, '\0'));
  EXPECT_EQ(records, 4u);
  ASSERT_TRUE(CountLines(file.path(), &records, ','));
  EXPECT_EQ(records, 1u);
}

TEST_F(CountLinesTest, CountsLinesBeyondOneRead) {
  std::string data(3 << 20, 'x');
  for (size_t i = 99; i < data.size(); i += 100) data[i] = '\n';
  EXPECT_EQ(Count(data + "tail"), static_cast<int64_t>(data.size() / 100 + 1));
}

TEST_F(CountLinesTest, RefusesWhatIsNotARegularFile) {
  uint64_t lines = 0;
  EXPECT_FALSE(CountLines("/nonexistent-dir/missing.txt", &lines));
  EXPECT_FALSE(CountLines("/", &lines));
  EXPECT_FALSE(CountLines("-", &lines));
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

TEST_F(InputReaderTest, NulDelimiterKeepsNewlinesAndCarriageReturns) {
  UseFile(std::string("a b\r\nc\0d\0last", 14));
  reader_->set_delimiter('\0');
  EXPECT_EQ(ReadAll(), (Lines{"a b\r\nc", "d", "last"}));
}

TEST_F(InputReaderTest, AssemblerTurnsRecordsIntoTablesAndEndsOnlyWhenDrained) {
  UsePipe();
  ArgInput input;
  input.assemble = true;
  input.options.max_args = 2;
  input.others = {{"1", "2"}};
  ASSERT_TRUE(AttachArgInput(input, reader_.get()).ok());
  Feed("a\nb\n");
  Fill();
  std::string item;
  ArgTable table;
  ASSERT_TRUE(reader_->NextLine(&item));
  ASSERT_TRUE(DecodeArgTable(item, &table).ok());
  EXPECT_EQ(table, (ArgTable{{"a", "1"}, {"a", "2"}}));
  ASSERT_TRUE(reader_->NextLine(&item));
  ASSERT_TRUE(DecodeArgTable(item, &table).ok());
  EXPECT_EQ(table, (ArgTable{{"b", "1"}, {"b", "2"}}));
  Feed("c\n");
  ClosePipe();
  Fill();
  // "c 1", "c 2" make a full table; the input's end then shows.
  ASSERT_TRUE(reader_->NextLine(&item));
  ASSERT_TRUE(DecodeArgTable(item, &table).ok());
  EXPECT_EQ(table, (ArgTable{{"c", "1"}, {"c", "2"}}));
  EXPECT_FALSE(reader_->done());
  Fill();
  EXPECT_FALSE(reader_->NextLine(&item));
  EXPECT_TRUE(reader_->done());
}

TEST_F(InputReaderTest, FirstSourceValuesNeedNoInput) {
  UseFile("");
  ArgInput input;
  input.assemble = true;
  input.first_values = {"x", "y"};
  ASSERT_TRUE(AttachArgInput(input, reader_.get()).ok());
  Lines items = ReadAll();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1], EncodeArgTable({{"y"}}));
}

}  // namespace
}  // namespace fanmap
