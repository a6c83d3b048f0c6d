#include "coordinator/farm_snapshot.h"

#include <cmath>
#include <cstdio>
#include <set>

#include "common/json_text.h"
#include "common/printable.h"
#include "common/version.h"

namespace fanmap {
namespace {

// Names and hosts longer than this are cut (Printable adds "…").
constexpr size_t kMaxNameBytes = 120;

WorkerView ViewOf(const Worker& w, int64_t now_ms) {
  WorkerView v;
  v.id = w.id;
  v.name = w.hello.name;
  v.host = w.hello.host;
  v.local = w.local_pid != 0;
  v.slots = w.credit.slots();
  v.in_flight = w.credit.outstanding();
  v.tasks_done = w.accepted;
  v.results = w.completed;
  v.mean_task_ms = w.completed > 0 ? static_cast<double>(w.task_micros) / w.completed / 1000 : 0;
  v.last_seen_ms_ago = now_ms > w.last_heard_ms ? now_ms - w.last_heard_ms : 0;
  return v;
}

// A finite number in fixed notation: JSON has no NaN or Infinity.
std::string Fixed(double value, int decimals) {
  if (!std::isfinite(value)) value = 0;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

void AppendWorkerJson(const WorkerView& w, bool departed, std::string* out) {
  *out += "{\"id\":" + std::to_string(w.id) + ",\"name\":";
  AppendJsonString(Printable(w.name, kMaxNameBytes), out);
  *out += ",\"host\":";
  AppendJsonString(Printable(w.host, kMaxNameBytes), out);
  *out += ",\"local\":";
  *out += w.local ? "true" : "false";
  *out += ",\"slots\":" + std::to_string(w.slots);
  *out += ",\"in_flight\":" + std::to_string(w.in_flight);
  *out += ",\"tasks_done\":" + std::to_string(w.tasks_done);
  *out += ",\"results\":" + std::to_string(w.results);
  *out += ",\"mean_task_ms\":" + Fixed(w.mean_task_ms, 3);
  *out += ",\"last_seen_ms_ago\":" + std::to_string(w.last_seen_ms_ago);
  if (departed) {
    *out += ",\"why_left\":";
    AppendJsonString(Printable(w.why_left, kMaxNameBytes), out);
  }
  *out += '}';
}

// A label value of the exposition format: \, " and newline escaped.
std::string LabelValue(const std::string& raw) {
  std::string text = Printable(raw, kMaxNameBytes);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Sample(double value) {
  if (!std::isfinite(value)) value = 0;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", value);
  return buf;
}

class MetricsWriter {
 public:
  explicit MetricsWriter(std::string* out) : out_(out) {}
  void Family(const char* name, const char* type, const char* help) {
    *out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void Value(const char* name, const std::string& labels, const std::string& value) {
    *out_ += name;
    if (!labels.empty()) *out_ += "{" + labels + "}";
    *out_ += " " + value + "\n";
  }
  void One(const char* name, const char* type, const char* help, const std::string& value) {
    Family(name, type, help);
    Value(name, "", value);
  }

 private:
  std::string* out_;
};

}  // namespace

size_t FarmSnapshot::hosts() const {
  std::set<std::string> names;
  for (const WorkerView& w : workers) names.insert(w.host);
  return names.size();
}

uint64_t FarmSnapshot::slots() const {
  uint64_t n = 0;
  for (const WorkerView& w : workers) n += w.slots;
  return n;
}

double FarmSnapshot::rate_per_s() const { return elapsed_s > 0 ? items_done / elapsed_s : 0; }

std::optional<double> FarmSnapshot::eta_s() const {
  double rate = rate_per_s();
  if (!items_total || rate <= 0) return std::nullopt;
  return *items_total > items_done ? (*items_total - items_done) / rate : 0;
}

FarmSnapshot TakeFarmSnapshot(const Scheduler& scheduler, const RunCounts& counts, int64_t now_us) {
  FarmSnapshot s;
  int64_t now_ms = now_us / 1000;
  s.state = counts.state;
  s.elapsed_s = now_us > counts.started_us ? (now_us - counts.started_us) / 1e6 : 0;
  s.items_read = scheduler.window().end();
  s.items_done = counts.done;
  s.items_failed = counts.failed;
  s.items_retried = scheduler.retried();
  s.in_flight = scheduler.InFlight();
  if (counts.total > 0) {
    s.items_total = counts.total;
  } else if (counts.input_done) {
    s.items_total = s.items_read;
  }
  const WorkerRegistry& registry = scheduler.workers();
  s.workers.reserve(registry.size());
  for (const Worker* w : registry.all()) s.workers.push_back(ViewOf(*w, now_ms));
  s.departed.reserve(registry.departed().size());
  for (const DepartedWorker& d : registry.departed()) {
    s.departed.push_back(ViewOf(d.worker, now_ms));
    s.departed.back().in_flight = 0;  // its tasks went back in line when it left
    s.departed.back().why_left = d.why;
  }
  s.departed_count = registry.departed_count();
  return s;
}

std::string RenderStatusJson(const FarmSnapshot& s) {
  std::string out;
  out.reserve(512 + 256 * (s.workers.size() + s.departed.size()));
  out += "{\"version\":";
  AppendJsonString(kFanmapVersion, &out);
  out += ",\"state\":";
  out += s.state == RunState::kRunning ? "\"running\"" : "\"stopping\"";
  out += ",\"elapsed_s\":" + Fixed(s.elapsed_s, 3);
  out += ",\"items\":{\"read\":" + std::to_string(s.items_read);
  out += ",\"done\":" + std::to_string(s.items_done);
  out += ",\"failed\":" + std::to_string(s.items_failed);
  out += ",\"retried\":" + std::to_string(s.items_retried);
  out += ",\"in_flight\":" + std::to_string(s.in_flight);
  out += ",\"total\":" + (s.items_total ? std::to_string(*s.items_total) : "null");
  out += "},\"rate_per_s\":" + Fixed(s.rate_per_s(), 3);
  std::optional<double> eta = s.eta_s();
  out += ",\"eta_s\":" + (eta ? Fixed(*eta, 3) : "null");
  out += ",\"hosts\":" + std::to_string(s.hosts());
  out += ",\"slots\":" + std::to_string(s.slots());
  out += ",\"workers\":[";
  for (size_t i = 0; i < s.workers.size(); ++i) {
    if (i > 0) out += ',';
    AppendWorkerJson(s.workers[i], false, &out);
  }
  out += "],\"departed_count\":" + std::to_string(s.departed_count);
  out += ",\"departed\":[";
  for (size_t i = 0; i < s.departed.size(); ++i) {
    if (i > 0) out += ',';
    AppendWorkerJson(s.departed[i], true, &out);
  }
  out += "]}\n";
  return out;
}

std::string RenderPrometheus(const FarmSnapshot& s) {
  std::string out;
  out.reserve(2048 + 600 * s.workers.size());
  MetricsWriter m(&out);
  m.One("fanmap_items_read_total", "counter", "Items read from the input.",
        std::to_string(s.items_read));
  m.One("fanmap_items_done_total", "counter", "Records written (failed items included).",
        std::to_string(s.items_done));
  m.One("fanmap_items_failed_total", "counter", "Records written for items that failed.",
        std::to_string(s.items_failed));
  m.One("fanmap_items_retried_total", "counter",
        "Tasks sent again after a failure or a lost worker.", std::to_string(s.items_retried));
  if (s.items_total) {
    m.One("fanmap_items_expected", "gauge", "Items in the input, once known.",
          std::to_string(*s.items_total));
  }
  m.One("fanmap_tasks_in_flight", "gauge", "Tasks sent to workers and not yet answered.",
        std::to_string(s.in_flight));
  m.One("fanmap_items_per_second", "gauge", "Records written per second since the start.",
        Sample(s.rate_per_s()));
  if (std::optional<double> eta = s.eta_s()) {
    m.One("fanmap_eta_seconds", "gauge", "Seconds left at the rate so far.", Sample(*eta));
  }
  m.One("fanmap_elapsed_seconds", "gauge", "Seconds since the run started.", Sample(s.elapsed_s));
  m.One("fanmap_stopping", "gauge",
        "1 while the run only finishes what runs (interrupted, halting, failed), else 0.",
        s.state == RunState::kStopping ? "1" : "0");
  m.One("fanmap_workers", "gauge", "Workers in the run.", std::to_string(s.workers.size()));
  m.One("fanmap_hosts", "gauge", "Hosts the workers in the run are on.", std::to_string(s.hosts()));
  m.One("fanmap_slots", "gauge", "Task slots of the workers in the run.",
        std::to_string(s.slots()));
  m.One("fanmap_workers_departed_total", "counter", "Workers that left the run.",
        std::to_string(s.departed_count));

  std::vector<std::string> labels;
  labels.reserve(s.workers.size());
  for (const WorkerView& w : s.workers) {
    labels.push_back("id=\"" + std::to_string(w.id) + "\",worker=\"" + LabelValue(w.name) +
                     "\",host=\"" + LabelValue(w.host) + "\"");
  }
  struct PerWorker {
    const char* name;
    const char* type;
    const char* help;
    std::string (*value)(const WorkerView&);
  };
  static const PerWorker kPerWorker[] = {
      {"fanmap_worker_slots", "gauge", "Task slots of the worker.",
       [](const WorkerView& w) { return std::to_string(w.slots); }},
      {"fanmap_worker_tasks_in_flight", "gauge", "Tasks at the worker, not yet answered.",
       [](const WorkerView& w) { return std::to_string(w.in_flight); }},
      {"fanmap_worker_tasks_done_total", "counter",
       "Results of the worker that completed their item.",
       [](const WorkerView& w) { return std::to_string(w.tasks_done); }},
      {"fanmap_worker_mean_task_seconds", "gauge", "Mean payload time of the worker's results.",
       [](const WorkerView& w) { return Sample(w.mean_task_ms / 1000); }},
      {"fanmap_worker_last_seen_seconds", "gauge", "Seconds since the worker was last heard from.",
       [](const WorkerView& w) { return Sample(w.last_seen_ms_ago / 1000.0); }},
  };
  for (const PerWorker& metric : kPerWorker) {
    m.Family(metric.name, metric.type, metric.help);
    for (size_t i = 0; i < s.workers.size(); ++i) {
      m.Value(metric.name, labels[i], metric.value(s.workers[i]));
    }
  }
  return out;
}

}  // namespace fanmap
