#include "worker/payload_http.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "worker/batch_format.h"
#include "worker/curl_socket_set.h"
#include "worker/http_request.h"
#include "worker/http_transport.h"
#include "worker/rate_limit_headers.h"

namespace fanmap {
namespace {

// curl's default is 300 s, long enough to hold a slot through a dead host.
constexpr long kConnectTimeoutMs = 10000;
// A request body kept for reuse beyond this size is freed instead.
constexpr size_t kKeepBufferBytes = 1 << 20;

Status GlobalInit() {
  // The worker is single-threaded, but ValidateJob may run anywhere: a
  // function-local static makes the one call thread-safe anyway.
  static const CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (code != CURLE_OK) {
    return Status::Error(std::string("cannot initialise libcurl: ") + curl_easy_strerror(code));
  }
  return Status::Ok();
}

// The rate-limit headers of the last response of `easy` (curl's header
// API: the final response's headers only, names case-insensitive).
void ReadRateLimitHeaders(CURL* easy, HttpResponse* response) {
  HeaderLookup lookup = [easy](const char* name) -> std::optional<std::string> {
    curl_header* header = nullptr;
    if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &header) != CURLHE_OK ||
        header == nullptr || header->value == nullptr) {
      return std::nullopt;
    }
    return std::string(header->value);
  };
  response->limits = ReadServerLimits(lookup);
  response->retry_after_ms =
      ReadRetryAfterMs(lookup, response->retry_after_s, kMaxRetryAfterS * 1000);
}

class HttpPayload : public Payload {
 public:
  HttpPayload(HttpOptions options, ResultSink* sink) : options_(std::move(options)), sink_(sink) {}
  ~HttpPayload() override { Shutdown(); }
  HttpPayload(const HttpPayload&) = delete;
  HttpPayload& operator=(const HttpPayload&) = delete;

  Status Init();

  void Start(Task task) override;
  void AddPollItems(std::vector<zmq_pollitem_t>* items, long* timeout_ms) override;
  void Advance(const zmq_pollitem_t* items, size_t count) override;
  void Cancel(uint64_t index) override;
  size_t running() const override { return running_; }
  void Shutdown() override;

 private:
  // One easy handle and the buffers of the request it carries. Addresses are
  // stable (curl holds pointers to `error` and to the Transfer itself).
  struct Transfer {
    CURL* easy = nullptr;
    bool active = false;  // started: counted in running_
    bool added = false;   // ... and added to the multi handle (else in waiting_)
    Task task;            // index and attempt; the item moves into `request`
    std::string request;
    Result::Extra record_fields;  // taken from the item (custom_id, metadata)
    std::string response;
    bool too_large = false;
    char error[CURL_ERROR_SIZE] = {};
  };

  static size_t OnWrite(char* data, size_t size, size_t count, void* user);
  static int OnSocket(CURL* easy, curl_socket_t fd, int what, void* user, void* socket_user);
  // curl closes a socket (CurlSocketSet parks sockets between transfers).
  static int OnCloseSocket(void* user, curl_socket_t fd);
  static int OnTimer(CURLM* multi, long timeout_ms, void* user);

  // openai-batch: the line's body, URL and custom_id (batch_format.h).
  Status PrepareBatchLine(Transfer* t, const std::string& line);
  Transfer* Acquire();
  Status Configure(Transfer* t);
  void Release(Transfer* t);
  void Finish(Transfer* t, CURLcode code);
  void CollectDone();
  // Hands a started transfer to curl; false (and a result) if curl refuses it.
  bool Add(Transfer* t);

  const HttpOptions options_;
  ResultSink* const sink_;
  CURLM* multi_ = nullptr;
  curl_slist* headers_ = nullptr;
  HttpTransport transport_;                           // TLS, HTTP/2 and the connection cap
  std::vector<std::unique_ptr<Transfer>> transfers_;  // owns every easy handle
  std::vector<Transfer*> idle_;
  size_t running_ = 0;
  // Started, not yet given to curl (kHttpAddsPerTurn, payload_http.h): at
  // most that many are given to curl between two runs of its timers, which
  // open their connections.
  std::deque<Transfer*> waiting_;
  size_t unconnected_adds_ = 0;  // given to curl since it last ran its timers
  // The sockets curl wants watched, polled as one descriptor.
  CurlSocketSet sockets_;
  int64_t timer_us_ = -1;  // when curl wants CURL_SOCKET_TIMEOUT; -1 = never
};

