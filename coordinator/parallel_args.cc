#include "coordinator/parallel_args.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <thread>

#include "common/job_keys.h"
#include "coordinator/input_reader.h"
#include "worker/replacement.h"

namespace fanmap {
namespace {

// -X: what one command may cost (CommandTemplate::FixedCost + RowCosts):
// below Linux's 128 KiB for one argument string (the `sh -c` line), and far
// below the whole command line's limit (ARG_MAX, 2 MiB and more) for argv.
constexpr size_t kFillMaxChars = 128 * 1024 - 4096;

Status ParseDelimiter(const std::string& text, char* out) {
  if (text.size() == 1) {
    *out = text[0];
    return Status::Ok();
  }
  if (text.size() == 2 && text[0] == '\\') {
    switch (text[1]) {
      case 'n':
        *out = '\n';
        return Status::Ok();
      case 't':
        *out = '\t';
        return Status::Ok();
      case 'r':
        *out = '\r';
        return Status::Ok();
      case '0':
        *out = '\0';
        return Status::Ok();
      case '\\':
        *out = '\\';
        return Status::Ok();
    }
  }
  return Status::Error("-d '" + text + "' is not one character (or \\n, \\t, \\r, \\0, \\\\)");
}

// Appends the records of `data`: a last one without delimiter counts, an
// empty `data` is none. A "\r" before a "\n" delimiter is dropped.
void SplitRecords(const std::string& data, char delimiter, std::vector<std::string>* records) {
  size_t from = 0;
  while (from < data.size()) {
    size_t end = data.find(delimiter, from);
    if (end == std::string::npos) end = data.size();
    size_t stop = end;
    if (delimiter == '\n' && stop > from && data[stop - 1] == '\r') --stop;
    records->push_back(data.substr(from, stop - from));
    from = end + 1;
  }
}

// ::: values: parallel reads a value holding the delimiter (a newline, or
// -0's NUL, -d's character) as several values, each piece one, empty ones
// included: 'a\n' is "a" and "", not a line of a file whose last newline
// ends it.
std::vector<std::string> SplitValues(const std::vector<std::string>& values, char delimiter) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    size_t from = 0;
    for (size_t end; (end = v.find(delimiter, from)) != std::string::npos; from = end + 1) {
      out.push_back(v.substr(from, end - from));
    }
    out.push_back(v.substr(from));
  }
  return out;
}

// How many records a regular file holds; 0 if it is not one (a pipe, stdin).
uint64_t CountRecords(const std::string& path, char delimiter) {
  uint64_t count = 0;
  return CountLines(path, &count, delimiter) ? count : 0;
}

// The records of a whole file ("-": stdin), as InputReader splits them.
Status ReadRecords(const std::string& path, char delimiter, std::vector<std::string>* records) {
  int fd = path == "-" ? 0 : open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Error("cannot open input '" + path + "': " + strerror(errno));
  std::string data;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      if (fd != 0) close(fd);
      return Status::Error("cannot read input '" + path + "': " + strerror(err));
    }
    data.append(buf, static_cast<size_t>(n));
  }
  if (fd != 0) close(fd);
  SplitRecords(data, delimiter, records);
  return Status::Ok();
}

}  // namespace

Status SplitArgSources(int argc, char** argv, std::vector<std::string>* cli, ParallelFlags* flags) {
  int i = 0;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == ":::" || arg == "::::" || arg == ":::+" || arg == "::::+") break;
    cli->push_back(std::move(arg));
  }
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == ":::+" || arg == "::::+") {
      return Status::Error("'" + arg + "' (link one source) is not supported: use --link");
    }
    if (arg == ":::" || arg == "::::") {
      flags->sources.push_back(ArgSource{arg == "::::", {}});
      continue;
    }
    flags->sources.back().values.push_back(std::move(arg));
  }
  return Status::Ok();
}

