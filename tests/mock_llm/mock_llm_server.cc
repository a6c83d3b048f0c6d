// mock-llm: an OpenAI-compatible HTTP/1.1 server for tests, benchmarks and the demo.
//
// Endpoints:
//   POST /v1/chat/completions  answers "echo: <last user message>" after the latency;
//                              the only endpoint where faults are injected
//   GET  /v1/models            one model, "mock-model"
//   POST /echo                 the request body, with the request's Content-Type
//   GET  /stats                JSON counters (see Stats::ToJson); not counted itself
// Every answer carries an x-request-id header ("req_N"), as OpenAI's do.
//   POST /admin/outage?on=1|0|auto  starts or ends an outage (503 for every chat
//                              request), or hands it back to --outage-at/--outage-for
//
// Chat completions may be rate limited (--limit-rps/--limit-rpm/--limit-tps/
// --limit-tpm: 429 at once, with OpenAI's x-ratelimit-* headers unless
// --no-limit-headers) and see an outage (503 at once, no Retry-After); see
// mock_limits.h.
//
// One io_context, run by --threads threads; every connection is a Session whose
// handlers run on its own strand, so a session never needs a lock. The state that
// sessions share (Stats, FaultDice, RetryAfterTracker) is thread-safe.
//
// Prints exactly one line to stdout once it accepts connections:
//   listening on http://HOST:PORT
// and exits 0 on SIGINT/SIGTERM, after a summary of the counters on stderr.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/exit_status.h"
#include "tests/mock_llm/mock_limits.h"

namespace fanmap {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr size_t kMaxBodyBytes = 64 << 20;
constexpr uint32_t kMaxHeaderBytes = 64 << 10;
// Prompts remembered for the Retry-After check; the table is cleared when full.
constexpr size_t kMaxTrackedPrompts = 1000000;
// A slow response's body is written in this many pieces (fewer if it is shorter).
constexpr size_t kSlowPieces = 20;
constexpr char kModelId[] = "mock-model";

struct MockLlmConfig {
  std::string host = "127.0.0.1";
  int port = 0;
  int threads = 1;
  int latency_ms = 100;
  int jitter_ms = 0;
  std::string api_key;
  uint64_t seed = 1;
  double p429 = 0;
  double p500 = 0;
  double pdrop = 0;
  double pslow = 0;
  int retry_after_s = 1;
  int slow_ms = 2000;
  size_t header_bytes = 0;  // an x-padding header this long (0: none), but not on /stats
  MockLimitConfig limits;
  double outage_at_s = 0;
  double outage_for_s = 0;
};

// ---------------------------------------------------------------------------
// Chat completion logic (no I/O).

// Characters are UTF-8 code points: token estimates and max_tokens truncation
// must never split a multi-byte sequence.
size_t Utf8Length(const std::string& text) {
  size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

std::string Utf8Prefix(const std::string& text, size_t chars) {
  size_t seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      if (seen == chars) return text.substr(0, i);
      ++seen;
    }
  }
  return text;
}

int64_t EstimateTokens(size_t chars) { return std::max<int64_t>(1, (chars + 3) / 4); }

// A message's "content" is a string, or (OpenAI's multi-part form) an array of
// parts whose "text" fields are joined.
std::string ContentText(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string text;
  if (content.is_array()) {
    for (const Json& part : content) {
      if (part.is_object() && part.contains("text") && part["text"].is_string()) {
        text += part["text"].get<std::string>();
      }
    }
  }
  return text;
}

