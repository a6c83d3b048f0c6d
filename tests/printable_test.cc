#include "common/printable.h"

#include <gtest/gtest.h>

#include <string>

namespace fanmap {
namespace {

// True if `s` has a byte a terminal would act on: a C0 control or DEL.
bool HasControlByte(const std::string& s) {
  for (char c : s) {
    unsigned char b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7F) return true;
  }
  return false;
}

// True if `s` is entirely valid UTF-8 (RFC 3629).
bool IsValidUtf8(const std::string& s) {
  std::size_t i = 0;
  auto cont = [&](std::size_t k) {
    return k < s.size() && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80;
  };
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    unsigned char c1 = i + 1 < s.size() ? static_cast<unsigned char>(s[i + 1]) : 0;
    std::size_t n = 0;
    if (c < 0x80) {
      n = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F)) return false;
      n = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) return false;
      n = 4;
    } else {
      return false;
    }
    for (std::size_t k = 1; k < n; ++k) {
      if (!cont(i + k)) return false;
    }
    i += n;
  }
  return true;
}

class PrintableTest : public ::testing::Test {
 protected:
  static constexpr const char* kEllipsis = "\xE2\x80\xA6";
};

TEST_F(PrintableTest, KeepsEmptyStringEmpty) { EXPECT_EQ(Printable(""), ""); }

TEST_F(PrintableTest, KeepsPlainAscii) {
  EXPECT_EQ(Printable("worker-07.example.org"), "worker-07.example.org");
  EXPECT_EQ(Printable("HTTP 503: Service Unavailable (try later)"),
            "HTTP 503: Service Unavailable (try later)");
}

TEST_F(PrintableTest, KeepsValidNonAsciiText) {
  EXPECT_EQ(Printable("Zürich-東京"), "Zürich-東京");
  EXPECT_EQ(Printable("ʕ•ᴥ•ʔ 🚀 Ωμέγα"), "ʕ•ᴥ•ʔ 🚀 Ωμέγα");
}

TEST_F(PrintableTest, TurnsForgedLogLineIntoOneHarmlessLine) {
  std::string name = "evil\x1b[2J\x1b[H\nfanmap: all 1000 items done, 0 failed\r\n";
  std::string out = Printable(name);
  EXPECT_EQ(out, "evil\\x1b[2J\\x1b[H\\nfanmap: all 1000 items done, 0 failed\\r\\n");
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
  EXPECT_EQ(out.find('\n'), std::string::npos);
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_FALSE(HasControlByte(out));
}

