#include "worker/replacement.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>

namespace fanmap {
namespace {

// What sh would read as more than a plain word.
bool HasShellSyntax(const std::string& word) {
  for (char c : word) {
    if (std::isspace(static_cast<unsigned char>(c)) || std::strchr("|&;<>()$`\\\"'*?[]#~", c)) {
      return true;
    }
  }
  return false;
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// parallel's {.}: s:\.[^/.]*$::
std::string NoExtension(const std::string& s) {
  size_t dot = s.find_last_of("./");
  if (dot == std::string::npos || s[dot] != '.') return s;
  return s.substr(0, dot);
}

// parallel's {/}: s:.*/::
std::string Basename(const std::string& s) {
  size_t slash = s.rfind('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

// s{(.)/*\z}{$1}: trailing slashes go, but never the first character.
void StripTrailingSlashes(std::string* s) {
  while (s->size() > 1 && s->back() == '/') s->pop_back();
}

// fileparse: m{^(.*/)?(.*)}s, with "./" for a missing directory.
void FileParse(const std::string& path, std::string* dir, std::string* base) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    *dir = "./";
    *base = path;
  } else {
    *dir = path.substr(0, slash + 1);
    *base = path.substr(slash + 1);
  }
}

// parallel's {//}: File::Basename::dirname on Unix.
std::string Dirname(const std::string& path) {
  std::string dir, base;
  FileParse(path, &dir, &base);
  StripTrailingSlashes(&dir);
  if (base.empty()) {
    FileParse(std::string(dir), &dir, &base);
    StripTrailingSlashes(&dir);
  }
  return dir;
}

}  // namespace

std::string ShellQuote(const std::string& s) {
  if (s.empty()) return "''";
  bool plain = true;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) < 128) &&
        !std::strchr("-_.+/", c)) {
      plain = false;
      break;
    }
  }
  if (plain) return s;
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\"'\"'";
    } else {
      out += c;
    }
  }
  out += "'";
  // parallel drops the '' a leading or trailing quote leaves.
  if (out.compare(0, 2, "''") == 0) out.erase(0, 2);
  if (out.size() >= 2 && out.compare(out.size() - 2, 2, "''") == 0) out.erase(out.size() - 2);
  return out;
}

CommandTemplate::Word CommandTemplate::Parse(const std::string& word,
                                             const std::string& replace_str, bool* found) {
  Word pieces;
  auto literal = [&pieces](const std::string& text) {
    if (text.empty()) return;
    if (pieces.empty() || pieces.back().kind != Kind::kLiteral) pieces.push_back(Piece());
    pieces.back().text += text;
  };
  auto token = [&pieces, found](Piece piece) {
    pieces.push_back(std::move(piece));
    *found = true;
  };
  size_t i = 0;
  while (i < word.size()) {
    if (!replace_str.empty() && word.compare(i, replace_str.size(), replace_str) == 0) {
      token(Piece{Kind::kField, "", 0, Transform::kNone});
      i += replace_str.size();
      continue;
    }
    if (word[i] != '{') {
      literal(std::string(1, word[i++]));
      continue;
    }
    size_t close = word.find('}', i);
    if (close == std::string::npos) {
      literal(word.substr(i));
      break;
    }
    std::string inner = word.substr(i + 1, close - i - 1);
    Piece piece;
    piece.kind = Kind::kField;
    size_t digits = 0;
    while (digits < inner.size() && std::isdigit(static_cast<unsigned char>(inner[digits]))) {
      ++digits;
    }
    std::string suffix = inner.substr(digits);
    bool valid = true;
    if (digits > 0) {
      // {0} is not a replacement string in parallel either.
      if (digits > 9 || (piece.field = std::stoul(inner.substr(0, digits))) == 0) valid = false;
    }
    if (digits == 0 && inner == "#") {
      piece.kind = Kind::kSeq;
    } else if (digits == 0 && inner == "%") {
      piece.kind = Kind::kSlot;
    } else if (digits > 0 && suffix.empty()) {
      piece.transform = Transform::kNone;
    } else if (suffix == ".") {
      piece.transform = Transform::kNoExtension;
    } else if (suffix == "/") {
      piece.transform = Transform::kBasename;
    } else if (suffix == "//") {
      piece.transform = Transform::kDirname;
    } else if (suffix == "/.") {
      piece.transform = Transform::kBasenameNoExtension;
    } else {
      valid = false;
    }
    if (!valid || (digits == 0 && suffix.empty() && piece.kind == Kind::kField)) {
      // Not a replacement string ("{x}", "{0}", or "{}" under -I): literal.
      literal("{");
      ++i;
      continue;
    }
    token(std::move(piece));
    i = close + 1;
  }
  return pieces;
}