Status HttpPayload::Init() {
  Status socket_set = sockets_.Init();
  if (!socket_set.ok()) return socket_set;
  multi_ = curl_multi_init();
  if (multi_ == nullptr) return Status::Error("cannot create a curl multi handle");
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &HttpPayload::OnSocket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &HttpPayload::OnTimer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  // Over HTTP/1.1 connections stay unlimited: the worker loop already keeps
  // at most `slots` requests in flight, and a lower cap would queue requests
  // inside curl, where the wait counts towards CURLOPT_TIMEOUT_MS. Over
  // HTTP/2 a few connections carry them all (http_transport.h).
  Status transport = transport_.Init(multi_, options_.transport, options_.https);
  if (!transport.ok()) return transport;
  for (const std::string& header : options_.headers) {
    curl_slist* grown = curl_slist_append(headers_, header.c_str());
    if (grown == nullptr) return Status::Error("out of memory building request headers");
    headers_ = grown;
  }
  return Status::Ok();
}

size_t HttpPayload::OnWrite(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * count;
  if (t->response.size() + bytes > kMaxHttpBodyBytes) {
    t->too_large = true;
    return 0;  // fails the transfer with CURLE_WRITE_ERROR
  }
  t->response.append(data, bytes);
  return bytes;
}

int HttpPayload::OnSocket(CURL* easy, curl_socket_t fd, int what, void* user, void* socket_user) {
  static_cast<HttpPayload*>(user)->sockets_.Watch(fd, what);
  return 0;
}

int HttpPayload::OnCloseSocket(void* user, curl_socket_t fd) {
  static_cast<HttpPayload*>(user)->sockets_.Closed(fd);
  return close(fd);
}

int HttpPayload::OnTimer(CURLM* multi, long timeout_ms, void* user) {
  auto* self = static_cast<HttpPayload*>(user);
  self->timer_us_ = timeout_ms < 0 ? -1 : NowMicros() + static_cast<int64_t>(timeout_ms) * 1000;
  return 0;
}

Status HttpPayload::Configure(Transfer* t) {
  CURL* e = t->easy;
  CURLcode rc = CURLE_OK;
  auto set = [&rc](CURLcode code) {
    if (rc == CURLE_OK) rc = code;
  };
  set(curl_easy_setopt(e, CURLOPT_URL, options_.url.c_str()));
  set(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_));
  set(curl_easy_setopt(e, CURLOPT_PRIVATE, t));
  set(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpPayload::OnWrite));
  set(curl_easy_setopt(e, CURLOPT_WRITEDATA, t));
  set(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error));
  set(curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &HttpPayload::OnCloseSocket));
  set(curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, this));
  // Signals would interrupt the loop; timeouts are driven by the multi timer.
  set(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs));
  if (options_.timeout_ms > 0) {
    set(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms)));
  }
  set(curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L));
  set(transport_.ConfigureEasy(e));
  if (options_.method == "GET") {
    set(curl_easy_setopt(e, CURLOPT_HTTPGET, 1L));
  } else if (options_.method == "HEAD") {
    set(curl_easy_setopt(e, CURLOPT_NOBODY, 1L));
  } else if (options_.method != "POST") {
    set(curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, options_.method.c_str()));
  }
  if (rc != CURLE_OK) return Status::Error(std::string("curl: ") + curl_easy_strerror(rc));
  return Status::Ok();
}

HttpPayload::Transfer* HttpPayload::Acquire() {
  if (!idle_.empty()) {
    Transfer* t = idle_.back();
    idle_.pop_back();
    return t;
  }
  auto t = std::make_unique<Transfer>();
  t->easy = curl_easy_init();
  if (t->easy == nullptr) return nullptr;
  if (!Configure(t.get()).ok()) {
    curl_easy_cleanup(t->easy);
    return nullptr;
  }
  transfers_.push_back(std::move(t));
  return transfers_.back().get();
}