Json ErrorBody(const std::string& message, const std::string& type, const Json& code = nullptr) {
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

struct ChatRequest {
  std::string model;
  std::string last_user_message;
  size_t prompt_chars = 0;
  std::optional<int64_t> max_tokens;
};

bool ParseChatRequestOrThrow(const std::string& body, ChatRequest* request, std::string* error) {
  Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    *error = "We could not parse the JSON body of your request.";
    return false;
  }
  if (!json.is_object()) {
    *error = "The request body must be a JSON object.";
    return false;
  }
  if (!json.contains("model") || !json["model"].is_string()) {
    *error = "you must provide a model parameter";
    return false;
  }
  if (!json.contains("messages") || !json["messages"].is_array()) {
    *error = "'messages' is a required property and must be an array";
    return false;
  }
  if (json.contains("stream") && json["stream"].is_boolean() && json["stream"].get<bool>()) {
    *error = "stream=true is not supported by mock-llm";
    return false;
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (!json.contains(key) || json[key].is_null()) continue;
    if (!json[key].is_number_integer() || json[key].get<int64_t>() < 1) {
      *error = std::string("'") + key + "' must be a positive integer";
      return false;
    }
    if (!request->max_tokens) request->max_tokens = json[key].get<int64_t>();
  }
  request->model = json["model"].get<std::string>();
  for (const Json& message : json["messages"]) {
    if (!message.is_object()) {
      *error = "each message must be an object";
      return false;
    }
    std::string text = message.contains("content") ? ContentText(message["content"]) : "";
    request->prompt_chars += Utf8Length(text);
    const Json* role = message.contains("role") ? &message["role"] : nullptr;
    if (role != nullptr && role->is_string() && role->get<std::string>() == "user") {
      request->last_user_message = std::move(text);
    }
  }
  return true;
}

// Parses a chat completion request body; on failure returns false with a
// message for a 400 answer in `*error`.
bool ParseChatRequest(const std::string& body, ChatRequest* request, std::string* error) {
  try {
    return ParseChatRequestOrThrow(body, request, error);
  } catch (const Json::exception& e) {
    *error = e.what();
    return false;
  }
}

Json ChatCompletion(const ChatRequest& request, int64_t id, int64_t created) {
  std::string content = "echo: " + request.last_user_message;
  std::string finish_reason = "stop";
  if (request.max_tokens && Utf8Length(content) > static_cast<size_t>(*request.max_tokens) * 4) {
    content = Utf8Prefix(content, static_cast<size_t>(*request.max_tokens) * 4);
    finish_reason = "length";
  }
  int64_t prompt_tokens = EstimateTokens(request.prompt_chars);
  int64_t completion_tokens = EstimateTokens(Utf8Length(content));
  return {{"id", "chatcmpl-" + std::to_string(id)},
          {"object", "chat.completion"},
          {"created", created},
          {"model", request.model},
          {"choices",
           {{{"index", 0},
             {"message", {{"role", "assistant"}, {"content", content}}},
             {"finish_reason", finish_reason}}}},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}}}};
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// ---------------------------------------------------------------------------
// State shared by all sessions. Each class is thread-safe.

// Counters for GET /stats. Requests to /stats itself are not counted.
class Stats {
 public:
  void ConnectionOpened() {
    ++connections_total_;
    RaisePeak(&connections_peak_, ++connections_current_);
  }
  void ConnectionClosed() { --connections_current_; }
  // A request has been read completely; it is in flight until RequestFinished().
  void RequestStarted() {
    ++requests_total_;
    RaisePeak(&in_flight_peak_, ++in_flight_current_);
  }
  void RequestFinished() { --in_flight_current_; }
  void ChatRequest() { ++chat_requests_; }
  void Responded(int status) {
    if (status >= 0 && status < static_cast<int>(by_status_.size())) ++by_status_[status];
  }
  void Dropped() { ++dropped_; }
  void Slow() { ++slow_; }
  void EarlyRetry() { ++early_retries_; }
  void RateLimited() { ++rate_limited_; }
  void OutageRefused() { ++outage_refused_; }