CommandTemplate::CommandTemplate(const std::vector<std::string>& words, const Options& options)
    : context_replace_(options.context_replace) {
  // One word that names an executable file ("/opt/my tools/run") is that
  // program, even if it holds spaces: only other single words are sh lines.
  shell_ = words.size() == 1 && HasShellSyntax(words[0]) && !IsExecutableFile(words[0]);
  std::vector<std::string> split;
  if (shell_) {
    // The line is split at spaces only to find -X's contexts; it is joined
    // back with the same spaces.
    size_t from = 0;
    for (size_t space = words[0].find(' '); space != std::string::npos;
         space = words[0].find(' ', from)) {
      split.push_back(words[0].substr(from, space - from));
      from = space + 1;
    }
    split.push_back(words[0].substr(from));
  } else {
    split = words;
  }
  bool found = false;
  for (const std::string& word : split) words_.push_back(Parse(word, options.replace_str, &found));
  if (!found) words_.push_back(Word{Piece{Kind::kField, "", 0, Transform::kNone}});
}

void CommandTemplate::ExpandWord(const Word& word, const ArgTable& args, uint64_t seq,
                                 unsigned slot, std::vector<std::string>* words,
                                 std::string* line) const {
  words->emplace_back();
  bool contributed = false;  // a word of nothing but missing fields vanishes
  for (const Piece& piece : word) {
    if (piece.kind == Kind::kLiteral) {
      contributed = true;
      words->back() += piece.text;
      *line += piece.text;
      continue;
    }
    std::vector<std::string> values;
    if (piece.kind == Kind::kSeq) {
      values.push_back(std::to_string(seq));
    } else if (piece.kind == Kind::kSlot) {
      values.push_back(std::to_string(slot));
    } else {
      size_t n = 0;
      for (const ArgRow& row : args) {
        for (const std::string& field : row) {
          ++n;
          if (piece.field == 0 || piece.field == n) values.push_back(field);
        }
      }
      // A field past the last one is nothing at all (not an empty word), as
      // parallel leaves it unquoted and the shell drops it.
      for (std::string& v : values) {
        switch (piece.transform) {
          case Transform::kNone:
            break;
          case Transform::kNoExtension:
            v = NoExtension(v);
            break;
          case Transform::kBasename:
            v = Basename(v);
            break;
          case Transform::kDirname:
            v = Dirname(v);
            break;
          case Transform::kBasenameNoExtension:
            v = NoExtension(Basename(v));
            break;
        }
      }
    }
    contributed |= !values.empty();
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) {
        words->emplace_back();
        *line += ' ';
      }
      words->back() += values[i];
      *line += ShellQuote(values[i]);
    }
  }
  if (!contributed) words->pop_back();
}

ExpandedCommand CommandTemplate::Expand(const ArgTable& args, uint64_t seq, unsigned slot) const {
  ExpandedCommand out;
  for (size_t w = 0; w < words_.size(); ++w) {
    if (w > 0) out.line += ' ';
    const Word& word = words_[w];
    if (context_replace_ && PerItem(word) && args.size() > 1) {
      for (size_t r = 0; r < args.size(); ++r) {
        if (r > 0) out.line += ' ';
        ExpandWord(word, ArgTable{args[r]}, seq, slot, &out.argv, &out.line);
      }
    } else {
      ExpandWord(word, args, seq, slot, &out.argv, &out.line);
    }
  }
  if (shell_) out.argv = {"/bin/sh", "-c", out.line};
  return out;
}

}  // namespace fanmap

namespace fanmap {
namespace {

// execve's cost of arguments without a shell: bytes, NUL and pointer.
size_t ArgvCost(const std::vector<std::string>& words) {
  size_t cost = 0;
  for (const std::string& w : words) cost += w.size() + 1 + sizeof(char*);
  return cost;
}

}  // namespace

bool CommandTemplate::PerItem(const Word& word) {
  for (const Piece& piece : word) {
    if (piece.kind == Kind::kField) return true;
  }
  return false;
}

size_t CommandTemplate::FixedCost() const {
  // {#} and {%} at their widest, so that no table is measured short.
  constexpr uint64_t kWidestSeq = UINT64_MAX;
  constexpr unsigned kWidestSlot = UINT32_MAX;
  std::vector<std::string> argv;
  std::string line;
  size_t words = 0;
  for (const Word& word : words_) {
    if (PerItem(word)) continue;
    if (words++ > 0) line += ' ';
    ExpandWord(word, ArgTable{}, kWidestSeq, kWidestSlot, &argv, &line);
  }
  if (shell_) {
    // "/bin/sh" "-c", the line's NUL and the spaces before the row words
    // (counted by RowCost), plus the pointers.
    return line.size() + 1 + ArgvCost({"/bin/sh", "-c"}) + 2 * sizeof(char*);
  }
  return ArgvCost(argv) + sizeof(char*);  // the argv's NULL
}

size_t CommandTemplate::RowCost(const ArgRow& row) const {
  std::vector<std::string> argv;
  std::string line;
  for (const Word& word : words_) {
    if (!PerItem(word)) continue;
    line += ' ';
    ExpandWord(word, ArgTable{row}, 0, 0, &argv, &line);
  }
  return shell_ ? line.size() : ArgvCost(argv);
}

}  // namespace fanmap
