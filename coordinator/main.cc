// fanmap: flags → Config → RunCoordinator.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "common/curve_keys.h"
#include "common/exit_status.h"
#include "common/job_keys.h"
#include "common/version.h"
#include "coordinator/coordinator.h"
#include "coordinator/parallel_args.h"
#include "coordinator/retry_policy.h"
#include "worker/http_transport.h"
#include "worker/job_check.h"

namespace {

constexpr const char* kDescription =
    "Usage: fanmap [OPTIONS] [--builtin SPEC | --pipe CMD | --http URL | [--] COMMAND [ARG...]]\n"
    "\n"
    "fanmap maps a list of items over many worker processes and writes one record per item,\n"
    "in input order.\n"
    "\n"
    "  seq 0 24 | fanmap -j 5 --builtin sleep:1000\n"
    "  fanmap -j 4 -i files.txt -- gzip -9 {}\n"
    "  fanmap -j 2 -i lines.txt --pipe 'python3 my_fn.py'\n"
    "  fanmap -j 1 --slots 100 -i prompts.txt --http http://127.0.0.1:8000/v1/chat/completions "
    "--chat MODEL\n"
    "  fanmap keygen coord   (CurveZMQ keys for --listen beyond this machine)\n"
    "  fanmap -j 0 --listen tcp://127.0.0.1:5555 -i items.txt   (then: fanmap-worker --connect "
    "tcp://127.0.0.1:5555)\n"
    "\n"
    "Records (jsonl): {\"index\":0,\"ok\":true,\"result\":...} or "
    "{\"index\":3,\"ok\":false,\"error\":...}\n"
    "Exit status: 0 all items ok (or --halt WHEN,success= reached), 1 some items failed (their\n"
    "records are written), 2 usage or input error, 3 the run could not go on (workers keep\n"
    "failing, output cannot be written, the command cannot start) or --halt WHEN,fail= stopped\n"
    "it, 130 interrupted (SIGINT, SIGTERM, SIGHUP), 141 the output was closed (e.g. | head).\n";

// Overloaded HTTP servers answer 429 often; a few retries would fail items
// that the next attempt gets through.
constexpr int kHttpRetries = 8;
// A request to a server that never answers must not hang the run: the
// default per-attempt limit of --http (the OpenAI SDKs use 600 s too).
constexpr double kHttpTimeoutSeconds = 600;
// --http: no retry 10 minutes after an item's first attempt (throttles and
// outages do not use up --retries).
constexpr char kHttpRetryFor[] = "10m";
// More local workers than this is a typo (each is a process).
constexpr int kMaxLocalWorkers = 1024;
constexpr int kMaxSlots = 65536;
// Items read ahead: beyond this many the window is memory, not speed.
constexpr long long kMaxWindow = 100000000;

// A validator that names the option and its range in plain words, instead
// of CLI11's "Value 0 not in range 0.000000 to 1797693134862315...".
CLI::Validator IntRange(long long low, long long high) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        long long v = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || errno != 0 || v < low || v > high) {
          return "must be a whole number between " + std::to_string(low) + " and " +
                 std::to_string(high) + " (got '" + text + "')";
        }
        return std::string();
      },
      std::to_string(low) + ".." + std::to_string(high));
}

CLI::Validator SecondsRange(double low, double high) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !(v >= low && v <= high)) {
          char range[96];
          std::snprintf(range, sizeof range, "between %g and %g seconds", low, high);
          return std::string("must be ") + range + " (got '" + text + "')";
        }
        return std::string();
      },
      "SECONDS");
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// "unknown option '--retires' (did you mean --retries?)".
std::string UnknownOption(const CLI::App& app, const std::string& arg) {
  std::string name = arg.substr(0, arg.find('='));
  std::string best;
  size_t best_distance = 3;  // suggest only close matches
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& l : option->get_lnames()) {
      size_t d = EditDistance(name, "--" + l);
      if (d < best_distance) best_distance = d, best = "--" + l;
    }
    for (const std::string& sn : option->get_snames()) {
      size_t d = EditDistance(name, "-" + sn);
      if (d < best_distance && name.size() > 2) best_distance = d, best = "-" + sn;
    }
  }
  return "unknown option '" + name + "'" +
         (best.empty() ? std::string() : " (did you mean " + best + "?)") +
         "; a command that starts with '-' goes after '--'";
}