void HttpPayload::Start(Task task) {
  if (multi_ == nullptr) {
    sink_->push_back(RetryableError(task, "the HTTP payload is shut down"));
    return;
  }
  Transfer* t = Acquire();
  if (t == nullptr) {
    sink_->push_back(RetryableError(task, "cannot create a curl handle"));
    return;
  }
  t->record_fields.clear();
  Status built = options_.batch ? PrepareBatchLine(t, task.item)
                                : BuildRequestBody(options_, std::move(task.item), &t->request,
                                                   &t->record_fields);
  task.item = std::string();
  if (!built.ok()) {
    idle_.push_back(t);
    Result error = ErrorResult(task, built.message());
    error.extra = std::move(t->record_fields);
    sink_->push_back(std::move(error));
    return;
  }
  t->task = std::move(task);
  t->response.clear();
  t->too_large = false;
  t->error[0] = '\0';
  if (options_.SendsBody()) {
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(t->request.size()));
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->request.data());
  }
  t->active = true;
  ++running_;
  if (unconnected_adds_ < kHttpAddsPerTurn) {
    Add(t);
  } else {
    waiting_.push_back(t);
  }
}

bool HttpPayload::Add(Transfer* t) {
  CURLMcode rc = curl_multi_add_handle(multi_, t->easy);
  if (rc != CURLM_OK) {
    Task task = t->task;
    Release(t);
    sink_->push_back(RetryableError(task, std::string("curl: ") + curl_multi_strerror(rc)));
    return false;
  }
  // Counted once curl has it: a refused transfer sets no timer of curl's,
  // so counting it would hold the rest back with nothing to wake the loop.
  ++unconnected_adds_;
  t->added = true;
  return true;
}

Status HttpPayload::PrepareBatchLine(Transfer* t, const std::string& line) {
  BatchRequest request;
  Status status = ParseBatchLine(BatchBaseUrl(options_.url), line, &request);
  if (!request.custom_id.empty()) t->record_fields["custom_id"] = request.custom_id;
  if (!status.ok()) return status;
  t->request = std::move(request.body);
  CURLcode rc = curl_easy_setopt(t->easy, CURLOPT_URL, request.url.c_str());
  if (rc != CURLE_OK) return Status::Error(std::string("curl: ") + curl_easy_strerror(rc));
  return Status::Ok();
}

void HttpPayload::AddPollItems(std::vector<zmq_pollitem_t>* items, long* timeout_ms) {
  if (sockets_.size() > 0) items->push_back(zmq_pollitem_t{nullptr, sockets_.fd(), ZMQ_POLLIN, 0});
  // More to give curl now: look, but do not wait. (Once the turn's share is
  // given, curl's timer, due at once, wakes the loop.)
  if (!waiting_.empty() && unconnected_adds_ < kHttpAddsPerTurn) *timeout_ms = 0;
  if (timer_us_ >= 0) {
    // Rounded up: waking before the timer is due would spin until it is.
    int64_t wait_us = std::max<int64_t>(0, timer_us_ - NowMicros());
    long wait_ms = static_cast<long>((wait_us + 999) / 1000);
    if (*timeout_ms < 0 || wait_ms < *timeout_ms) *timeout_ms = wait_ms;
  }
}

void HttpPayload::Advance(const zmq_pollitem_t* items, size_t count) {
  if (multi_ == nullptr) return;
  int still_running = 0;
  // The socket callback changes the set under us: an event for a socket curl
  // has dropped meanwhile is ignored by curl.
  if (count > 0 && items[0].revents != 0) {
    bool acted = false;
    sockets_.ForEachReady([this, &still_running, &acted](curl_socket_t fd, int mask) {
      curl_multi_socket_action(multi_, fd, mask, &still_running);
      acted = true;
    });
    // Each action runs curl's due timers as well (an event on a parked
    // socket runs none).
    if (acted) unconnected_adds_ = 0;
  }
  // After the sockets: requests on connections just opened go out first.
  while (!waiting_.empty() && unconnected_adds_ < kHttpAddsPerTurn) {
    Transfer* t = waiting_.front();
    waiting_.pop_front();
    Add(t);
  }
  if (timer_us_ >= 0 && NowMicros() >= timer_us_) {
    timer_us_ = -1;  // the callback sets the next one
    curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &still_running);
    unconnected_adds_ = 0;
  }
  CollectDone();
}