  Json ToJson() const {
    Json by_status = Json::object();
    for (size_t status = 0; status < by_status_.size(); ++status) {
      if (int64_t n = by_status_[status].load()) by_status[std::to_string(status)] = n;
    }
    return {{"requests_total", requests_total_.load()},
            {"chat_requests", chat_requests_.load()},
            {"by_status", by_status},
            {"dropped", dropped_.load()},
            {"slow", slow_.load()},
            {"early_retries", early_retries_.load()},
            {"rate_limited", rate_limited_.load()},
            {"outage_refused", outage_refused_.load()},
            {"connections_current", connections_current_.load()},
            {"connections_peak", connections_peak_.load()},
            {"connections_total", connections_total_.load()},
            {"in_flight_current", in_flight_current_.load()},
            {"in_flight_peak", in_flight_peak_.load()}};
  }

 private:
  static void RaisePeak(std::atomic<int64_t>* peak, int64_t value) {
    int64_t seen = peak->load();
    while (seen < value && !peak->compare_exchange_weak(seen, value)) {
    }
  }

  std::atomic<int64_t> requests_total_{0};
  std::atomic<int64_t> chat_requests_{0};
  std::array<std::atomic<int64_t>, 600> by_status_{};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> slow_{0};
  std::atomic<int64_t> early_retries_{0};
  std::atomic<int64_t> rate_limited_{0};
  std::atomic<int64_t> outage_refused_{0};
  std::atomic<int64_t> connections_current_{0};
  std::atomic<int64_t> connections_peak_{0};
  std::atomic<int64_t> connections_total_{0};
  std::atomic<int64_t> in_flight_current_{0};
  std::atomic<int64_t> in_flight_peak_{0};
};

enum class Fault { kNone, kRateLimit, kServerError, kDrop, kSlow };

// The seeded PRNG behind faults and jitter. One draw per chat request decides
// its fault, so each configured probability holds as long as they sum to <= 1.
class FaultDice {
 public:
  explicit FaultDice(const MockLlmConfig& config) : config_(config), rng_(config.seed) {}

  Fault Roll() {
    double r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      r = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    }
    double edge = config_.p429;
    if (r < edge) return Fault::kRateLimit;
    if (r < (edge += config_.p500)) return Fault::kServerError;
    if (r < (edge += config_.pdrop)) return Fault::kDrop;
    if (r < (edge += config_.pslow)) return Fault::kSlow;
    return Fault::kNone;
  }

  int LatencyMs() {
    if (config_.jitter_ms <= 0) return config_.latency_ms;
    std::lock_guard<std::mutex> lock(mu_);
    return config_.latency_ms + std::uniform_int_distribution<int>(0, config_.jitter_ms)(rng_);
  }

 private:
  const MockLlmConfig& config_;
  std::mutex mu_;
  std::mt19937_64 rng_;  // guarded by mu_
};

// Remembers, per prompt, when a retry becomes allowed after a 429 with
// Retry-After, and tells whether a request for that prompt came back sooner.
class RetryAfterTracker {
 public:
  // Returns true if `prompt` was rate limited and its Retry-After has not yet
  // elapsed at `now`. A compliant arrival forgets the prompt.
  bool IsEarly(const std::string& prompt, Clock::time_point now) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = not_before_.find(prompt);
    if (it == not_before_.end()) return false;
    if (now < it->second) return true;
    not_before_.erase(it);
    return false;
  }

  void RateLimited(const std::string& prompt, Clock::time_point not_before) {
    std::lock_guard<std::mutex> lock(mu_);
    // Tests use far fewer prompts; clearing keeps memory bounded in long benchmarks
    // at the cost of missing a few early retries.
    if (not_before_.size() >= kMaxTrackedPrompts) not_before_.clear();
    not_before_[prompt] = not_before;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, Clock::time_point> not_before_;  // guarded by mu_
};

struct SharedState {
  explicit SharedState(const MockLlmConfig& c)
      : config(c),
        dice(config),
        rate_limit(config.limits),
        outage(Clock::now(), config.outage_at_s, config.outage_for_s) {}
  const MockLlmConfig config;
  Stats stats;
  FaultDice dice;
  MockRateLimit rate_limit;
  MockOutage outage;
  RetryAfterTracker retry_after;
  std::atomic<int64_t> next_completion_id{1};
  std::atomic<int64_t> next_request_id{1};  // x-request-id, as OpenAI sends it
};

