// GNU parallel's command line on fanmap: input sources after the command
// (::: VALUES, :::: FILES), and the options parallel's users bring (-a, -0,
// -d, --colsep, --link, -n, -X, -I, --tag, --dry-run, --joblog, --bar, --eta,
// --will-cite), turned into Config.
//
// The sources are cut off argv before CLI11 sees it (CLI11 would take ":::"
// for the command's first word), the way parallel reads them: everything up
// to the first ":::" or "::::" is options and the command, then each
// separator starts a source that runs to the next one.
#ifndef FANMAP_COORDINATOR_PARALLEL_ARGS_H_
#define FANMAP_COORDINATOR_PARALLEL_ARGS_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/config.h"

namespace fanmap {

struct ArgSource {
  bool file = false;                // :::: (files) or ::: (values)
  std::vector<std::string> values;  // the values, or the file names ("-": stdin)
};

struct ParallelFlags {
  std::vector<std::string> arg_files;  // -a, in order
  bool null = false;                   // -0
  std::string delimiter;               // -d
  std::string colsep;
  bool link = false;
  size_t max_args = 0;  // -n
  bool fill = false;    // -X
  std::string replace_str;
  bool tag = false;
  bool dry_run = false;
  std::string joblog;
  bool bar = false;
  bool will_cite = false;
  std::vector<ArgSource> sources;  // from SplitArgSources
};

// Splits argv at the first ":::" / "::::": *cli gets the arguments before it
// (argv[0] included), flags->sources the sources. ":::+" and "::::+"
// (parallel's per-source link) are refused with an error.
Status SplitArgSources(int argc, char** argv, std::vector<std::string>* cli, ParallelFlags* flags);

// Declares parallel's options on `app`, stored in *flags.
void AddParallelOptions(CLI::App* app, ParallelFlags* flags);

// Checks the flags against the payload already in config->job and applies
// them: the input (reading every source but the first), the exec job's
// options, the progress display, the joblog path. `output_format_given`:
// whether --output-format was on the command line (--dry-run otherwise
// prints plain command lines). Errors are usage errors.
Status ApplyParallelFlags(const ParallelFlags& flags, bool output_format_given, Config* config);

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_PARALLEL_ARGS_H_
