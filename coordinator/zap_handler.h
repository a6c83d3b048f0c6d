// ZapHandler: decides which workers may connect to a CURVE coordinator.
//
// ZeroMQ asks the ZAP handler (a REP socket at inproc://zeromq.zap.01 in the
// same context) about every CURVE handshake; only clients whose public key is
// authorized get "200". The coordinator's task socket also sets
// ZMQ_ZAP_ENFORCE_DOMAIN, so when no handler answers nothing is accepted
// (fail closed). The handler lives in the coordinator's poll loop: call
// Handle() when socket() is readable. Refusals are logged once per key, for
// the first kMaxLoggedKeys keys; the refusals of keys beyond those go through
// a LogLimiter (a few lines, then one per interval, saying how many were not
// logged): neither the log nor the handler's memory grows with the number of
// keys a peer tries, and a real worker's refusal among them still shows now
// and then. refused() counts them all.
#ifndef FANMAP_COORDINATOR_ZAP_HANDLER_H_
#define FANMAP_COORDINATOR_ZAP_HANDLER_H_

#include <functional>
#include <set>
#include <string>
#include <zmq.hpp>

#include "coordinator/log_limiter.h"

namespace fanmap {

class ZapHandler {
 public:
  static constexpr size_t kMaxLoggedKeys = 64;
  using Logger = std::function<void(const std::string&)>;

  // Binds the handler in `context`; must happen before the server binds.
  ZapHandler(zmq::context_t& context, std::set<std::string> authorized, Logger log);

  void Authorize(const std::string& public_key_z85) { authorized_.insert(public_key_z85); }
  zmq::socket_t& socket() { return socket_; }
  // Answers every pending request.
  void Handle();
  size_t refused() const { return refused_; }
  // Different refused keys remembered (to log each once): at most kMaxLoggedKeys.
  size_t remembered() const { return logged_.size(); }

 private:
  zmq::socket_t socket_;
  std::set<std::string> authorized_;
  std::set<std::string> logged_;
  Logger log_;
  size_t refused_ = 0;
  LogLimiter others_log_;  // refusals of keys not in logged_ once it is full
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_ZAP_HANDLER_H_
