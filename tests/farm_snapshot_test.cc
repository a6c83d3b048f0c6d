#include "coordinator/farm_snapshot.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fanmap {
namespace {

constexpr char kRun[] = "0123456789abcdef0123456789abcdef";

class FarmSnapshotTest : public ::testing::Test {
 protected:
  FarmSnapshotTest() : scheduler_(Options()) {}

  static SchedulerOptions Options() {
    SchedulerOptions options;
    options.run_id = kRun;
    options.liveness_ms = 1000;
    options.speculate = false;
    options.retries = 2;
    return options;
  }

  Worker& Join(const std::string& name, const std::string& host, uint32_t slots) {
    Hello hello;
    hello.name = name;
    hello.host = host;
    return scheduler_.AddWorker("id-" + name, hello, slots, 0, now_ms_);
  }

  // Sends `worker` up to `n` tasks and answers them, each taking `task_us`.
  void Run(Worker& worker, size_t n, uint64_t task_us, bool ok = true, bool retryable = false) {
    std::vector<Result> results;
    uint64_t index;
    while (results.size() < n && worker.credit.available() > 0 && scheduler_.NextTask(&index)) {
      Result r;
      r.index = index;
      r.attempt = scheduler_.Assign(index, worker, now_ms_ * 1000, now_ms_);
      r.ok = ok;
      r.retryable = retryable;
      r.elapsed_us = task_us;
      results.push_back(r);
    }
    scheduler_.OnResults(&worker, kRun, &results, now_ms_);
  }

  // Sends `worker` up to `n` tasks and leaves them unanswered.
  void Hold(Worker& worker, size_t n) {
    uint64_t index;
    for (size_t i = 0; i < n && scheduler_.NextTask(&index); ++i) {
      scheduler_.Assign(index, worker, now_ms_ * 1000, now_ms_);
    }
  }

  void AddItems(int n) {
    for (int i = 0; i < n; ++i) scheduler_.AddItem("item");
  }

  FarmSnapshot Take(RunCounts counts = {}) {
    counts.started_us = 0;
    return TakeFarmSnapshot(scheduler_, counts, now_ms_ * 1000);
  }