// ---------------------------------------------------------------------------
// One HTTP/1.1 connection: read a request, answer it (maybe later), repeat.

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, SharedState* state)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), state_(*state) {
    state_.stats.ConnectionOpened();
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() {
    FinishRequest();
    state_.stats.ConnectionClosed();
  }

  void Start() { ReadHeader(); }

 private:
  // What to do with response_ once the latency has passed.
  enum class Action { kRespond, kDrop, kRespondSlowly };

  void ReadHeader() {
    parser_.emplace();
    parser_->body_limit(kMaxBodyBytes);
    parser_->header_limit(kMaxHeaderBytes);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return Close();
    // Clients such as curl hold back a large body until they see "100 Continue".
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      continue_ =
          http::response<http::empty_body>(http::status::continue_, parser_->get().version());
      http::async_write(socket_, continue_,
                        [self = shared_from_this()](beast::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->Close();
                       self->Handle(self->parser_->release());
                     });
  }

  void Handle(http::request<http::string_body> request) {
    beast::string_view target = request.target();
    std::string path(target.substr(0, target.find('?')));
    response_ = {};
    limit_headers_.clear();
    response_.version(request.version());
    response_.keep_alive(request.keep_alive());
    response_.set(http::field::server, "mock-llm");
    response_.set("x-request-id", "req_" + std::to_string(state_.next_request_id++));

    padded_ = path != "/stats";
    if (path == "/stats" && request.method() == http::verb::get) {
      SetJson(http::status::ok, state_.stats.ToJson());
      return Write();
    }
    request_open_ = true;
    state_.stats.RequestStarted();

    if (path == "/admin/outage" && request.method() == http::verb::post) {
      return HandleOutageSwitch(std::string(target.substr(path.size())));
    }
    if (path.rfind("/v1/", 0) == 0 && !Authorized(request)) return Write();
    if (path == "/v1/chat/completions" && request.method() == http::verb::post) {
      return HandleChat(request);
    }
    if (path == "/v1/models" && request.method() == http::verb::get) {
      SetJson(http::status::ok,
              {{"object", "list"}, {"data", {{{"id", kModelId}, {"object", "model"}}}}});
      return Write();
    }
    if (path == "/echo" && request.method() == http::verb::post) {
      beast::string_view type = request[http::field::content_type];
      response_.result(http::status::ok);
      response_.set(http::field::content_type,
                    type.empty() ? beast::string_view("application/octet-stream") : type);
      response_.body() = std::move(request.body());
      response_.prepare_payload();
      return Write();
    }
    bool known = path == "/v1/chat/completions" || path == "/v1/models" || path == "/echo" ||
                 path == "/stats";
    if (known) {
      SetJson(http::status::method_not_allowed,
              ErrorBody("Method not allowed for " + path, "invalid_request_error"));
    } else {
      SetJson(http::status::not_found,
              ErrorBody("Unknown request URL: " + path, "invalid_request_error", "unknown_url"));
    }
    Write();
  }

  // POST /admin/outage?on=1 (503 for every chat request), ?on=0 (none), or
  // ?on=auto (the --outage-at/--outage-for schedule).
  void HandleOutageSwitch(const std::string& query) {
    if (query == "?on=1") {
      state_.outage.Set(true);
    } else if (query == "?on=0") {
      state_.outage.Set(false);
    } else if (query == "?on=auto") {
      state_.outage.Clear();
    } else {
      SetJson(http::status::bad_request,
              ErrorBody("expected ?on=1, ?on=0 or ?on=auto", "invalid_request_error"));
      return Write();
    }
    SetJson(http::status::ok, {{"outage", state_.outage.Down(Clock::now())}});
    Write();
  }

  // An outage or a rate limit answers at once, as a load balancer or a
  // gateway would, without the model's latency. True if it answered.
  bool RefusedBeforeTheModel(const ChatRequest& chat) {
    if (state_.outage.Down(Clock::now())) {
      state_.stats.OutageRefused();
      SetJson(http::status::service_unavailable,
              ErrorBody("The server is overloaded or not ready yet (outage injected by mock-llm).",
                        "server_error"));
      Write();
      return true;
    }
    if (!state_.rate_limit.enabled()) return false;
    Json completion = ChatCompletion(chat, 0, 0);
    double tokens = completion["usage"]["total_tokens"].get<double>();
    MockRateLimit::Headers headers;
    double retry_ms = 0;
    bool admitted = state_.rate_limit.Admit(Clock::now(), tokens, &headers, &retry_ms);
    limit_headers_ = std::move(headers);
    if (admitted) return false;
    state_.stats.RateLimited();
    SetJson(http::status::too_many_requests,
            ErrorBody("Rate limit reached for requests (mock-llm's limit).", "requests",
                      "rate_limit_exceeded"));
    Write();
    return true;
  }

  // Sets a 401 response and returns false unless the configured key was sent.
  bool Authorized(const http::request<http::string_body>& request) {
    const std::string& key = state_.config.api_key;
    if (key.empty()) return true;
    beast::string_view auth = request[http::field::authorization];
    if (auth == "Bearer " + key) return true;
    SetJson(http::status::unauthorized, ErrorBody(auth.empty() ? "You didn't provide an API key."
                                                               : "Incorrect API key provided.",
                                                  "invalid_request_error", "invalid_api_key"));
    return false;
  }

  void HandleChat(const http::request<http::string_body>& request) {
    state_.stats.ChatRequest();
    ChatRequest chat;
    std::string error;
    if (!ParseChatRequest(request.body(), &chat, &error)) {
      SetJson(http::status::bad_request, ErrorBody(error, "invalid_request_error"));
      return Write();
    }
    if (state_.retry_after.IsEarly(chat.last_user_message, Clock::now())) {
      state_.stats.EarlyRetry();
    }
    if (RefusedBeforeTheModel(chat)) return;
    Action action = Action::kRespond;
    switch (state_.dice.Roll()) {
      case Fault::kRateLimit:
        SetJson(http::status::too_many_requests,
                ErrorBody("Rate limit reached for requests (injected by mock-llm).", "requests",
                          "rate_limit_exceeded"));
        response_.set(http::field::retry_after, std::to_string(state_.config.retry_after_s));
        rate_limited_prompt_ = std::move(chat.last_user_message);
        break;
      case Fault::kServerError:
        SetJson(http::status::internal_server_error,
                ErrorBody("The server had an error while processing your request (injected by "
                          "mock-llm).",
                          "server_error"));
        break;
      case Fault::kDrop:
        action = Action::kDrop;
        break;
      case Fault::kSlow:
        action = Action::kRespondSlowly;
        [[fallthrough]];
      case Fault::kNone:
        SetJson(http::status::ok, ChatCompletion(chat, state_.next_completion_id++,
                                                 static_cast<int64_t>(std::time(nullptr))));
        break;
    }
    int delay_ms = state_.dice.LatencyMs();
    if (delay_ms <= 0) return Execute(action);
    timer_.expires_after(std::chrono::milliseconds(delay_ms));
    timer_.async_wait([self = shared_from_this(), action](beast::error_code ec) {
      if (ec) return self->Close();
      self->Execute(action);
    });
  }

  void Execute(Action action) {
    switch (action) {
      case Action::kRespond:
        return Write();
      case Action::kDrop:
        state_.stats.Dropped();
        return Close();
      case Action::kRespondSlowly:
        return WriteSlowly();
    }
  }

  void SetJson(http::status status, const Json& body) {
    response_.result(status);
    response_.set(http::field::content_type, "application/json");
    for (const auto& [name, value] : limit_headers_) response_.set(name, value);
    response_.body() = Dump(body);
    response_.prepare_payload();
  }

  void Sending() {
    if (rate_limited_prompt_) {
      // The client hears of the 429 after this instant, so a retry that honours
      // Retry-After can never arrive before this deadline.
      state_.retry_after.RateLimited(
          *rate_limited_prompt_, Clock::now() + std::chrono::seconds(state_.config.retry_after_s));
      rate_limited_prompt_.reset();
    }
    if (request_open_) state_.stats.Responded(response_.result_int());
  }

  void Write() {
    Sending();
    if (state_.config.header_bytes > 0 && padded_) return WritePadded();
    http::async_write(
        socket_, response_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWritten(ec); });
  }

  // --header-bytes: the answer with an x-padding line after its status line,
  // written by hand (Beast caps a field's value at 64 KiB).
  void WritePadded() {
    std::ostringstream message;
    message << response_;
    raw_ = message.str();
    size_t after_status = raw_.find("\r\n") + 2;
    raw_.insert(after_status,
                "x-padding: " + std::string(state_.config.header_bytes, 'a') + "\r\n");
    asio::async_write(
        socket_, asio::buffer(raw_),
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWritten(ec); });
  }

  // Headers at once, then the body in pieces spread over --slow-ms.
  void WriteSlowly() {
    state_.stats.Slow();
    Sending();
    serializer_.emplace(response_);
    http::async_write_header(socket_, *serializer_,
                             [self = shared_from_this()](beast::error_code ec, size_t) {
                               if (ec) return self->OnWritten(ec);
                               self->WriteBodyPiece(0);
                             });
  }

  void WriteBodyPiece(size_t offset) {
    const std::string& body = response_.body();
    if (offset >= body.size()) return OnWritten({});
    size_t pieces = std::max<size_t>(1, std::min(kSlowPieces, body.size()));
    size_t piece = (body.size() + pieces - 1) / pieces;
    timer_.expires_after(std::chrono::milliseconds(state_.config.slow_ms / pieces));
    timer_.async_wait([self = shared_from_this(), offset, piece](beast::error_code ec) {
      if (ec) return self->Close();
      const std::string& body = self->response_.body();
      size_t n = std::min(piece, body.size() - offset);
      asio::async_write(self->socket_, asio::buffer(body.data() + offset, n),
                        [self, next = offset + n](beast::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->WriteBodyPiece(next);
                        });
    });
  }

  void OnWritten(beast::error_code ec) {
    FinishRequest();
    serializer_.reset();
    raw_.clear();
    raw_.shrink_to_fit();
    if (ec) return Close();
    if (response_.need_eof()) {
      beast::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      return;  // the last handler's reference goes; ~Session closes the socket
    }
    ReadHeader();
  }

  void FinishRequest() {
    if (!request_open_) return;
    request_open_ = false;
    state_.stats.RequestFinished();
  }

  void Close() {
    FinishRequest();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  SharedState& state_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::empty_body> continue_;
  http::response<http::string_body> response_;
  std::optional<http::response_serializer<http::string_body>> serializer_;
  std::string raw_;      // WritePadded's message, alive until written
  bool padded_ = false;  // this answer gets --header-bytes (all but /stats's; --pslow's are not)
  std::optional<std::string> rate_limited_prompt_;  // set while a 429 waits to be sent
  bool request_open_ = false;                       // counted in Stats' in-flight requests
  MockRateLimit::Headers limit_headers_;            // x-ratelimit-* of the current request
};