// True if `a` and `b` name the same file.
bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// What a file the run writes (-o, --joblog) would destroy of what it reads
// (the input, -a / :::: files, each other); "" if nothing.
std::string InputClash(const fanmap::Config& config) {
  struct Named {
    std::string what;
    struct stat st;
  };
  // Regular files only: /dev/null, a terminal or a pipe read and written
  // at once destroys nothing.
  std::vector<Named> reads;
  struct stat st;
  if (config.input_path.empty() || config.input_path == "-") {
    if (fstat(0, &st) == 0 && S_ISREG(st.st_mode)) reads.push_back({"the input", st});
  } else if (stat(config.input_path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    reads.push_back({"the input", st});
  }
  for (const std::string& path : config.arg_input.files) {
    if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) reads.push_back({"the input", st});
  }
  std::vector<std::pair<std::string, std::string>> writes;
  if (!config.output_path.empty() && config.output_path != "-") {
    writes.emplace_back("output", config.output_path);
  }
  if (!config.joblog_path.empty()) writes.emplace_back("job log", config.joblog_path);
  for (size_t i = 0; i < writes.size(); ++i) {
    if (stat(writes[i].second.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    for (const Named& read : reads) {
      if (SameFile(read.st, st)) {
        return "the " + writes[i].first + " '" + writes[i].second + "' is also " + read.what +
               ": write it to another file";
      }
    }
    if (i == 1) {
      struct stat first;
      if (stat(writes[0].second.c_str(), &first) == 0 && SameFile(first, st)) {
        return "the job log '" + writes[1].second +
               "' is also the output: write it to another file";
      }
    }
  }
  return "";
}

// The payload flags, turned into the JobSpec workers receive.
struct PayloadFlags {
  std::string builtin;
  std::string pipe;
  std::string pipe_answers;  // --pipe-answers: "" (not given), "lines" or "json"
  std::string http;
  std::string method;
  std::vector<std::string> headers;
  std::string chat;
  std::string system;
  int max_tokens = 0;
  double temperature = -1;
  std::string api_key_env = "OPENAI_API_KEY";
  bool api_key_env_given = false;
  std::string cacert;   // --cacert FILE
  bool http11 = false;  // --http1.1
  std::vector<std::string> command;
};

// Puts the transport flags (--cacert, --http1.1) into the job; the CA file is
// read here, so that workers on other machines need no copy of it.
fanmap::Status AddTransportFlags(const PayloadFlags& f, fanmap::JobSpec* job) {
  if (!f.cacert.empty()) {
    std::ifstream in(f.cacert, std::ios::binary);
    std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      return fanmap::Status::Error("--cacert '" + f.cacert + "' cannot be read");
    }
    if (!in.is_open()) return fanmap::Status::Error("--cacert '" + f.cacert + "' cannot be opened");
    fanmap::Status checked = fanmap::CheckCaPem(pem);
    if (!checked.ok())
      return fanmap::Status::Error("--cacert '" + f.cacert + "': " + checked.message());
    job->options[fanmap::job_key::kCaCertPem] = std::move(pem);
  }
  if (f.http11) job->options[fanmap::job_key::kHttpVersion] = "1.1";
  return fanmap::Status::Ok();
}

// Parses "N/s", "N/min" (or a bare N, per second) into requests per second.
bool ParseRate(const std::string& text, double* per_second) {
  size_t slash = text.find('/');
  std::string number = text.substr(0, slash);
  std::string unit = slash == std::string::npos ? "s" : text.substr(slash + 1);
  char* end = nullptr;
  double n = std::strtod(number.c_str(), &end);
  if (number.empty() || *end != '\0' || !(n > 0)) return false;
  if (unit == "s" || unit == "sec") {
    *per_second = n;
  } else if (unit == "min" || unit == "m") {
    *per_second = n / 60;
  } else if (unit == "h") {
    *per_second = n / 3600;
  } else {
    return false;
  }
  return true;
}

fanmap::Status BuildJob(const PayloadFlags& f, fanmap::Config* config) {
  int kinds = !f.builtin.empty() + !f.pipe.empty() + !f.http.empty() + !f.command.empty();
  if (kinds == 0) {
    return fanmap::Status::Error(
        "nothing to run: give --builtin SPEC, --pipe CMD, --http URL or a COMMAND");
  }
  if (kinds > 1) {
    return fanmap::Status::Error("give exactly one of --builtin, --pipe, --http or a COMMAND");
  }
  if (f.pipe.empty() && !f.pipe_answers.empty()) {
    return fanmap::Status::Error("--pipe-answers needs --pipe CMD");
  }
  if (f.chat.empty() && (!f.system.empty() || f.max_tokens > 0 || f.temperature >= 0)) {
    return fanmap::Status::Error("--system, --max-tokens and --temperature need --chat MODEL");
  }
  if (f.http.empty() && (!f.chat.empty() || !f.method.empty() || !f.headers.empty() ||
                         !f.cacert.empty() || f.http11)) {
    return fanmap::Status::Error(
        "--chat, --method, --header, --cacert and --http1.1 need --http URL");
  }
  fanmap::JobSpec& job = config->job;
  job.default_slots = 1;
  if (!f.builtin.empty()) {
    job.kind = "builtin";
    job.argv = {f.builtin};
  } else if (!f.pipe.empty()) {
    job.kind = "pipe";
    job.argv = {f.pipe};
    // Only json goes into the job: the default adds nothing to it (nor to
    // its fingerprint), so that older workers and files are unaffected.
    if (f.pipe_answers == "json") job.options[fanmap::job_key::kPipeAnswers] = f.pipe_answers;
  } else if (!f.command.empty()) {
    job.kind = "exec";
    job.argv = f.command;
  } else {
    job.kind = "http";
    job.argv = {f.http};
    job.default_slots = 64;
    job.options[fanmap::job_key::kMethod] = f.method.empty() ? "POST" : f.method;
    std::string headers;
    for (const std::string& h : f.headers) {
      if (h.find(':') == std::string::npos) {
        return fanmap::Status::Error("--header '" + h + "' is not 'Name: value'");
      }
      headers += h + "\n";
    }
    if (!headers.empty()) job.options[fanmap::job_key::kHeaders] = headers;
    if (!f.chat.empty()) {
      job.options[fanmap::job_key::kChatModel] = f.chat;
      if (!f.system.empty()) job.options[fanmap::job_key::kSystem] = f.system;
      if (f.max_tokens > 0) job.options[fanmap::job_key::kMaxTokens] = std::to_string(f.max_tokens);
      if (f.temperature >= 0)
        job.options[fanmap::job_key::kTemperature] = std::to_string(f.temperature);
    }
    // The key comes from the environment, never from argv (visible in ps),
    // and goes only where it was asked for: to a chat API, or to this URL
    // when --api-key-env names the variable.
    bool wanted = !f.chat.empty() || f.api_key_env_given;
    const char* key = std::getenv(f.api_key_env.c_str());
    if (wanted && key != nullptr && *key != '\0') job.options[fanmap::job_key::kApiKey] = key;
    fanmap::Status transport = AddTransportFlags(f, &job);
    if (!transport.ok()) return transport;
  }
  job.options[fanmap::job_key::kInputFormat] =
      config->input_format == fanmap::InputFormat::kJsonl         ? "jsonl"
      : config->input_format == fanmap::InputFormat::kOpenAiBatch ? "openai-batch"
                                                                  : "lines";
  if (config->input_format == fanmap::InputFormat::kOpenAiBatch &&
      (f.http.empty() || !f.chat.empty() || !f.method.empty())) {
    return fanmap::Status::Error(
        "--input-format openai-batch needs --http BASE_URL, and no --chat or --method: each "
        "line is a whole request");
  }
  if (config->task_timeout_ms > 0) {
    job.options[fanmap::job_key::kTimeoutMs] = std::to_string(config->task_timeout_ms);
  }
  return fanmap::ValidateJob(job);
}

}  // namespace