void AddParallelOptions(CLI::App* app, ParallelFlags* flags) {
  const char* kGroup = "GNU parallel's options (with a COMMAND)";
  app->add_option("-a,--arg-file", flags->arg_files,
                  "read items from FILE (repeatable: one input source each); "
                  "also COMMAND ::: VALUES... and COMMAND :::: FILES...")
      ->type_name("FILE")
      ->allow_extra_args(false)
      ->group(kGroup);
  app->add_flag("-0,--null", flags->null, "items end with a NUL byte, not a newline")
      ->group(kGroup);
  app->add_option("-d,--delimiter", flags->delimiter, "items end with this character")
      ->type_name("CHAR")
      ->group(kGroup);
  app->add_option("--colsep", flags->colsep,
                  "split each item into columns at this Perl regex (PCRE2): {1} {2}...")
      ->type_name("REGEX")
      ->group(kGroup);
  app->add_flag("--link,--xapply", flags->link,
                "pair the input sources instead of combining every value with every other")
      ->group(kGroup);
  app->add_option("-n,--max-args", flags->max_args, "up to N items per command")
      ->type_name("N")
      ->check(CLI::Range(1, 1000000))
      ->group(kGroup);
  app->add_flag("-X", flags->fill,
                "as many items per command as fit the command line; a word holding a "
                "replacement string is repeated for each")
      ->group(kGroup);
  app->add_option("-I", flags->replace_str, "use STR instead of {} for the item")
      ->type_name("STR")
      ->check(CLI::Validator(
          [](std::string& text) {
            return text.empty() ? std::string("-I needs a string to replace, not ''")
                                : std::string();
          },
          "", "non-empty"))
      ->group(kGroup);
  app->add_flag("--tag", flags->tag, "start each output line with the item and a tab")
      ->group(kGroup);
  app->add_flag("--dry-run", flags->dry_run, "print the commands instead of running them")
      ->group(kGroup);
  app->add_option("--joblog", flags->joblog,
                  "write a line per command to FILE in parallel's TSV format: Seq Host "
                  "Starttime JobRuntime Send Receive Exitval Signal Command")
      ->type_name("FILE")
      ->group(kGroup);
  app->add_flag("--bar,--eta", flags->bar, "show the progress display (as --progress always)")
      ->group(kGroup);
  app->add_flag("--will-cite", flags->will_cite, "accepted for parallel's scripts")->group("");
}