// ---------------------------------------------------------------------------

class Server {
 public:
  explicit Server(const MockLlmConfig& config)
      : state_(config), acceptor_(ioc_), retry_accept_(ioc_), signals_(ioc_, SIGINT, SIGTERM) {}

  // Binds and listens; on failure returns false with the reason in `*error`.
  bool Listen(std::string* error) {
    beast::error_code ec;
    asio::ip::address address = asio::ip::make_address(state_.config.host, ec);
    if (ec) {
      *error = "--host '" + state_.config.host + "' is not an IP address";
      return false;
    }
    tcp::endpoint endpoint(address, static_cast<uint16_t>(state_.config.port));
    if (acceptor_.open(endpoint.protocol(), ec) ||
        acceptor_.set_option(asio::socket_base::reuse_address(true), ec) ||
        acceptor_.bind(endpoint, ec) ||
        acceptor_.listen(asio::socket_base::max_listen_connections, ec)) {
      *error = "cannot listen on " + state_.config.host + ":" + std::to_string(state_.config.port) +
               ": " + ec.message();
      return false;
    }
    return true;
  }

  std::string Url() const {
    tcp::endpoint local = acceptor_.local_endpoint();
    std::string host = local.address().to_string();
    if (local.address().is_v6()) host = "[" + host + "]";
    return "http://" + host + ":" + std::to_string(local.port());
  }

