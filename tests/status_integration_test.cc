// The live view (--status) of real runs: a real coordinator, real local and
// remote workers over tcp, read while the run is held open by an input FIFO
// with a real HTTP client (cpp-httplib), the reference Prometheus parser
// (python3-prometheus-client) and a real browser (chromium --headless).
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/exit_status.h"
#include "tests/farm_fixture.h"
#include "tests/farm_test_util.h"

namespace fanmap {
namespace {

using testing_util::FanmapPath;
using testing_util::InputFifo;
using testing_util::Lines;
using testing_util::ParseRecords;
using testing_util::Process;
using testing_util::ReadFile;
using testing_util::Seq;
using testing_util::TempDir;
using testing_util::WaitUntil;
using testing_util::WorkerPath;

class StatusTest : public testing_util::FarmFixture {
 protected:
  // The address a coordinator started with --status HOST:0 logged on `err_path`.
  static std::string StatusAddress(const std::string& err_path) {
    const std::string kPrefix = "status on http://";
    std::string err = testing_util::WaitForText(err_path, kPrefix);
    size_t start = err.find(kPrefix);
    if (start == std::string::npos) return "";
    start += kPrefix.size();
    return err.substr(start, err.find('/', start) - start);
  }

  // GET http://address/path; the body, or "" if there is no 200 answer.
  static std::string Get(const std::string& address, const std::string& path) {
    size_t colon = address.rfind(':');
    httplib::Client client(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
    client.set_read_timeout(testing_util::kDeadlineS);
    auto response = client.Get(path.c_str());
    return response && response->status == 200 ? response->body : "";
  }

  static nlohmann::json ReadStatus(const std::string& address) {
    return nlohmann::json::parse(Get(address, "/status"), nullptr, /*allow_exceptions=*/false);
  }

  // Waits until /status says `done` records are written and the output
  // file holds them; returns that status.
  static nlohmann::json WaitForDone(const std::string& address, const std::string& out_path,
                                    uint64_t done) {
    nlohmann::json status;
    WaitUntil([&] {
      status = ReadStatus(address);
      return status.is_object() && status["items"]["done"] == done &&
             Lines(ReadFile(out_path)).size() == done;
    });
    return status;
  }

  static uint64_t SumTasksDone(const nlohmann::json& status) {
    uint64_t sum = 0;
    for (const char* list : {"workers", "departed"}) {
      for (const auto& w : status[list]) sum += w["tasks_done"].get<uint64_t>();
    }
    return sum;
  }

  // /metrics through the reference parser: sample name (with its labels
  // sorted, as "name{k=v,...}") → value. Fails the test if it does not parse.
  static std::map<std::string, double> Metrics(const std::string& address) {
    testing_util::RunResult parsed = testing_util::Run(
        {"/usr/bin/python3", std::string(FANMAP_SOURCE_DIR) + "/tests/status/parse_metrics.py",
         "http://" + address + "/metrics"},
        "");
    EXPECT_EQ(parsed.exit_code, 0) << parsed.err;
    std::map<std::string, double> samples;
    nlohmann::json list = nlohmann::json::parse(parsed.out, nullptr, false);
    if (!list.is_array()) return samples;
    for (const auto& s : list) {
      std::string key = s[0];
      if (!s[1].empty()) {
        std::string labels;
        for (auto& [k, v] : s[1].items()) {
          labels += (labels.empty() ? "" : ",") + k + "=" + v.get<std::string>();
        }
        key += "{" + labels + "}";
      }
      samples[key] = s[2].get<double>();
    }
    return samples;
  }

  // Starts `fanmap -j LOCAL_WORKERS --listen ... --status 127.0.0.1:0 --builtin echo`
  // reading in_ (a FIFO: the run lasts until the test closes it) and writing
  // dir_/out; waits for the status address and the task endpoint it logs.
  void StartRun(const std::string& local_workers) {
    in_ = std::make_unique<InputFifo>(dir_.File("in"));
    fanmap_ = std::make_unique<Process>(
        // --heartbeat: fifty workers on two loaded cores must not be taken for
        // dead; no test here is about silence.
        std::vector<std::string>{FanmapPath(), "-j", local_workers, "--listen", "tcp://127.0.0.1:*",
                                 "--heartbeat", "60", "--status", "127.0.0.1:0", "--builtin",
                                 "echo", "-i", in_->path(), "-o", dir_.File("out")},
        "", dir_.File("stdout"), dir_.File("err"), Env());
    address_ = StatusAddress(dir_.File("err"));
    ASSERT_FALSE(address_.empty()) << ReadFile(dir_.File("err"));
    endpoint_ = testing_util::ListeningEndpoint(dir_.File("err"));
    ASSERT_FALSE(endpoint_.empty()) << ReadFile(dir_.File("err"));
  }

  // A remote worker named `name`, connected to the run's endpoint.
  std::unique_ptr<Process> Worker(const std::string& name) {
    return std::make_unique<Process>(
        std::vector<std::string>{WorkerPath(), "--connect", endpoint_, "--name", name}, "",
        dir_.File(name + ".out"), dir_.File(name + ".err"), Env());
  }

  TempDir dir_;
  std::unique_ptr<InputFifo> in_;
  std::unique_ptr<Process> fanmap_;
  std::string address_;
  std::string endpoint_;
};

TEST_F(StatusTest, ShowsEveryWorkerAndWhyOneLeftWhileTheRunGoesOn) {
  ASSERT_NO_FATAL_FAILURE(StartRun("2"));
  auto remote = Worker("remote1");
  ASSERT_FALSE(testing_util::WaitForText(dir_.File("err"), "worker remote1 joined").empty());
  // Two items start both local workers; the rest waits until they have joined.
  in_->Write(Seq(1, 2));
  nlohmann::json status;
  WaitUntil([&] {
    status = ReadStatus(address_);
    return status.is_object() && status["workers"].size() == 3;
  });
  ASSERT_EQ(status["workers"].size(), 3u) << status.dump();
  in_->Write(Seq(3, 500));

  status = WaitForDone(address_, dir_.File("out"), 500);
  ASSERT_EQ(status["items"]["done"], 500) << status.dump();
  EXPECT_EQ(status["state"], "running");
  EXPECT_EQ(status["items"]["read"], 500);
  EXPECT_EQ(status["items"]["failed"], 0);
  EXPECT_TRUE(status["items"]["total"].is_null()) << "the FIFO is still open";
  EXPECT_GT(status["rate_per_s"].get<double>(), 0);
  ASSERT_EQ(status["workers"].size(), 3u) << status.dump();
  EXPECT_EQ(SumTasksDone(status), 500u) << status.dump();
  std::string host = status["workers"][0]["host"];
  bool found_remote = false;
  for (const auto& w : status["workers"]) {
    EXPECT_EQ(w["host"], host);
    EXPECT_GE(w["slots"].get<int>(), 1);
    EXPECT_GE(w["last_seen_ms_ago"].get<int64_t>(), 0);
    EXPECT_EQ(w["in_flight"], 0) << "every item is written";
    if (w["name"] == "remote1") {
      found_remote = true;
      EXPECT_FALSE(w["local"].get<bool>());
    } else {
      EXPECT_TRUE(w["local"].get<bool>());
    }
  }
  EXPECT_TRUE(found_remote) << status.dump();

  // The same through the reference Prometheus parser.
  std::map<std::string, double> metrics = Metrics(address_);
  EXPECT_EQ(metrics["fanmap_items_done_total"], 500);
  EXPECT_EQ(metrics["fanmap_items_read_total"], 500);
  EXPECT_EQ(metrics["fanmap_workers"], 3);
  EXPECT_EQ(metrics["fanmap_hosts"], 1);
  double per_worker = 0;
  int series = 0;
  for (const auto& [key, value] : metrics) {
    if (key.rfind("fanmap_worker_tasks_done_total{", 0) == 0) per_worker += value, ++series;
  }
  EXPECT_EQ(series, 3);
  EXPECT_EQ(per_worker, 500);

  // A worker stopped by a signal says BYE: it leaves the list of workers for
  // the departed ones, with its count and why.
  int remote_done = 0;
  for (const auto& w : status["workers"]) {
    if (w["name"] == "remote1") remote_done = w["tasks_done"];
  }
  kill(remote->pid(), SIGTERM);
  EXPECT_EQ(remote->Wait(testing_util::kDeadlineS), kExitInterrupted);
  WaitUntil([&] {
    status = ReadStatus(address_);
    return status.is_object() && status["departed_count"] == 1;
  });
  ASSERT_EQ(status["departed"].size(), 1u) << status.dump();
  EXPECT_EQ(status["departed"][0]["name"], "remote1");
  EXPECT_EQ(status["departed"][0]["tasks_done"], remote_done);
  EXPECT_NE(status["departed"][0]["why_left"].get<std::string>().find("stopped by a signal"),
            std::string::npos)
      << status.dump();
  EXPECT_EQ(status["workers"].size(), 2u);
  EXPECT_EQ(SumTasksDone(status), 500u);

  in_->Write(Seq(501, 600));
  in_->Close();
  ASSERT_EQ(fanmap_->Wait(), 0) << ReadFile(dir_.File("err"));
  ParseRecords(ReadFile(dir_.File("out")), 600);
  ExpectNoProcessLeft();
}

TEST_F(StatusTest, ThePageFillsInTheWorkersInARealBrowser) {
  if (access("/usr/bin/chromium", X_OK) != 0) {
    GTEST_SKIP() << "no /usr/bin/chromium (scripts/deps installs it): the page is not tested";
  }
  ASSERT_NO_FATAL_FAILURE(StartRun("0"));
  auto w1 = Worker("page-worker-1");
  auto w2 = Worker("page-worker-2");
  in_->Write(Seq(1, 100));
  nlohmann::json status = WaitForDone(address_, dir_.File("out"), 100);
  ASSERT_EQ(status["workers"].size(), 2u) << status.dump();

  std::string page = Get(address_, "/");
  EXPECT_EQ(page.find("page-worker-1"), std::string::npos) << "the server sends no rows";
  // Root needs --no-sandbox. The virtual time budget lets the page's fetch
  // of /status finish (and its timer run) before the DOM is dumped.
  testing_util::RunResult browser =
      testing_util::Run({"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                         "--user-data-dir=" + dir_.File("chromium"), "--virtual-time-budget=5000",
                         "--dump-dom", "http://" + address_ + "/"},
                        "", {}, 120);
  ASSERT_EQ(browser.exit_code, 0) << browser.err;
  std::string dom = browser.out;
  size_t departed = dom.find("<tbody id=\"departed\">");
  ASSERT_NE(departed, std::string::npos) << dom;
  std::string rows = dom.substr(0, departed);
  EXPECT_EQ(testing_util::Count(rows, "<tr class=\"worker\">"), 2u) << dom;
  EXPECT_NE(rows.find("<td>page-worker-1</td>"), std::string::npos) << dom;
  EXPECT_NE(rows.find("<td>page-worker-2</td>"), std::string::npos) << dom;
  EXPECT_NE(dom.find("<span>done 100</span>"), std::string::npos) << dom;
  EXPECT_NE(dom.find("<span id=\"state\">running</span>"), std::string::npos) << dom;

  in_->Close();
  ASSERT_EQ(fanmap_->Wait(), 0) << ReadFile(dir_.File("err"));
  EXPECT_EQ(w1->Wait(testing_util::kDeadlineS), 0);
  EXPECT_EQ(w2->Wait(testing_util::kDeadlineS), 0);
  ExpectNoProcessLeft();
}

TEST_F(StatusTest, FiftyRemoteWorkersAreListedAndTheirTasksAddUpToTheRecords) {
  constexpr size_t kWorkers = 50;
  constexpr int kItems = 5000;
  ASSERT_NO_FATAL_FAILURE(StartRun("0"));
  std::vector<std::unique_ptr<Process>> workers;
  for (size_t i = 0; i < kWorkers; ++i) {
    workers.push_back(Worker("w" + std::to_string(i)));
  }
  nlohmann::json status;
  WaitUntil([&] {
    status = ReadStatus(address_);
    return status.is_object() && status["workers"].size() == kWorkers;
  });
  ASSERT_EQ(status["workers"].size(), kWorkers) << status.dump();
  // Small writes: the FIFO holds 64 KiB, and the run reads as it goes.
  for (int from = 1; from <= kItems; from += 1000) in_->Write(Seq(from, from + 999));

  status = WaitForDone(address_, dir_.File("out"), kItems);
  ASSERT_EQ(status["items"]["done"], kItems) << status.dump();
  ASSERT_EQ(status["workers"].size(), kWorkers) << status.dump();
  EXPECT_EQ(status["departed_count"], 0);
  EXPECT_EQ(SumTasksDone(status), static_cast<uint64_t>(kItems)) << status.dump();
  std::set<std::string> names;
  for (const auto& w : status["workers"]) names.insert(w["name"].get<std::string>());
  EXPECT_EQ(names.size(), kWorkers);
  EXPECT_EQ(Lines(ReadFile(dir_.File("out"))).size(), static_cast<size_t>(kItems));

  std::map<std::string, double> metrics = Metrics(address_);
  EXPECT_EQ(metrics["fanmap_workers"], kWorkers);
  EXPECT_EQ(metrics["fanmap_items_done_total"], kItems);
  double per_worker = 0;
  for (const auto& [key, value] : metrics) {
    if (key.rfind("fanmap_worker_tasks_done_total{", 0) == 0) per_worker += value;
  }
  EXPECT_EQ(per_worker, kItems);

  in_->Close();
  ASSERT_EQ(fanmap_->Wait(), 0) << ReadFile(dir_.File("err"));
  ParseRecords(ReadFile(dir_.File("out")), kItems);
  for (auto& w : workers) EXPECT_EQ(w->Wait(testing_util::kDeadlineS), 0);
  ExpectNoProcessLeft();
}

TEST_F(StatusTest, AStatusPortInUseIsAUsageErrorBeforeTheRunStarts) {
  TempDir dir;
  InputFifo in(dir.File("in"));
  Process first(
      {FanmapPath(), "-j", "1", "--status", "127.0.0.1:0", "--builtin", "echo", "-i", in.path()},
      "", dir.File("out"), dir.File("err"), Env());
  std::string address = StatusAddress(dir.File("err"));
  ASSERT_FALSE(address.empty()) << ReadFile(dir.File("err"));

  // Before the run starts: the output file given is left as it was.
  std::string kept = dir.File("kept.jsonl");
  testing_util::WriteFile(kept, "{\"index\":0,\"ok\":true,\"result\":\"keep me\"}\n");
  testing_util::RunResult second =
      Fanmap({"-j", "2", "--status", address, "--builtin", "echo", "-o", kept}, Seq(1, 10));
  EXPECT_EQ(second.exit_code, 2) << second.err;
  EXPECT_EQ(ReadFile(kept), "{\"index\":0,\"ok\":true,\"result\":\"keep me\"}\n");
  EXPECT_NE(second.err.find("--status " + address + ": cannot listen there"), std::string::npos)
      << second.err;
  EXPECT_EQ(second.out, "") << "no item ran";
  // The first run's server still answers, alone.
  EXPECT_TRUE(ReadStatus(address).is_object());

  testing_util::RunResult bad = Fanmap({"--status", "localhost", "--builtin", "echo"}, "1\n");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--status 'localhost': expected HOST:PORT"), std::string::npos) << bad.err;

  in.Close();
  EXPECT_EQ(first.Wait(), 0) << ReadFile(dir.File("err"));
  ExpectNoProcessLeft();
}

}  // namespace
}  // namespace fanmap
