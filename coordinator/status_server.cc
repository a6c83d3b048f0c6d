#include "coordinator/status_server.h"

#include <errno.h>
#include <httplib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include "coordinator/bounded_task_queue.h"
#include "coordinator/guarded_http_server.h"
#include "coordinator/status_page.h"

namespace fanmap {
namespace {

// Connections accepted and waiting for a thread; more wait in the kernel.
// Each is served in bounded time with a bounded buffer (GuardedHttpServer),
// so a slow or hostile client holds a thread a few seconds at most.
constexpr size_t kMaxQueuedConnections = 16;

void Answer(httplib::Response& response, std::string body, const char* type) {
  response.set_header("Cache-Control", "no-store");
  response.set_header("X-Content-Type-Options", "nosniff");
  response.set_content(std::move(body), type);
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
  http_->stop();
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
  httplib::Server& http = *server->http_;
  // httplib's default sets SO_REUSEPORT, which lets a second process bind
  // the same port and take a share of its requests: a port in use must be
  // an error instead.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.new_task_queue = [] { return new BoundedTaskQueue(kThreads, kMaxQueuedConnections); };
  // One request per connection, its head read with a size cap and a
  // deadline (GuardedHttpServer); httplib's own read and write timeouts
  // are not used.
  http.set_payload_max_length(0);  // nothing to upload

  std::shared_ptr<Shared> shared = server->shared_;
  http.Get("/status", [shared](const httplib::Request&, httplib::Response& response) {
    Answer(response, RenderStatusJson(*shared->Latest()), "application/json");
  });
  http.Get("/metrics", [shared](const httplib::Request&, httplib::Response& response) {
    Answer(response, RenderPrometheus(*shared->Latest()),
           "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& response) {
    response.set_header("Content-Security-Policy",
                        "default-src 'none'; script-src 'unsafe-inline'; "
                        "style-src 'unsafe-inline'; connect-src 'self'");
    Answer(response, kStatusPageHtml, "text/html; charset=utf-8");
  });

  errno = 0;
  int bound = port == 0 ? http.bind_to_any_port(host) : http.bind_to_port(host, port) ? port : -1;
  if (bound < 0) {
    int error = errno;
    return Status::Error("--status " + address + ": cannot listen there" +
                         (error != 0 ? std::string(" (") + strerror(error) + ")" : std::string()));
  }
  server->address_ =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(bound);

  // The threads inherit the signal mask: block every signal in them, so that
  // SIGINT, SIGCHLD, ... reach the coordinator's signalfd, never a handler
  // or a default action on the server's threads.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  httplib::Server* http_ptr = &http;
  server->thread_ = std::thread([http_ptr, shared] {
    http_ptr->listen_after_bind();
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->listen_ended = true;
    shared->ended.notify_all();
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  // stop() does nothing until the server runs: wait for it to, so that the
  // destructor can never miss it (a few microseconds).
  while (!http.is_running()) {
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      if (shared->listen_ended)
        return Status::Error("--status " + address + ": cannot serve there");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  *out = std::move(server);
  return Status::Ok();
}

}  // namespace fanmap