  // Serves on --threads threads until SIGINT or SIGTERM.
  void Run() {
    signals_.async_wait([this](beast::error_code, int) { ioc_.stop(); });
    Accept();
    std::vector<std::thread> helpers;
    for (int i = 1; i < state_.config.threads; ++i) helpers.emplace_back([this] { Serve(); });
    Serve();
    for (std::thread& t : helpers) t.join();
  }

  const Stats& stats() const { return state_.stats; }

 private:
  // A handler's exception (a bug) costs its session, not the server.
  void Serve() {
    for (;;) {
      try {
        ioc_.run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "mock-llm: %s\n", e.what());
      }
    }
  }

  // The acceptor has one accept outstanding at a time, so its handlers never
  // run concurrently even with several threads.
  void Accept() {
    acceptor_.async_accept(asio::make_strand(ioc_),
                           [this](beast::error_code ec, tcp::socket socket) {
                             if (ec == asio::error::operation_aborted) return;
                             if (ec) {
                               // Typically EMFILE: wait for connections to close instead of
                               // spinning.
                               std::fprintf(stderr, "mock-llm: accept: %s\n", ec.message().c_str());
                               retry_accept_.expires_after(std::chrono::milliseconds(50));
                               retry_accept_.async_wait([this](beast::error_code) { Accept(); });
                               return;
                             }
                             beast::error_code ignored;
                             socket.set_option(tcp::no_delay(true), ignored);
                             std::make_shared<Session>(std::move(socket), &state_)->Start();
                             Accept();
                           });
  }

  // Declared before ioc_: sessions destroyed with ioc_'s pending handlers
  // still update the stats.
  SharedState state_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_accept_;
  asio::signal_set signals_;
};