// `fanmap keygen [NAME]`: writes NAME.key and NAME.pub.
int Keygen(int argc, char** argv) {
  std::string name = argc > 2 ? argv[2] : "fanmap";
  if (name == "-h" || name == "--help" || argc > 3) {
    std::printf(
        "Usage: fanmap keygen [NAME]\n\n"
        "Writes a CurveZMQ key pair: NAME.key (secret, mode 0600) and NAME.pub (public).\n"
        "Coordinator: fanmap --curve-secret coord.key --authorized-keys workers/ --listen ...\n"
        "Worker:      fanmap-worker --curve-secret w1.key --server-key coord.pub --connect ...\n");
    return name == "-h" || name == "--help" ? fanmap::kExitOk : fanmap::kExitUsage;
  }
  fanmap::CurveKeyPair pair;
  fanmap::Status status = fanmap::GenerateKeyPair(&pair);
  if (status.ok()) status = fanmap::WriteKeyPair(name, pair);
  if (!status.ok()) {
    std::fprintf(stderr, "fanmap keygen: %s\n", status.message().c_str());
    return fanmap::kExitUsage;
  }
  std::printf("wrote %s.key (secret) and %s.pub (public: %s)\n", name.c_str(), name.c_str(),
              pair.public_key.c_str());
  return fanmap::kExitOk;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "keygen") return Keygen(argc, argv);
  fanmap::Config config;
  PayloadFlags payload;
  CLI::App app{kDescription, "fanmap"};
  app.prefix_command();  // everything from the first positional on is COMMAND
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("fanmap: ") + e.what() + "\nRun 'fanmap --help' for usage.\n";
  });

  const char* kIo = "Input and output";
  app.add_option("-i,--input", config.input_path, "items, one per line (default: stdin)")
      ->group(kIo);
  app.add_option("-o,--output", config.output_path, "records (default: stdout)")->group(kIo);
  std::string input_format = "lines", output_format = "jsonl", progress = "auto";
  app.add_option("--input-format", input_format,
                 "lines: each line is an item; jsonl: each line must be a JSON value; "
                 "openai-batch: each line an OpenAI Batch API request {custom_id, method, url, "
                 "body}, sent to --http BASE_URL + url, and the output in the Batch API's "
                 "output format (jsonl and openai-batch: not with :::, --colsep, -n, -X)")
      ->check(CLI::IsMember({"lines", "jsonl", "openai-batch"}))
      ->capture_default_str()
      ->group(kIo);
  CLI::Option* output_format_option =
      app.add_option("--output-format", output_format,
                     "jsonl: one JSON record per item; raw: each result's text, one per line; "
                     "stdout: each command's stdout as it is, as `parallel -k` writes it "
                     "(stderr passed on grouped)")
          ->check(CLI::IsMember({"jsonl", "raw", "stdout"}))
          ->capture_default_str()
          ->group(kIo);
  app.add_flag("--unordered", config.unordered, "write records as they finish")->group(kIo);
  app.add_flag("--resume", config.resume,
               "with -o FILE: keep the records already in FILE, run only the missing items")
      ->group(kIo);
  app.add_flag("--resume-failed", config.resume_failed,
               "like --resume, and also run again the items whose records failed")
      ->group(kIo);
  app.add_option("--progress", progress, "progress bar on stderr (auto: if stderr is a terminal)")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str()
      ->group(kIo);
  app.add_option("--window", config.window,
                 "items read ahead of the oldest unwritten one (default 8192, grows with "
                 "the workers' slots; the worker holding the oldest may get up to its "
                 "credit more, for a --pipe filter that answers only once given more)")
      ->check(IntRange(1, kMaxWindow))
      ->group(kIo);

  const char* kWorkers = "Workers";
  app.add_option("-j,--workers", config.workers,
                 "local worker processes (default: number of CPUs, never more than the items; "
                 "0: remote workers only; at most " +
                     std::to_string(kMaxLocalWorkers) + ")")
      ->check(IntRange(0, kMaxLocalWorkers))
      ->group(kWorkers);
  app.add_option("--slots", config.slots,
                 "tasks in flight per worker (default 1; --http: 64; at most " +
                     std::to_string(kMaxSlots) + ")")
      ->check(IntRange(1, kMaxSlots))
      ->group(kWorkers);
  app.add_option("--listen", config.listen,
                 "also accept workers on ENDPOINT (e.g. tcp://127.0.0.1:5555); repeatable")
      ->group(kWorkers);
  app.add_option("--curve-secret", config.curve_secret_path,
                 "CurveZMQ: this coordinator's secret key file (from 'fanmap keygen')")
      ->group(kWorkers);
  app.add_option("--authorized-keys", config.authorized_keys_path,
                 "CurveZMQ: file or folder of the public keys of workers allowed to join")
      ->group(kWorkers);
  app.add_flag("--insecure", config.insecure,
               "allow --listen beyond loopback without keys (anyone who can connect may join)")
      ->group(kWorkers);
  app.add_option("--status", config.status_address,
                 "serve a live view of the run at http://ADDR/ (HOST:PORT; port 0: any free "
                 "port, logged): an HTML page, JSON at /status, Prometheus metrics at /metrics. "
                 "Read-only counts, worker names and hosts, never items, results or keys, but "
                 "anyone who can reach ADDR can read it (default: off)")
      ->type_name("ADDR")
      ->group(kWorkers);
  app.add_option("--worker-path", config.worker_path, "fanmap-worker binary to spawn")->group("");

  const char* kPayload = "Payload (exactly one)";
  app.add_option("--builtin", payload.builtin,
                 "built-in task: echo | sleep:MS | sha256:ROUNDS | fail-on:TEXT")
      ->group(kPayload);
  app.add_option("--pipe", payload.pipe,
                 "one long-lived 'CMD' (run by sh) per slot: one output line per input line, in "
                 "order; block-buffered filters (sed, awk, tr, python3) work: fanmap closes "
                 "their input to make them flush; one that drops or adds lines (grep -v) "
                 "fails its items, once its exit shows the count is off (a line skipped "
                 "mid-stream shifts the answers after it: answer every line)")
      ->group(kPayload);
  app.add_option("--pipe-answers", payload.pipe_answers,
                 "lines (default): each answer line is the item's result; json: "
                 "each is {\"ok\":true,\"result\":VALUE} or {\"ok\":false,\"error\":\"...\"} "
                 "(optionally \"retryable\":true, \"traceback\":\"...\"), so that the command "
                 "can fail an item; a line that is neither fails its item. The co-process finds "
                 "the format in $FANMAP_PIPE_ANSWERS (python3 -m fanmap.serve follows it)")
      ->check(CLI::IsMember({"lines", "json"}))
      ->type_name("FORMAT")
      ->group("Pipe (with --pipe)");
  app.add_option("--http", payload.http, "send each item as the body of a request to URL")
      ->group(kPayload);

  const char* kHttp = "HTTP (with --http)";
  app.add_option("--method", payload.method, "request method (default POST)")->group(kHttp);
  app.add_option("--header", payload.headers, "'Name: value' request header; repeatable")
      ->group(kHttp);
  app.add_option("--chat", payload.chat,
                 "OpenAI chat completions with MODEL: the item is the user message (or a "
                 "jsonl object with \"messages\")")
      ->group(kHttp);
  app.add_option("--system", payload.system, "system message for --chat")->group(kHttp);
  app.add_option("--max-tokens", payload.max_tokens, "max_tokens for --chat")
      ->check(IntRange(1, 100000000))
      ->group(kHttp);
  app.add_option("--temperature", payload.temperature, "temperature for --chat")
      ->check(CLI::Range(0.0, 2.0))
      ->group(kHttp);
  CLI::Option* api_key_env =
      app.add_option("--api-key-env", payload.api_key_env,
                     "environment variable holding the API key, sent as a Bearer token with "
                     "--chat, or to --http URL when this option is given")
          ->capture_default_str()
          ->group(kHttp);
  app.add_option("--cacert", payload.cacert,
                 "PEM file of CA certificates to trust for https:// besides the system's "
                 "(e.g. a private CA)")
      ->group(kHttp);
  app.add_flag("--http1.1", payload.http11,
               "never HTTP/2 (by default HTTP/2 is used where the https:// server offers it, "
               "multiplexing the requests over a few connections)")
      ->group(kHttp);
  std::string rate;
  app.add_option("--rate", rate,
                 "at most N requests per second or minute over all workers: "
                 "N/s or N/min")
      ->group(kHttp);
  app.add_option("--tokens-per-min", config.tokens_per_min,
                 "at most N LLM tokens per minute (estimated, corrected by reported usage)")
      ->check(IntRange(1, 1000000000000ll))
      ->group(kHttp);

  const char* kReliability = "Reliability";
  double timeout_s = 0;
  CLI::Option* timeout =
      app.add_option("--timeout", timeout_s,
                     "seconds one attempt of a task may take; then it is cancelled and retried "
                     "(default: none; --http: 600, and 10 s to connect)")
          ->check(SecondsRange(0.001, 1e7))
          ->group(kReliability);
  CLI::Option* retries =
      app.add_option(
             "--retries", config.retries,
             "extra attempts for a task that timed out, hit a retryable error or lost "
             "its worker (default 2; --http: 8; a 429 or a failure during an outage uses up "
             "none); unlike parallel's, not for a command that exits non-zero")
          ->check(CLI::Range(0, 1000))
          ->group(kReliability);
  std::string retry_for = "0";
  CLI::Option* retry_for_option =
      app.add_option("--retry-for", retry_for,
                     "no retry once this long after an item's first attempt (nor one whose wait "
                     "would end later): 90s, 10m, 1h, or 0 for no bound. Throttles (429) and "
                     "failures during an outage (the whole run pauses and probes) do not use up "
                     "--retries: this bounds them, and an outage that lasts longer fails every "
                     "item still waiting")
          ->option_text("DURATION (default: none; --http: 10m)")
          ->group(kReliability);
  app.add_option("--summary", config.summary_path,
                 "write the end-of-run summary to FILE as JSON (items, retries by cause, "
                 "requests/s, latency percentiles, tokens); exit 3 if it cannot be written")
      ->option_text("FILE")
      ->group(kIo);
  app.add_flag("-q,--quiet", config.quiet, "no summary on stderr at the end of the run")
      ->group(kIo);
  app.add_flag("--speculate", config.speculate,
               "send a backup copy of a straggling task to an idle worker; the first result "
               "wins (a task may then run twice: off by default, since commands and paid API "
               "calls have side effects)")
      ->group(kReliability);
  bool no_speculate = false;
  app.add_flag("--no-speculate", no_speculate, "the default (kept for old scripts)")->group("");
  std::string halt = "never";
  app.add_option(
         "--halt", halt,
         "stop early as GNU parallel does: never, now,fail=N, soon,fail=N, "
         "WHEN,fail=P% (of all the items once the input is read, until then of those "
         "read so far and of at least 10), WHEN,success=N|P%, WHEN,done=N|P% (items "
         "finished, failed or not), or parallel's 0, 1, 2, -1, -2, P% (whatever it says, a run "
         "whose first 5 items "
         "all fail because the command cannot start, a --pipe command breaks the "
         "one-line-per-item rule or the server refuses the credentials stops at once)")
      ->capture_default_str()
      ->group(kReliability);
  double heartbeat_s = 5;
  app.add_option("--heartbeat", heartbeat_s, "seconds of silence after which a worker is dead")
      ->check(SecondsRange(0.1, 3600))
      ->capture_default_str()
      ->group(kReliability);
  bool keep_order = false;
  app.add_flag("-k,--keep-order", keep_order,
               "accepted for GNU parallel's users: records are always in input order "
               "(unless --unordered)")
      ->group(kIo);
  fanmap::ParallelFlags parallel;
  fanmap::AddParallelOptions(&app, &parallel);
  // Made only when asked for: naming libcurl's version loads libcurl (common/lazy_curl.cc).
  app.set_version_flag(
      "--version", [] { return fanmap::VersionText("fanmap"); },
      "print the version (and the protocol, libzmq and libcurl versions)");

  app.footer(
      "COMMAND [ARG...] runs once per item, without a shell (one quoted word with shell\n"
      "syntax runs as sh -c, items quoted, unless it names an executable file). Words\n"
      "after COMMAND are its arguments, even those that look like options (as in\n"
      "parallel): fanmap's options go before it. GNU parallel's replacement strings: {} item,\n"
      "{.} without extension, {/} basename, {//} dirname, {/.} basename without extension,\n"
      "{#} job number, {%} job slot, {1} {2}... a source's or column's value ({1.} ...);\n"
      "without any, the item is appended. The result is the command's stdout; FANMAP_SEQ\n"
      "and FANMAP_SLOT are in its environment. Items also come after the command:\n"
      "  fanmap --output-format stdout echo {1}-{2} ::: a b ::: 1 2   (:::: FILE... too)");

  std::vector<std::string> cli_args;
  if (fanmap::Status split = fanmap::SplitArgSources(argc, argv, &cli_args, &parallel);
      !split.ok()) {
    std::fprintf(stderr, "fanmap: %s\nRun 'fanmap --help' for usage.\n", split.message().c_str());
    return fanmap::kExitUsage;
  }
  std::vector<char*> cli_argv;
  for (std::string& arg : cli_args) cli_argv.push_back(arg.data());
  try {
    app.parse(static_cast<int>(cli_argv.size()), cli_argv.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? fanmap::kExitOk : fanmap::kExitUsage;
  }
  payload.command = app.remaining();
  auto usage_error = [](const std::string& message) {
    std::fprintf(stderr, "fanmap: %s\nRun 'fanmap --help' for usage.\n", message.c_str());
    return fanmap::kExitUsage;
  };
  // Everything before the command (or before "--") that looks like an
  // option is one: an unknown one is a typo, never the command to run.
  if (!payload.command.empty() && payload.command.front() == "--") {
    payload.command.erase(payload.command.begin());
  } else if (!payload.command.empty() && payload.command.front().size() > 1 &&
             payload.command.front()[0] == '-') {
    return usage_error(UnknownOption(app, payload.command.front()));
  }
  payload.api_key_env_given = api_key_env->count() > 0;
  config.input_format = input_format == "jsonl"          ? fanmap::InputFormat::kJsonl
                        : input_format == "openai-batch" ? fanmap::InputFormat::kOpenAiBatch
                                                         : fanmap::InputFormat::kLines;
  config.output_format = output_format == "raw"      ? fanmap::OutputFormat::kRaw
                         : output_format == "stdout" ? fanmap::OutputFormat::kStdout
                                                     : fanmap::OutputFormat::kJsonl;
  // Batch API lines in, Batch API lines out (raw still writes one reply a line).
  if (config.input_format == fanmap::InputFormat::kOpenAiBatch &&
      config.output_format == fanmap::OutputFormat::kJsonl) {
    config.output_format = fanmap::OutputFormat::kOpenAiBatch;
  }
  config.progress = progress == "always"  ? fanmap::ProgressMode::kAlways
                    : progress == "never" ? fanmap::ProgressMode::kNever
                                          : fanmap::ProgressMode::kAuto;
  if (!rate.empty() && !ParseRate(rate, &config.rate_per_s)) {
    return usage_error("--rate '" + rate + "' is not N/s or N/min");
  }
  // A server that is down for longer is not coming back soon; a command's
  // retries are bounded by --retries alone.
  if (retry_for_option->count() == 0 && !payload.http.empty()) retry_for = kHttpRetryFor;
  if (!fanmap::ParseRetryFor(retry_for, &config.retry_for_ms)) {
    return usage_error("--retry-for '" + retry_for +
                       "' is not a duration (90s, 10m, 1h, or a number of minutes; 0: no bound)");
  }
  if (fanmap::Status parsed = fanmap::ParseHalt(halt, &config.halt); !parsed.ok()) {
    return usage_error(parsed.message());
  }
  if (config.speculate && no_speculate) {
    return usage_error("--speculate and --no-speculate contradict each other");
  }
  config.heartbeat_ms = static_cast<int>(heartbeat_s * 1000);
  if (timeout->count() == 0 && !payload.http.empty()) timeout_s = kHttpTimeoutSeconds;
  config.task_timeout_ms = static_cast<int64_t>(timeout_s * 1000);
  if (retries->count() == 0 && !payload.http.empty()) config.retries = kHttpRetries;
  fanmap::Status job = BuildJob(payload, &config);
  if (job.ok())
    job = fanmap::ApplyParallelFlags(parallel, output_format_option->count() > 0, &config);
  if (!job.ok()) return usage_error(job.message());
  if (keep_order && config.unordered) {
    return usage_error("-k (--keep-order) and --unordered contradict each other");
  }
  // After ApplyParallelFlags: -a, :::: and --dry-run change the input and
  // the output format.
  if ((config.resume || config.resume_failed) &&
      (config.output_path.empty() || config.output_path == "-")) {
    return usage_error("--resume needs -o FILE");
  }
  if (config.resume_failed) config.resume = true;
  struct stat resumed;
  if (config.resume && stat(config.output_path.c_str(), &resumed) == 0 &&
      !S_ISREG(resumed.st_mode)) {
    return usage_error("--resume needs -o FILE: '" + config.output_path +
                       "' is not a regular file");
  }
  if (config.resume && config.output_format != fanmap::OutputFormat::kJsonl &&
      config.output_format != fanmap::OutputFormat::kOpenAiBatch) {
    return usage_error(
        "--resume needs jsonl or openai-batch records (raw lines, command output and --dry-run "
        "do not say which item they are)");
  }
  // Writing a file that is also read would destroy the items before they
  // are read.
  if (std::string clash = InputClash(config); !clash.empty()) return usage_error(clash);
  return fanmap::RunCoordinator(config);
}