TEST_F(PrintableTest, EscapesEveryC0ControlAndDel) {
  EXPECT_EQ(Printable("a\tb"), "a\\tb");
  EXPECT_EQ(Printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(Printable("\x07\x08\x0b\x0c\x1f\x7f"), "\\x07\\x08\\x0b\\x0c\\x1f\\x7f");
  for (int c = 0; c < 0x20; ++c) {
    std::string out = Printable(std::string(1, static_cast<char>(c)));
    EXPECT_FALSE(HasControlByte(out)) << c;
    EXPECT_EQ(out[0], '\\') << c;
  }
}

TEST_F(PrintableTest, EscapesBackslashSoEscapesAreUnambiguous) {
  // A peer that sends the four characters \x1b must not look like one that
  // sent ESC.
  EXPECT_EQ(Printable("a\\x1b"), "a\\\\x1b");
  EXPECT_NE(Printable("\\x1b"), Printable("\x1b"));
  EXPECT_EQ(Printable("C:\\tmp"), "C:\\\\tmp");
}

TEST_F(PrintableTest, EscapesC1Controls) {
  // U+0085 NEL (a line break to some terminals), U+009B CSI (an escape
  // sequence introducer), U+0080 and U+009F, the ends of the range.
  EXPECT_EQ(Printable("a\xC2\x85"
                      "b"),
            "a\\u0085b");
  EXPECT_EQ(Printable("\xC2\x9B"
                      "2J"),
            "\\u009b2J");
  EXPECT_EQ(Printable("\xC2\x80\xC2\x9F"), "\\u0080\\u009f");
  EXPECT_EQ(Printable("\xC2\xA0\xC2\xA9"), "\xC2\xA0\xC2\xA9");  // NBSP, ©: kept
}

TEST_F(PrintableTest, EscapesBidiOverridesAndIsolates) {
  // RLO makes "txt.exe" display as "exe.txt" in a bidi-aware terminal.
  EXPECT_EQ(Printable("report\xE2\x80\xAE"
                      "txt.exe"),
            "report\\u202etxt.exe");
  EXPECT_EQ(Printable("\xE2\x80\xAA\xE2\x80\xAB\xE2\x80\xAC\xE2\x80\xAD"),
            "\\u202a\\u202b\\u202c\\u202d");
  EXPECT_EQ(Printable("\xE2\x81\xA6\xE2\x81\xA7\xE2\x81\xA8\xE2\x81\xA9"),
            "\\u2066\\u2067\\u2068\\u2069");
  // Line and paragraph separators end a line in some viewers.
  EXPECT_EQ(Printable("a\xE2\x80\xA8"
                      "b\xE2\x80\xA9"),
            "a\\u2028b\\u2029");
  // Neighbours of those ranges are ordinary characters.
  EXPECT_EQ(Printable("\xE2\x80\xA7\xE2\x80\xAF\xE2\x81\xA5\xE2\x81\xAA"),
            "\xE2\x80\xA7\xE2\x80\xAF\xE2\x81\xA5\xE2\x81\xAA");
}

TEST_F(PrintableTest, EscapesInvalidUtf8ByteByByte) {
  EXPECT_EQ(Printable("a\xFF"
                      "b"),
            "a\\xffb");
  // A lone continuation byte.
  EXPECT_EQ(Printable("a\x80"
                      "b"),
            "a\\x80b");
  // Overlong encodings of '/' (2 bytes) and of NUL (3 bytes).
  EXPECT_EQ(Printable("\xC0\xAF"), "\\xc0\\xaf");
  EXPECT_EQ(Printable("\xE0\x80\x80"), "\\xe0\\x80\\x80");
  // An overlong 4-byte form, a UTF-16 surrogate, a code point above U+10FFFF.
  EXPECT_EQ(Printable("\xF0\x8F\xBF\xBF"), "\\xf0\\x8f\\xbf\\xbf");
  EXPECT_EQ(Printable("\xED\xA0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(Printable("\xF4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
  // A sequence cut short, at the end and before a valid character.
  EXPECT_EQ(Printable("\xE6\x9D"), "\\xe6\\x9d");
  EXPECT_EQ(Printable("\xE6\x9D"
                      "A\xE6\x9D\xB1"),
            "\\xe6\\x9dA\xE6\x9D\xB1");
  // An escaped C1 control is not a way to sneak an invalid byte through.
  EXPECT_EQ(Printable("\xC2"), "\\xc2");
}

TEST_F(PrintableTest, ResultIsAlwaysValidUtf8WithoutControls) {
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  std::string out = Printable(all_bytes, 1 << 20);
  EXPECT_TRUE(IsValidUtf8(out));
  EXPECT_FALSE(HasControlByte(out));
  // Only printable ASCII (minus the backslash) passes through unescaped.
  EXPECT_EQ(out.find("\\x20"), std::string::npos);
  EXPECT_NE(out.find(" !\"#"), std::string::npos);
  EXPECT_NE(out.find("\\x7f\\x80\\x81"), std::string::npos);
}

TEST_F(PrintableTest, BoundsAHugeName) {
  std::string name(10 * 1024, 'a');
  std::string out = Printable(name);
  EXPECT_EQ(out.size(), 200u);
  EXPECT_EQ(out, std::string(197, 'a') + kEllipsis);

  out = Printable(std::string(10 * 1024, '\n'));
  EXPECT_LE(out.size(), 200u);
  EXPECT_FALSE(HasControlByte(out));
}

TEST_F(PrintableTest, KeepsTextThatFitsExactly) {
  EXPECT_EQ(Printable("abcde", 5), "abcde");
  EXPECT_EQ(Printable("abcdef", 5), std::string("ab") + kEllipsis);
  // The limit applies to the escaped text: "\n" is two bytes.
  EXPECT_EQ(Printable("abc\n", 5), "abc\\n");
  EXPECT_EQ(Printable("abc\nd", 5), std::string("ab") + kEllipsis);
}

TEST_F(PrintableTest, TruncatesOnCharacterBoundaries) {
  // "東" is 3 bytes: "Zürich-" is 8, so at 13 bytes (10 before the marker)
  // the first 東 does not fit whole and must not be cut.
  EXPECT_EQ(Printable("Zürich-東京", 13), std::string("Zürich-") + kEllipsis);
  EXPECT_EQ(Printable("Zürich-東京", 14), "Zürich-東京");  // 14 bytes: fits
  EXPECT_EQ(Printable("Zürich-東京!", 14), std::string("Zürich-東") + kEllipsis);
  for (std::size_t max = 3; max < 20; ++max) {
    std::string out = Printable("Zürich-東京🚀🚀", max);
    EXPECT_LE(out.size(), max);
    EXPECT_TRUE(IsValidUtf8(out)) << max;
  }
}

TEST_F(PrintableTest, NeverCutsAnEscape) {
  // Budget before the marker is 7: "ab" + "\x1b" (4) fits at 6, the next
  // escape does not, and no partial "\x" may remain.
  EXPECT_EQ(Printable("ab\x1b\x1b\x1b", 10), std::string("ab\\x1b") + kEllipsis);
  EXPECT_EQ(Printable("ab\xE2\x80\xAE\xE2\x80\xAE", 11), std::string("ab\\u202e") + kEllipsis);
  EXPECT_EQ(Printable("ab\xE2\x80\xAE\xE2\x80\xAE", 10), std::string("ab") + kEllipsis);
  for (std::size_t max = 3; max < 40; ++max) {
    std::string out = Printable("\x1b[2J\xFF\xC2\x85\xE2\x80\xAE\\\n", max);
    ASSERT_LE(out.size(), max);
    std::string body = out;
    if (body.size() >= 3 && body.compare(body.size() - 3, 3, kEllipsis) == 0) {
      body.resize(body.size() - 3);
    }
    // Every backslash begins a whole escape: \\, \n, \xHH or \uHHHH.
    for (std::size_t i = 0; i < body.size(); ++i) {
      if (body[i] != '\\') continue;
      ASSERT_LT(i + 1, body.size()) << "max " << max << ": " << out;
      char kind = body[i + 1];
      std::size_t len = kind == 'x' ? 4 : kind == 'u' ? 6 : 2;
      ASSERT_LE(i + len, body.size()) << "max " << max << ": " << out;
      i += len - 1;
    }
  }
}

TEST_F(PrintableTest, TinyLimitGivesTheMarkerAlone) {
  EXPECT_EQ(Printable("abcdef", 0), kEllipsis);
  EXPECT_EQ(Printable("abcdef", 2), kEllipsis);
  EXPECT_EQ(Printable("ab", 2), "ab");
  EXPECT_EQ(Printable("", 0), "");
}

}  // namespace
}  // namespace fanmap
