// ArgTable: the arguments of one command, as GNU parallel groups them, and
// the one encoding in which they travel as a task's item.
//
// A table holds one row per input item the command consumes (several with
// -n N or -X), and each row one field per input source (::: / :::: / -a) or
// per --colsep column. The encoding is a msgpack array of arrays of strings:
// structural, so no byte in an item can move an argument boundary (an item
// "a b" or "a\x1fb" stays one field), and deterministic, so the same table
// always gives the same item text (the --resume fingerprint relies on that).
#ifndef FANMAP_COMMON_ARG_TABLE_H_
#define FANMAP_COMMON_ARG_TABLE_H_

#include <string>
#include <vector>

#include "common/status.h"

namespace fanmap {

using ArgRow = std::vector<std::string>;
using ArgTable = std::vector<ArgRow>;

std::string EncodeArgTable(const ArgTable& table);

// Decodes what EncodeArgTable wrote. Anything else (not msgpack, other
// types, trailing bytes, an empty table or row) is an error naming what was
// wrong; *table is then unspecified.
Status DecodeArgTable(const std::string& text, ArgTable* table);

}  // namespace fanmap

#endif  // FANMAP_COMMON_ARG_TABLE_H_