// Many connections need many descriptors; the hard limit is usually far above
// the soft one.
void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

int RunMockLlm(const MockLlmConfig& config) {
  RaiseFileLimit();
  Server server(config);
  std::string error;
  if (!server.Listen(&error)) {
    std::fprintf(stderr, "mock-llm: %s\n", error.c_str());
    return EXIT_FAILURE;
  }
  std::printf("listening on %s\n", server.Url().c_str());
  std::fflush(stdout);
  server.Run();
  std::fprintf(stderr, "mock-llm: stats %s\n", Dump(server.stats().ToJson()).c_str());
  return kExitOk;
}

}  // namespace
}  // namespace fanmap

int main(int argc, char** argv) {
  fanmap::MockLlmConfig config;
  CLI::App app{
      "mock-llm: an OpenAI-compatible HTTP server for tests and benchmarks.\n"
      "POST /v1/chat/completions answers \"echo: <last user message>\" after the latency;\n"
      "GET /v1/models, POST /echo (body returned as is), GET /stats (JSON counters).\n"
      "Prints 'listening on http://HOST:PORT' when ready.",
      "mock-llm"};
  const char* kServer = "Server";
  app.add_option("--host", config.host, "IP address to listen on")
      ->capture_default_str()
      ->group(kServer);
  app.add_option("--port", config.port, "TCP port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str()
      ->group(kServer);
  app.add_option("--threads", config.threads, "threads serving connections")
      ->check(CLI::Range(1, 256))
      ->capture_default_str()
      ->group(kServer);
  app.add_option("--api-key", config.api_key,
                 "require 'Authorization: Bearer KEY' on /v1/* (else 401)")
      ->envname("MOCK_LLM_API_KEY")
      ->group(kServer);

  const char* kTiming = "Timing";
  app.add_option("--latency-ms", config.latency_ms, "delay before each chat completion answer")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str()
      ->group(kTiming);
  app.add_option("--jitter-ms", config.jitter_ms, "uniform extra delay of 0..J ms per request")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str()
      ->group(kTiming);

  const char* kFaults = "Faults (chat completions only; probabilities, summing to at most 1)";
  app.add_option("--p429", config.p429, "answer 429 with a Retry-After header")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str()
      ->group(kFaults);
  app.add_option("--p500", config.p500, "answer 500")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str()
      ->group(kFaults);
  app.add_option("--pdrop", config.pdrop, "close the connection without answering")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str()
      ->group(kFaults);
  app.add_option("--pslow", config.pslow, "send the headers, then the body slowly over --slow-ms")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str()
      ->group(kFaults);
  app.add_option("--retry-after", config.retry_after_s, "seconds in a 429's Retry-After header")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str()
      ->group(kFaults);
  app.add_option("--slow-ms", config.slow_ms, "time over which a slow answer's body is sent")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str()
      ->group(kFaults);
  app.add_option("--header-bytes", config.header_bytes,
                 "an x-padding header of this many bytes on every answer but /stats's and "
                 "--pslow's (a server that sends huge headers)")
      ->check(CLI::Range(0, 64 << 20))
      ->capture_default_str()
      ->group(kFaults);
  app.add_option("--seed", config.seed, "seed of the PRNG deciding faults and jitter")
      ->capture_default_str()
      ->group(kFaults);
  const char* kLimits = "Limits and outages (chat completions only; answered at once)";
  app.add_option("--limit-rps", config.limits.requests_per_s,
                 "requests per second (a bucket of one second's worth); 429 beyond")
      ->check(CLI::NonNegativeNumber)
      ->group(kLimits);
  app.add_option("--limit-rpm", config.limits.requests_per_min, "requests per minute; 429 beyond")
      ->check(CLI::NonNegativeNumber)
      ->group(kLimits);
  app.add_option("--limit-tps", config.limits.tokens_per_s,
                 "tokens (prompt + completion) per second; 429 beyond")
      ->check(CLI::NonNegativeNumber)
      ->group(kLimits);
  app.add_option("--limit-tpm", config.limits.tokens_per_min, "tokens per minute; 429 beyond")
      ->check(CLI::NonNegativeNumber)
      ->group(kLimits);
  bool no_limit_headers = false;
  app.add_flag("--no-limit-headers", no_limit_headers,
               "send no x-ratelimit-* or retry-after-ms headers (as nginx's limit_req)")
      ->group(kLimits);
  app.add_option("--outage-at", config.outage_at_s,
                 "seconds after the start when every chat request starts failing with 503")
      ->check(CLI::NonNegativeNumber)
      ->group(kLimits);
  app.add_option("--outage-for", config.outage_for_s, "seconds the outage lasts (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->group(kLimits);
  app.footer(
      "POST /admin/outage?on=1|0|auto starts or ends an outage by hand, or returns to the "
      "schedule.\n"
      "GET /stats: requests_total, chat_requests, by_status, dropped, slow, early_retries\n"
      "(requests for a prompt, i.e. a last user message, that came back before the Retry-After\n"
      "of its 429 had passed), rate_limited (429s of the limits), outage_refused (503s of an\n"
      "outage), connections_{current,peak,total}, in_flight_{current,peak}.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? fanmap::kExitOk : fanmap::kExitUsage;
  }
  config.limits.headers = !no_limit_headers;
  if (config.p429 + config.p500 + config.pdrop + config.pslow > 1.0 + 1e-9) {
    std::fprintf(stderr,
                 "mock-llm: --p429 + --p500 + --pdrop + --pslow must be at most 1\n"
                 "Run 'mock-llm --help' for usage.\n");
    return fanmap::kExitUsage;
  }
  return fanmap::RunMockLlm(config);
}
