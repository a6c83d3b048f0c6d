#include "common/printable.h"

#include <cstdint>

namespace fanmap {
namespace {

constexpr std::string_view kEllipsis = "\xE2\x80\xA6";  // U+2026, "…"
constexpr char kHex[] = "0123456789abcdef";

// A valid UTF-8 sequence starting at s[i]: its length and code point.
// length == 0 if s[i] does not start one (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF, no sequence cut short).
struct Decoded {
  std::size_t length = 0;
  uint32_t code_point = 0;
};

Decoded DecodeUtf8(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](std::size_t k) { return k < s.size() && (byte(k) & 0xC0) == 0x80; };
  unsigned char c = byte(i);
  if (c < 0x80) return {1, c};
  if (c >= 0xC2 && c <= 0xDF) {
    if (!cont(i + 1)) return {};
    return {2, (c & 0x1Fu) << 6 | (byte(i + 1) & 0x3Fu)};
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return {};
    unsigned char c1 = byte(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return {};  // overlong
    if (c == 0xED && c1 > 0x9F) return {};  // surrogate
    return {3, (c & 0x0Fu) << 12 | (c1 & 0x3Fu) << 6 | (byte(i + 2) & 0x3Fu)};
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return {};
    unsigned char c1 = byte(i + 1);
    if (c == 0xF0 && c1 < 0x90) return {};  // overlong
    if (c == 0xF4 && c1 > 0x8F) return {};  // above U+10FFFF
    return {4, (c & 0x07u) << 18 | (c1 & 0x3Fu) << 12 | (byte(i + 2) & 0x3Fu) << 6 |
                   (byte(i + 3) & 0x3Fu)};
  }
  return {};
}

// Characters that are valid but change how a terminal shows the line.
bool MustEscape(uint32_t cp) {
  return cp < 0x20 || cp == 0x7F || cp == '\\' || (cp >= 0x80 && cp <= 0x9F) ||
         (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// The visible form of one escaped byte (below 0x80) or code point.
std::string Escape(uint32_t cp) {
  switch (cp) {
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case '\\':
      return "\\\\";
  }
  std::string out;
  if (cp <= 0x7F) {
    out = "\\x";
  } else {
    out = "\\u";
    out.push_back(kHex[(cp >> 12) & 0xF]);
    out.push_back(kHex[(cp >> 8) & 0xF]);
  }
  out.push_back(kHex[(cp >> 4) & 0xF]);
  out.push_back(kHex[cp & 0xF]);
  return out;
}

std::string EscapeByte(unsigned char byte) {
  return {'\\', 'x', kHex[byte >> 4], kHex[byte & 0xF]};
}

}  // namespace

std::string Printable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  // Where to cut if the text turns out not to fit: the end of the last unit
  // after which the marker still fits. Units (a character or an escape) are
  // never split, so a cut cannot leave half an escape or half a character.
  std::size_t cut = 0;
  std::size_t room = max_bytes >= kEllipsis.size() ? max_bytes - kEllipsis.size() : 0;
  std::size_t i = 0;
  while (i < text.size()) {
    Decoded decoded = DecodeUtf8(text, i);
    std::string_view unit;
    std::string escaped;
    if (decoded.length == 0) {
      escaped = EscapeByte(static_cast<unsigned char>(text[i]));
      unit = escaped;
      i += 1;
    } else if (MustEscape(decoded.code_point)) {
      escaped = Escape(decoded.code_point);
      unit = escaped;
      i += decoded.length;
    } else {
      unit = text.substr(i, decoded.length);
      i += decoded.length;
    }
    if (out.size() + unit.size() > max_bytes) {
      out.resize(cut);
      out.append(kEllipsis);
      return out;
    }
    out.append(unit);
    if (out.size() <= room) cut = out.size();
  }
  return out;
}

}  // namespace fanmap
