// Printable: makes text from a peer safe to put in one line of a log that a
// terminal will show.
//
// Worker names, host names, error texts and BYE reasons arrive from remote
// processes. Printed raw, a newline starts a forged log line, an ANSI escape
// sequence can clear the screen or rewrite what is on it, and a Unicode bidi
// override can make text display in an order other than the one it has.
// Printable(text) returns text that has none of these effects and says
// visibly what was there.
#ifndef FANMAP_COMMON_PRINTABLE_H_
#define FANMAP_COMMON_PRINTABLE_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace fanmap {

// Returns `text` made safe for one log line:
//
// - Valid UTF-8 is kept as it is, non-ASCII letters included
//   ("Zürich-東京" comes back unchanged), except for:
// - C0 controls (U+0000-U+001F) and DEL (U+007F), written as \n, \r, \t,
//   or \xHH with two lowercase hex digits (ESC is \x1b);
// - the backslash, written \\, so that an escape in the result always
//   stands for a character that was escaped, never for text the peer sent;
// - C1 controls (U+0080-U+009F), the bidi embeddings, overrides and isolates
//   (U+202A-U+202E, U+2066-U+2069) and the line and paragraph separators
//   (U+2028, U+2029), written \uHHHH (e.g. \u202e);
// - every byte that is not part of a valid UTF-8 sequence (a lone
//   continuation byte, an overlong encoding, a surrogate, a value above
//   U+10FFFF, a sequence cut short), written \xHH, one escape per byte.
//
// So the result is valid UTF-8 and contains no byte below 0x20, no 0x7f and
// none of the characters above.
//
// If the result would be longer than `max_bytes`, it is cut after the last
// whole character or escape that leaves room for the 3-byte marker "…"
// (U+2026), and the marker is appended: the result is then at most
// `max_bytes` bytes (3, the marker alone, if `max_bytes` < 3). The work done
// is bounded by `max_bytes`, not by the size of `text`. An empty `text`
// gives an empty result.
//
// Thread-safe: a pure function.
std::string Printable(std::string_view text, std::size_t max_bytes = 200);

}  // namespace fanmap

#endif  // FANMAP_COMMON_PRINTABLE_H_