  Scheduler scheduler_;
  int64_t now_ms_ = 10000;
};

TEST_F(FarmSnapshotTest, WorkersShowSlotsTasksInFlightDoneAndMeanTaskTime) {
  AddItems(10);
  Worker& a = Join("a", "h1", 4);
  Worker& b = Join("b", "h2", 2);
  Run(a, 3, 2000);
  Hold(a, 2);
  Run(b, 1, 5000);
  now_ms_ += 1500;
  a.last_heard_ms = now_ms_ - 300;
  FarmSnapshot s = Take();
  ASSERT_EQ(s.workers.size(), 2u);
  const WorkerView& va = s.workers[0];
  EXPECT_EQ(va.name, "a");
  EXPECT_EQ(va.host, "h1");
  EXPECT_EQ(va.slots, 4u);
  EXPECT_EQ(va.tasks_done, 3u);
  EXPECT_EQ(va.in_flight, 2u);
  EXPECT_DOUBLE_EQ(va.mean_task_ms, 2.0);
  EXPECT_EQ(va.last_seen_ms_ago, 300);
  EXPECT_EQ(s.workers[1].tasks_done, 1u);
  EXPECT_DOUBLE_EQ(s.workers[1].mean_task_ms, 5.0);
  EXPECT_EQ(s.workers[1].last_seen_ms_ago, 1500);
  EXPECT_EQ(s.in_flight, 2u);
  EXPECT_EQ(s.items_read, 10u);
  EXPECT_EQ(s.hosts(), 2u);
  EXPECT_EQ(s.slots(), 6u);
}

TEST_F(FarmSnapshotTest, RetryableFailuresAreResultsButNotTasksDone) {
  AddItems(4);
  Worker& a = Join("a", "h", 4);
  Run(a, 2, 1000, /*ok=*/false, /*retryable=*/true);
  Run(a, 2, 3000);
  FarmSnapshot s = Take();
  EXPECT_EQ(s.workers[0].results, 4u);
  EXPECT_EQ(s.workers[0].tasks_done, 2u);
  EXPECT_DOUBLE_EQ(s.workers[0].mean_task_ms, 2.0);
  EXPECT_EQ(s.items_retried, 2u);
}

TEST_F(FarmSnapshotTest, WorkersThatLeftKeepTheirCountsAndSayWhy) {
  AddItems(6);
  Worker& a = Join("a", "h", 2);
  Join("b", "h", 2);
  Run(a, 2, 1000);
  Hold(a, 2);
  WorkerId id = a.id;
  scheduler_.RemoveWorker(id, "silent for 5000 ms", now_ms_);
  FarmSnapshot s = Take();
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_EQ(s.workers[0].name, "b");
  ASSERT_EQ(s.departed.size(), 1u);
  EXPECT_EQ(s.departed_count, 1u);
  EXPECT_EQ(s.departed[0].id, id);
  EXPECT_EQ(s.departed[0].name, "a");
  EXPECT_EQ(s.departed[0].tasks_done, 2u);
  EXPECT_EQ(s.departed[0].in_flight, 0u) << "its tasks went back in line";
  EXPECT_EQ(s.departed[0].why_left, "silent for 5000 ms");
  EXPECT_EQ(s.in_flight, 0u);
}

TEST_F(FarmSnapshotTest, OnlyTheLastDepartedWorkersAreKeptButAllAreCounted) {
  size_t n = WorkerRegistry::kKeptDeparted + 5;
  for (size_t i = 0; i < n; ++i) {
    Worker& w = Join("w" + std::to_string(i), "h", 1);
    scheduler_.RemoveWorker(w.id, "released", now_ms_);
  }
  FarmSnapshot s = Take();
  EXPECT_EQ(s.departed_count, n);
  ASSERT_EQ(s.departed.size(), WorkerRegistry::kKeptDeparted);
  EXPECT_EQ(s.departed.front().name, "w5");
  EXPECT_EQ(s.departed.back().name, "w" + std::to_string(n - 1));
}

TEST_F(FarmSnapshotTest, RateAndEtaFollowTheRecordsWritten) {
  RunCounts counts;
  counts.done = 500;
  counts.total = 2000;
  now_ms_ = 10000;  // 10 s after the start
  FarmSnapshot s = Take(counts);
  EXPECT_DOUBLE_EQ(s.rate_per_s(), 50);
  ASSERT_TRUE(s.items_total.has_value());
  EXPECT_EQ(*s.items_total, 2000u);
  ASSERT_TRUE(s.eta_s().has_value());
  EXPECT_DOUBLE_EQ(*s.eta_s(), 30);
}

TEST_F(FarmSnapshotTest, TotalIsUnknownUntilTheInputEndsUnlessCounted) {
  AddItems(7);
  RunCounts counts;
  counts.done = 3;
  EXPECT_FALSE(Take(counts).items_total.has_value());
  EXPECT_FALSE(Take(counts).eta_s().has_value());
  counts.input_done = true;
  FarmSnapshot s = Take(counts);
  ASSERT_TRUE(s.items_total.has_value());
  EXPECT_EQ(*s.items_total, 7u);
  counts.done = 0;
  EXPECT_FALSE(Take(counts).eta_s().has_value()) << "no rate yet";
}

TEST_F(FarmSnapshotTest, JsonHasTheCountsAndEveryWorker) {
  AddItems(5);
  Worker& a = Join("a", "h1", 3);
  Run(a, 2, 4000);
  scheduler_.RemoveWorker(Join("gone", "h2", 1).id, "left (shutting down)", now_ms_);
  RunCounts counts;
  counts.done = 2;
  counts.failed = 1;
  counts.state = RunState::kStopping;
  nlohmann::json j = nlohmann::json::parse(RenderStatusJson(Take(counts)));
  EXPECT_EQ(j["state"], "stopping");
  EXPECT_EQ(j["items"]["read"], 5);
  EXPECT_EQ(j["items"]["done"], 2);
  EXPECT_EQ(j["items"]["failed"], 1);
  EXPECT_TRUE(j["items"]["total"].is_null());
  EXPECT_TRUE(j["eta_s"].is_null());
  EXPECT_DOUBLE_EQ(j["rate_per_s"].get<double>(), 0.2);
  ASSERT_EQ(j["workers"].size(), 1u);
  EXPECT_EQ(j["workers"][0]["name"], "a");
  EXPECT_EQ(j["workers"][0]["host"], "h1");
  EXPECT_EQ(j["workers"][0]["slots"], 3);
  EXPECT_EQ(j["workers"][0]["tasks_done"], 2);
  EXPECT_DOUBLE_EQ(j["workers"][0]["mean_task_ms"].get<double>(), 4.0);
  EXPECT_FALSE(j["workers"][0].contains("why_left"));
  EXPECT_EQ(j["departed_count"], 1);
  EXPECT_EQ(j["departed"][0]["name"], "gone");
  EXPECT_EQ(j["departed"][0]["why_left"], "left (shutting down)");
}

TEST_F(FarmSnapshotTest, HostileNamesStayInsideTheirJsonString) {
  Join("a\"},\"evil\":1,\"x\":{\"\n\x1b[2J<script>", std::string("h\xff\xfe", 3), 1);
  nlohmann::json j = nlohmann::json::parse(RenderStatusJson(Take()));
  EXPECT_FALSE(j.contains("evil"));
  std::string name = j["workers"][0]["name"];
  EXPECT_EQ(name.find('\n'), std::string::npos);
  EXPECT_EQ(name.find('\x1b'), std::string::npos);
  EXPECT_NE(name.find("<script>"), std::string::npos) << "kept as text: the page sets textContent";
  EXPECT_EQ(j["workers"][0]["host"], "h\\xff\\xfe");
}

// The exposition format, checked line by line: every sample belongs to the
// family of the HELP and TYPE lines before it.
TEST_F(FarmSnapshotTest, PrometheusMetricsHaveHelpAndTypeAndConventionalNames) {
  AddItems(5);
  Worker& a = Join("a", "h1", 3);
  Run(a, 2, 4000);
  RunCounts counts;
  counts.done = 2;
  counts.total = 5;
  std::string text = RenderPrometheus(Take(counts));
  std::string family;
  std::map<std::string, std::string> samples;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "the text ends with a newline";
    std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.rfind("# HELP ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      EXPECT_EQ(rest.substr(0, rest.find(' ')), family) << line;
      std::string type = rest.substr(rest.find(' ') + 1);
      EXPECT_TRUE(type == "counter" || type == "gauge") << line;
      EXPECT_EQ(type == "counter",
                family.size() > 6 && family.substr(family.size() - 6) == "_total")
          << "counters, and only counters, end in _total: " << line;
      continue;
    }
    size_t space = line.rfind(' ');
    std::string series = line.substr(0, space);
    EXPECT_EQ(series.substr(0, series.find('{')), family) << line;
    EXPECT_TRUE(samples.emplace(series, line.substr(space + 1)).second) << "duplicate " << line;
  }
  EXPECT_EQ(samples["fanmap_items_read_total"], "5");
  EXPECT_EQ(samples["fanmap_items_done_total"], "2");
  EXPECT_EQ(samples["fanmap_items_expected"], "5");
  EXPECT_EQ(samples["fanmap_workers"], "1");
  EXPECT_EQ(samples["fanmap_tasks_in_flight"], "0");
  EXPECT_EQ(samples["fanmap_worker_tasks_done_total{id=\"1\",worker=\"a\",host=\"h1\"}"], "2");
  EXPECT_EQ(samples["fanmap_worker_mean_task_seconds{id=\"1\",worker=\"a\",host=\"h1\"}"], "0.004");
  EXPECT_EQ(samples.count("fanmap_eta_seconds"), 1u);
}

TEST_F(FarmSnapshotTest, PrometheusLabelValuesAreEscaped) {
  Join("say \"hi\" \\ there", "h", 1);
  std::string text = RenderPrometheus(Take());
  EXPECT_NE(text.find("worker=\"say \\\"hi\\\" \\\\\\\\ there\""), std::string::npos) << text;
}

TEST_F(FarmSnapshotTest, WorkersWithTheSameNameAreDistinctSeries) {
  Join("same", "h", 1);
  Join("same", "h", 1);
  std::string text = RenderPrometheus(Take());
  EXPECT_NE(text.find("fanmap_worker_slots{id=\"1\",worker=\"same\""), std::string::npos);
  EXPECT_NE(text.find("fanmap_worker_slots{id=\"2\",worker=\"same\""), std::string::npos);
}

}  // namespace
}  // namespace fanmap
