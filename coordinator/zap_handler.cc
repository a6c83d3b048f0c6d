#include "coordinator/zap_handler.h"

#include <vector>

#include "common/clock.h"
#include "common/curve_keys.h"

namespace fanmap {

ZapHandler::ZapHandler(zmq::context_t& context, std::set<std::string> authorized, Logger log)
    : socket_(context, zmq::socket_type::rep),
      authorized_(std::move(authorized)),
      log_(std::move(log)) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind("inproc://zeromq.zap.01");
}

void ZapHandler::Handle() {
  for (;;) {
    // Request: version, request id, domain, address, routing id, mechanism,
    // then the mechanism's credentials (CURVE: the client's 32-byte key).
    std::vector<zmq::message_t> frames;
    zmq::message_t frame;
    if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return;
    bool more = frame.more();
    frames.push_back(std::move(frame));
    while (more) {
      zmq::message_t next;
      if (!socket_.recv(next, zmq::recv_flags::none)) break;
      more = next.more();
      frames.push_back(std::move(next));
    }
    std::string request_id = frames.size() > 1 ? frames[1].to_string() : "";
    std::string address = frames.size() > 3 ? frames[3].to_string() : "?";
    bool curve = frames.size() >= 7 && frames[5].to_string() == "CURVE" && frames[6].size() == 32;
    std::string key = curve ? KeyToZ85(frames[6].data()) : "";
    bool ok =
        frames.size() >= 6 && frames[0].to_string() == "1.0" && curve && authorized_.count(key) > 0;
    if (!ok) {
      ++refused_;
      std::string who = key.empty() ? "a client without a CURVE key" : "key " + key;
      if (logged_.size() < kMaxLoggedKeys) {
        if (logged_.insert(who).second) {
          log_("refused " + who + " from " + address + " (not authorized)");
        }
      } else if (logged_.count(who) == 0 && others_log_.Allow(NowMillis())) {
        // A peer trying key after key: a few lines now and then, so that a
        // real worker's refusal among them still shows.
        std::string line = "refused " + who + " from " + address + " (not authorized)";
        if (uint64_t n = others_log_.TakeSuppressed()) {
          line += "; " + std::to_string(n) + " refusal(s) of other keys not logged";
        }
        log_(line + "; more than " + std::to_string(kMaxLoggedKeys) +
             " different keys refused: further ones are logged a few at a time");
      }
    }
    std::vector<std::string> reply = {
        "1.0", request_id, ok ? "200" : "400", ok ? "OK" : "not authorized", ok ? key : "", ""};
    for (size_t i = 0; i < reply.size(); ++i) {
      socket_.send(zmq::buffer(reply[i]),
                   i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
}

}  // namespace fanmap
