// fanmap: flags → Config → RunCoordinator.
#include <CLI/CLI.hpp>
#include <thread>

#include "common/exit_status.h"
#include "coordinator/coordinator.h"
#include "worker/payload.h"

namespace {

constexpr const char* kDescription =
    "Usage: fanmap [OPTIONS] [--builtin SPEC | [--] COMMAND [ARG...]]\n\n"
    "fanmap: maps a list of items over many worker processes and writes one record per item,\n"
    "in input order.\n"
    "\n"
    "  seq 0 24 | fanmap -j 5 --builtin sleep:1000\n"
    "  fanmap -j 4 -i files.txt -- gzip -9 {}\n"
    "  fanmap -j 0 --listen tcp://127.0.0.1:5555 -i items.txt   (workers: fanmap-worker --connect "
    "...)\n"
    "\n"
    "Records (jsonl): {\"index\":0,\"ok\":true,\"result\":...} or "
    "{\"index\":3,\"ok\":false,\"error\":...}\n"
    "Exit status: 0 all items ok, 1 some items failed, 2 usage or input error, 130 interrupted.\n";

}  // namespace

int main(int argc, char** argv) {
  fanmap::Config config;
  CLI::App app{kDescription, "fanmap"};
  app.prefix_command();  // everything from the first positional on is COMMAND

  app.add_option("-i,--input", config.input_path, "items, one per line (default: stdin)");
  app.add_option("-o,--output", config.output_path, "records (default: stdout)");
  app.add_option("--input-format", config.input_format,
                 "lines: each line is an item; jsonl: each line must be a JSON value")
      ->transform(CLI::CheckedTransformer(std::map<std::string, fanmap::InputFormat>{
          {"lines", fanmap::InputFormat::kLines}, {"jsonl", fanmap::InputFormat::kJsonl}}))
      ->default_str("lines");
  app.add_option("--output-format", config.output_format,
                 "jsonl: one JSON record per item; raw: each result's text, one per line")
      ->transform(CLI::CheckedTransformer(std::map<std::string, fanmap::OutputFormat>{
          {"jsonl", fanmap::OutputFormat::kJsonl}, {"raw", fanmap::OutputFormat::kRaw}}))
      ->default_str("jsonl");
  app.add_option("-j,--workers", config.workers,
                 "local worker processes (default: number of CPUs; 0: remote workers only)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--slots", config.slots, "tasks in flight per worker (default 1)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--unordered", config.unordered, "write records as they finish");
  app.add_option("--listen", config.listen,
                 "also accept workers on ENDPOINT (e.g. tcp://127.0.0.1:5555); repeatable");
  app.add_option("--progress", config.progress, "progress bar on stderr: auto (if a terminal)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, fanmap::ProgressMode>{{"auto", fanmap::ProgressMode::kAuto},
                                                      {"always", fanmap::ProgressMode::kAlways},
                                                      {"never", fanmap::ProgressMode::kNever}}))
      ->default_str("auto");
  app.add_option("--window", config.window,
                 "items read ahead of the oldest unwritten one (default 16384, grows with "
                 "the workers' slots)");
  double heartbeat_s = 5;
  app.add_option("--heartbeat", heartbeat_s, "seconds of silence after which a worker is dead")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  std::string builtin;
  app.add_option("--builtin", builtin,
                 "built-in task: echo | sleep:MS | sha256:ROUNDS | fail-on:TEXT");
  app.add_option("--worker-path", config.worker_path, "fanmap-worker binary to spawn")->group("");
  app.footer(
      "COMMAND [ARG...] runs once per item; {} in an argument is replaced by the item,\n"
      "otherwise the item is appended. The result is the command's stdout.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? fanmap::kExitOk : fanmap::kExitUsage;
  }
  std::vector<std::string> command = app.remaining();
  if (!command.empty() && command.front() == "--") command.erase(command.begin());

  auto usage_error = [](const std::string& message) {
    std::fprintf(stderr, "fanmap: %s\nRun 'fanmap --help' for usage.\n", message.c_str());
    return fanmap::kExitUsage;
  };
  if (!builtin.empty() && !command.empty()) {
    return usage_error("give either --builtin or a COMMAND, not both");
  }
  if (!builtin.empty()) {
    config.job.kind = "builtin";
    config.job.argv = {builtin};
  } else if (!command.empty()) {
    config.job.kind = "exec";
    config.job.argv = command;
  } else {
    return usage_error("nothing to run: give --builtin SPEC or a COMMAND");
  }
  config.job.default_slots = 1;
  fanmap::Status valid = fanmap::ValidateJob(config.job);
  if (!valid.ok()) return usage_error(valid.message());
  config.heartbeat_ms = static_cast<int>(heartbeat_s * 1000);
  return fanmap::RunCoordinator(config);
}
