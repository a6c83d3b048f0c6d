#include "coordinator/status_server.h"

#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include "coordinator/guarded_http_server.h"
#include "coordinator/status_page.h"

namespace fanmap {
namespace {

HttpAnswer Answer(std::string body, const char* type) {
  HttpAnswer answer;
  answer.content_type = type;
  answer.body = std::move(body);
  answer.headers = {{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}};
  return answer;
}

}  // namespace

Status ParseStatusAddress(const std::string& text, std::string* host, int* port) {
  auto bad = [&text](const std::string& why) {
    return Status::Error("--status '" + text + "': " + why);
  };
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return bad("expected HOST:PORT, e.g. 127.0.0.1:8080");
  std::string name = text.substr(0, colon);
  std::string digits = text.substr(colon + 1);
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  } else if (name.find(':') != std::string::npos) {
    return bad("an IPv6 address goes in brackets, e.g. [::1]:8080");
  }
  if (name.empty()) return bad("no host (e.g. 127.0.0.1:8080; 0.0.0.0 for every interface)");
  if (digits.empty() || digits.size() > 5 ||
      digits.find_first_not_of("0123456789") != std::string::npos ||
      std::atoi(digits.c_str()) > 65535) {
    return bad("the port must be a number from 0 to 65535 (0: any free port)");
  }
  *host = name;
  *port = std::atoi(digits.c_str());
  return Status::Ok();
}

struct StatusServer::Shared {
  std::mutex mu;
  std::shared_ptr<const FarmSnapshot> latest;  // guarded by mu
  bool listen_ended = false;                   // guarded by mu
  std::condition_variable ended;

  std::shared_ptr<const FarmSnapshot> Latest() {
    std::lock_guard<std::mutex> lock(mu);
    return latest;
  }
};

StatusServer::StatusServer()
    : http_(std::make_unique<GuardedHttpServer>()), shared_(std::make_shared<Shared>()) {
  shared_->latest = std::make_shared<const FarmSnapshot>();
}

StatusServer::~StatusServer() {
  if (!thread_.joinable()) return;
  http_->Stop();
  std::unique_lock<std::mutex> lock(shared_->mu);
  bool ended = shared_->ended.wait_for(lock, std::chrono::milliseconds(kStopGraceMs),
                                       [this] { return shared_->listen_ended; });
  lock.unlock();
  if (ended) {
    thread_.join();
    return;
  }
  thread_.detach();
  (void)http_.release();
}

std::shared_ptr<const FarmSnapshot> StatusServer::Latest() const { return shared_->Latest(); }

void StatusServer::Publish(FarmSnapshot snapshot, int64_t now_us) {
  auto next = std::make_shared<const FarmSnapshot>(std::move(snapshot));
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->latest.swap(next);
  }
  // The old snapshot is freed here, outside the lock (unless a request still
  // holds it: then by that request).
  next_publish_us_ = now_us + kPublishEveryUs;
}

Status StatusServer::Start(const std::string& address, std::unique_ptr<StatusServer>* out) {
  std::string host;
  int port = 0;
  Status parsed = ParseStatusAddress(address, &host, &port);
  if (!parsed.ok()) return parsed;

  std::unique_ptr<StatusServer> server(new StatusServer());
  GuardedHttpServer& http = *server->http_;
  std::shared_ptr<Shared> shared = server->shared_;
  http.Get("/status",
           [shared] { return Answer(RenderStatusJson(*shared->Latest()), "application/json"); });
  http.Get("/metrics", [shared] {
    return Answer(RenderPrometheus(*shared->Latest()), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/", [] {
    HttpAnswer answer = Answer(kStatusPageHtml, "text/html; charset=utf-8");
    answer.headers.emplace_back("Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; "
                                "style-src 'unsafe-inline'; connect-src 'self'");
    return answer;
  });

  int bound = 0;
  Status listening = http.Bind(host, port, &bound);
  if (!listening.ok()) {
    return Status::Error("--status " + address + ": cannot listen there (" + listening.message() +
                         ")");
  }
  server->address_ =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(bound);

  // The thread inherits the signal mask: block every signal in it, so that
  // SIGINT, SIGCHLD, ... reach the coordinator's signalfd, never a handler
  // or a default action on the server's thread.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  GuardedHttpServer* http_ptr = &http;
  server->thread_ = std::thread([http_ptr, shared] {
    http_ptr->Run();
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->listen_ended = true;
    shared->ended.notify_all();
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  *out = std::move(server);
  return Status::Ok();
}

}  // namespace fanmap
