#include "coordinator/guarded_http_server.h"

#include <fcntl.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_static_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>

namespace fanmap {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

// How long to wait before accepting again after accept failed (e.g. out of
// file descriptors), instead of failing again at once in a loop.
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);

// Sockets must not leak into the processes the coordinator starts (they
// would keep the port, or a client's connection, open).
void CloseOnExec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

bool IsParseError(const beast::error_code& ec) {
  return ec.category() == beast::error_code(http::error::bad_target).category();
}

}  // namespace

struct GuardedHttpServer::Impl {
  ~Impl() { closing = true; }

  void Accept();
  void Closed();  // a connection ended

  // Declared first so that they outlive `io`, whose pending handlers (the
  // connections) are destroyed with it and call Closed().
  bool closing = false;
  size_t open = 0;  // connections; the Run thread only
  bool accepting = false;
  std::map<std::string, Route> routes;
  net::io_context io{1};
  net::executor_work_guard<net::io_context::executor_type> work{io.get_executor()};
  net::steady_timer retry{io};
  tcp::acceptor acceptor{io};
};

namespace {

// One connection: read one request's head, answer it, close.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Impl = GuardedHttpServer::Impl;

  Connection(tcp::socket socket, Impl* server)
      : stream_(std::move(socket)), head_timer_(server->io), server_(server) {}
  ~Connection() {
    if (!server_->closing) server_->Closed();
  }

  void Start() {
    parser_.header_limit(GuardedHttpServer::kMaxHeadBytes);
    parser_.body_limit(0);  // nothing to upload
    auto self = shared_from_this();
    // One deadline for the whole head: Beast's own timeout (tcp_stream)
    // would close the socket, leaving no way to answer 408. Shutting down
    // the receiving side also ends a read started after the cancel.
    head_timer_.expires_after(std::chrono::milliseconds(GuardedHttpServer::kHeadDeadlineMs));
    head_timer_.async_wait([self](beast::error_code ec) {
      if (ec) return;  // cancelled: the head was read in time
      self->timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
      self->stream_.socket().shutdown(tcp::socket::shutdown_receive, ignored);
    });
    http::async_read(stream_, buffer_, parser_,
                     [self](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    head_timer_.cancel();
    HttpAnswer answer;
    if (!ec) {
      // A whole request, even if the deadline passed as it was read.
      answer = Dispatch(parser_.get());
    } else if (timed_out_) {
      answer.status = 408;
    } else if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      answer.status = 431;
    } else if (ec == http::error::body_limit) {
      answer.status = 413;
    } else if (ec && IsParseError(ec) && ec != http::error::end_of_stream &&
               ec != http::error::partial_message) {
      answer.status = 400;
    } else {
      return;  // the client closed or the socket failed: nobody to answer
    }
    Write(std::move(answer));
  }

  HttpAnswer Dispatch(const http::request<http::string_body>& request) {
    HttpAnswer answer;
    if (request.method() != http::verb::get) {
      answer.status = 405;
      answer.headers.emplace_back("Allow", "GET");
      return answer;
    }
    std::string path(request.target());
    path = path.substr(0, path.find('?'));
    auto route = server_->routes.find(path);
    if (route == server_->routes.end()) {
      answer.status = 404;
      return answer;
    }
    return route->second();
  }

  void Write(HttpAnswer answer) {
    response_.version(11);
    response_.result(static_cast<unsigned>(answer.status));
    if (!answer.content_type.empty()) response_.set(http::field::content_type, answer.content_type);
    for (auto& header : answer.headers) response_.set(header.first, header.second);
    response_.set(http::field::connection, "close");
    response_.body() = std::move(answer.body);
    response_.prepare_payload();
    stream_.expires_after(std::chrono::milliseconds(GuardedHttpServer::kWriteDeadlineMs));
    auto self = shared_from_this();
    http::async_write(stream_, response_, [self](beast::error_code, size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      self->stream_.close();
    });
  }

  beast::tcp_stream stream_;
  // The head and nothing more: a little over the parser's limit, so that the
  // limit (431) is what a long head meets.
  beast::flat_static_buffer<GuardedHttpServer::kMaxHeadBytes + 512> buffer_;
  http::request_parser<http::string_body> parser_;
  http::response<http::string_body> response_;
  net::steady_timer head_timer_;
  bool timed_out_ = false;
  Impl* const server_;
};

}  // namespace

void GuardedHttpServer::Impl::Accept() {
  if (closing || accepting || open >= kMaxConnections || !acceptor.is_open()) return;
  accepting = true;
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    accepting = false;
    if (ec == net::error::operation_aborted || closing) return;
    if (ec) {
      retry.expires_after(kAcceptRetry);
      retry.async_wait([this](beast::error_code ec) {
        if (!ec) Accept();
      });
      return;
    }
    CloseOnExec(socket.native_handle());
    ++open;
    std::make_shared<Connection>(std::move(socket), this)->Start();
    Accept();
  });
}

void GuardedHttpServer::Impl::Closed() {
  --open;
  Accept();
}

GuardedHttpServer::GuardedHttpServer() : impl_(std::make_unique<Impl>()) {}
GuardedHttpServer::~GuardedHttpServer() = default;

void GuardedHttpServer::Get(const std::string& path, Route route) {
  impl_->routes[path] = std::move(route);
}

Status GuardedHttpServer::Bind(const std::string& host, int port, int* bound_port) {
  beast::error_code ec;
  tcp::resolver resolver(impl_->io);
  auto endpoints = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) return Status::Error(ec.message());
  tcp::acceptor& acceptor = impl_->acceptor;
  for (const auto& entry : endpoints) {
    tcp::endpoint endpoint = entry.endpoint();
    beast::error_code ignored;
    acceptor.close(ignored);
    acceptor.open(endpoint.protocol(), ec);
    if (ec) continue;
    CloseOnExec(acceptor.native_handle());
    // SO_REUSEADDR only (a restart may bind while old connections linger);
    // never SO_REUSEPORT, which would share the port with another process.
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) continue;
    *bound_port = acceptor.local_endpoint(ec).port();
    if (ec) continue;
    return Status::Ok();
  }
  beast::error_code ignored;
  acceptor.close(ignored);
  return Status::Error(ec ? ec.message() : "no address for " + host);
}

void GuardedHttpServer::Run() {
  impl_->Accept();
  impl_->io.run();
}

void GuardedHttpServer::Stop() { impl_->io.stop(); }

}  // namespace fanmap