void HttpPayload::CollectDone() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    // `msg` dies with the handle's removal: copy what is needed first.
    CURLcode code = msg->data.result;
    char* user = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &user);
    Finish(reinterpret_cast<Transfer*>(user), code);
  }
}

void HttpPayload::Finish(Transfer* t, CURLcode code) {
  HttpResponse response;
  response.curl_code = code;
  response.curl_error = t->error;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &response.status);
  curl_off_t retry_after = 0;
  if (curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK) {
    response.retry_after_s = static_cast<int64_t>(retry_after);
  }
  response.body = std::move(t->response);
  response.body_too_large = t->too_large;
  curl_off_t total_us = 0;
  if (curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us) == CURLE_OK) {
    response.latency_ms = static_cast<int64_t>(total_us / 1000);
  }
  transport_.OnDone(t->easy);
  // The Batch record holds the reply itself (batch_format.h).
  std::string batch_body, request_id;
  // A reply that did not fully come (refused for its size, cut off, timed
  // out halfway) is no response of the server's: no status.
  long batch_status = response.curl_code == CURLE_OK ? response.status : 0;
  if (options_.batch) {
    batch_body = response.body;
    DropByteOrderMark(&batch_body);
    RedactJsonText(options_.api_key, &batch_body);
    curl_header* header = nullptr;
    if (curl_easy_header(t->easy, "x-request-id", 0, CURLH_HEADER, -1, &header) == CURLHE_OK) {
      request_id = header->value;
      Redact(options_.api_key, &request_id);
    }
  }
  ReadRateLimitHeaders(t->easy, &response);
  Task task = t->task;
  Result::Extra fields = std::move(t->record_fields);
  Release(t);
  Result result = ClassifyResponse(options_, task, std::move(response));
  result.extra.merge(fields);
  if (options_.batch) {
    auto custom_id = result.extra.find("custom_id");
    MakeBatchResult(custom_id == result.extra.end() ? "" : std::get<std::string>(custom_id->second),
                    batch_status, request_id, batch_body, &result);
  }
  sink_->push_back(std::move(result));
}

void HttpPayload::Release(Transfer* t) {
  if (t->added) {
    // Ends the transfer; an unfinished one closes its connection.
    curl_multi_remove_handle(multi_, t->easy);
    t->added = false;
  } else if (auto it = std::find(waiting_.begin(), waiting_.end(), t); it != waiting_.end()) {
    waiting_.erase(it);
  }
  if (t->active) {
    t->active = false;
    --running_;
  }
  t->request.clear();
  if (t->request.capacity() > kKeepBufferBytes) t->request.shrink_to_fit();
  t->response = std::string();
  idle_.push_back(t);
}

void HttpPayload::Cancel(uint64_t index) {
  for (const auto& t : transfers_) {
    if (t->active && t->task.index == index) {
      Release(t.get());
      return;
    }
  }
}

void HttpPayload::Shutdown() {
  if (multi_ == nullptr) return;
  for (const auto& t : transfers_) {
    if (t->added) curl_multi_remove_handle(multi_, t->easy);
    curl_easy_cleanup(t->easy);
  }
  transfers_.clear();
  idle_.clear();
  waiting_.clear();
  running_ = 0;
  // Closes the pooled connections; curl may still call OnSocket meanwhile.
  curl_multi_cleanup(multi_);
  multi_ = nullptr;
  curl_slist_free_all(headers_);
  headers_ = nullptr;
  transport_.Reset();  // after every easy handle that used its share
  sockets_.Close();
  timer_us_ = -1;
}

}  // namespace

Status MakeHttpPayload(const JobSpec& job, ResultSink* sink, std::unique_ptr<Payload>* out) {
  HttpOptions options;
  Status status = ParseHttpOptions(job, &options);
  if (status.ok()) status = GlobalInit();
  if (!status.ok()) return status;
  auto payload = std::make_unique<HttpPayload>(std::move(options), sink);
  status = payload->Init();
  if (!status.ok()) return status;
  *out = std::move(payload);
  return Status::Ok();
}

}  // namespace fanmap