Status ApplyParallelFlags(const ParallelFlags& flags, bool output_format_given, Config* config) {
  ArgInput& input = config->arg_input;
  if (flags.null && !flags.delimiter.empty()) {
    return Status::Error("-0 and -d both set the delimiter");
  }
  if (flags.null) input.delimiter = '\0';
  if (!flags.delimiter.empty()) {
    Status s = ParseDelimiter(flags.delimiter, &input.delimiter);
    if (!s.ok()) return s;
  }
  if (flags.bar && config->progress == ProgressMode::kNever) {
    return Status::Error(
        "--bar/--eta show the progress display that --progress never hides: "
        "give one of them");
  }
  if (flags.bar) config->progress = ProgressMode::kAlways;
  config->joblog_path = flags.joblog;

  // Every source in order: -a files, then ::: and :::: as given.
  struct Source {
    bool file;
    std::string path;
    std::vector<std::string> values;
  };
  std::vector<Source> sources;
  for (const std::string& path : flags.arg_files) sources.push_back(Source{true, path, {}});
  for (const ArgSource& s : flags.sources) {
    if (s.values.empty()) {
      return Status::Error(std::string(s.file ? "::::" : ":::") + " is not followed by any " +
                           (s.file ? "file" : "value"));
    }
    if (s.file) {
      for (const std::string& path : s.values) sources.push_back(Source{true, path, {}});
    } else {
      sources.push_back(Source{false, "", SplitValues(s.values, input.delimiter)});
    }
  }
  if (!sources.empty() && !config->input_path.empty()) {
    return Status::Error("-i and ::: / :::: / -a both give the items: use one");
  }
  bool single_file = sources.size() == 1 && sources[0].file;
  input.assemble = !flags.colsep.empty() || flags.max_args > 0 || flags.fill ||
                   (!sources.empty() && !single_file);
  // An assembled item is an argument table, not the line that was read:
  // a JSON check on it would fail every item.
  if (input.assemble && config->input_format != InputFormat::kLines) {
    return Status::Error(
        "--input-format jsonl/openai-batch check each input line as JSON: they cannot be "
        "combined with ::: values, several sources, --colsep, -n or -X");
  }
  input.options.colsep = flags.colsep;
  input.options.link = flags.link;
  input.options.max_args = flags.max_args;
  input.options.fill = flags.fill;
  input.options.max_chars = kFillMaxChars;
  for (size_t k = 0; k < sources.size(); ++k) {
    Source& s = sources[k];
    if (s.file) input.files.push_back(s.path);
    if (k == 0) {
      if (s.file) {
        config->input_path = s.path;
      } else {
        input.first_values = std::move(s.values);
        config->input_path = "/dev/null";
      }
      continue;
    }
    std::vector<std::string> records;
    if (s.file) {
      Status read = ReadRecords(s.path, input.delimiter, &records);
      if (!read.ok()) return read;
    } else {
      records = std::move(s.values);
    }
    input.others.push_back(std::move(records));
  }

  // -X spreads a known number of items evenly over the job slots, as
  // parallel does ("1 2 3 4" on two slots: "1 2" and "3 4"), so that all of
  // them get work; the command line's limit still applies. Not into an
  // output file (-o): the tables would then depend on -j, --slots and the
  // CPU count, and --resume on another machine or with another -j would
  // find other items than the file holds.
  if (flags.fill && flags.max_args == 0 && config->workers != 0 && config->output_path.empty() &&
      !config->resume) {
    uint64_t first = input.first_values.empty() ? CountRecords(config->input_path, input.delimiter)
                                                : input.first_values.size();
    uint64_t rows = input.Rows(first);
    uint64_t workers = config->workers > 0 ? static_cast<uint64_t>(config->workers)
                                           : std::max(1u, std::thread::hardware_concurrency());
    uint64_t job_slots = workers * std::max(1u, config->slots);
    if (rows > 0 && job_slots > 1) input.options.max_args = (rows + job_slots - 1) / job_slots;
  }

  bool command_only = input.assemble || flags.tag || flags.dry_run || !flags.replace_str.empty() ||
                      !flags.joblog.empty();
  JobSpec& job = config->job;
  if (command_only && job.kind != "exec") {
    return Status::Error(
        "::: sources, --colsep, -n, -X, -I, --tag, --dry-run and --joblog need a COMMAND");
  }
  if (!flags.replace_str.empty()) job.options[job_key::kReplaceStr] = flags.replace_str;
  if (flags.fill) {
    // Measure each row as the worker will expand it: quoting, repeated
    // context words, one argument's limit in the shell.
    CommandTemplate::Options options;
    if (!flags.replace_str.empty()) options.replace_str = flags.replace_str;
    options.context_replace = true;
    auto command = std::make_shared<const CommandTemplate>(job.argv, options);
    size_t fixed = command->FixedCost();
    if (fixed >= kFillMaxChars) {
      return Status::Error("-X: the command alone is longer than a command line may be");
    }
    input.options.max_chars = kFillMaxChars - fixed;
    input.options.row_cost = [command](const ArgRow& row) { return command->RowCost(row); };
  }
  if (input.assemble) job.options[job_key::kArgTable] = "1";
  if (flags.fill) job.options[job_key::kContextReplace] = "1";
  if (flags.tag) job.options[job_key::kTag] = "1";
  if (flags.dry_run) job.options[job_key::kDryRun] = "1";
  if (!flags.joblog.empty()) job.options[job_key::kJoblog] = "1";
  if (flags.dry_run && !output_format_given) config->output_format = OutputFormat::kStdout;
  if (config->output_format == OutputFormat::kStdout) {
    if (job.kind != "exec") return Status::Error("--output-format stdout needs a COMMAND");
    job.options[job_key::kVerbatimOutput] = "1";
  }
  return Status::Ok();
}

}  // namespace fanmap
