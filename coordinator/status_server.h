// StatusServer: the live view of a run (`fanmap --status ADDR`), served over
// HTTP by GuardedHttpServer (Boost.Beast) from a thread of its own:
//
//   GET /         a small HTML page that fetches /status every second
//   GET /status   the latest FarmSnapshot as JSON
//   GET /metrics  the same as Prometheus text metrics
//
// The coordinator's loop never waits for it: it publishes an immutable
// snapshot (Publish) into a slot guarded by a mutex held only to swap or copy
// a shared_ptr; the server's thread renders the latest one for each request.
// Rendering, sockets and slow clients are all on the server's side, and
// bounded there: a request's head is read with a size cap and a deadline,
// and at most GuardedHttpServer::kMaxConnections are open at once.
//
// Read-only and unauthenticated: anyone who can reach ADDR can read the
// counts, worker names and hosts (never items, results, job options or keys).
//
// Thread-safety: Start, Due, Publish and the destructor are called by the
// coordinator's thread; the handlers run on the server's thread.
#ifndef FANMAP_COORDINATOR_STATUS_SERVER_H_
#define FANMAP_COORDINATOR_STATUS_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "coordinator/farm_snapshot.h"
#include "coordinator/guarded_http_server.h"

namespace fanmap {

// "HOST:PORT" (IPv6: "[::1]:PORT"), port 0..65535 (0: any free port) →
// `*host` (without brackets) and `*port`. An error names the text and says
// what is wrong with it.
Status ParseStatusAddress(const std::string& text, std::string* host, int* port);

class StatusServer {
 public:
  // How often the coordinator publishes a new snapshot.
  static constexpr int64_t kPublishEveryUs = 250000;
  // Connections open at once (GuardedHttpServer::kMaxConnections). Each is
  // served in a few seconds at most: slow clients, up to this many, do not
  // delay the view, and more delay it by seconds, not for the run.
  static constexpr size_t kMaxConnections = GuardedHttpServer::kMaxConnections;

  // Binds `address` (ParseStatusAddress) now, so that a bad address or a
  // port in use is an error before the run starts, then serves from a
  // thread of its own, with every signal blocked (the coordinator reads its
  // signals from a signalfd). The port is exclusive (no SO_REUSEPORT): a
  // second server on a port in use fails instead of sharing its requests.
  static Status Start(const std::string& address, std::unique_ptr<StatusServer>* server);

  // Stops serving (requests in progress are dropped, never waited for) and
  // joins the server's thread, waiting at most kStopGraceMs for it: a client
  // must never hold the run's end. Past that (it never blocks, so only if
  // starved of CPU), the thread is left running to the process's exit, with
  // the server and the last snapshot (leaked on purpose; the coordinator
  // exits right after).
  ~StatusServer();
  static constexpr int64_t kStopGraceMs = 1000;
  StatusServer(const StatusServer&) = delete;
  StatusServer& operator=(const StatusServer&) = delete;

  // Where it listens: "127.0.0.1:34567" (the port it bound, if 0 was asked).
  const std::string& address() const { return address_; }

  // True if kPublishEveryUs passed since the last Publish.
  bool Due(int64_t now_us) const { return now_us >= next_publish_us_; }
  void Publish(FarmSnapshot snapshot, int64_t now_us);

  // The snapshot requests are answered from (an empty one before the first
  // Publish).
  std::shared_ptr<const FarmSnapshot> Latest() const;

 private:
  // What the server's thread uses: shared, so that it outlives this object
  // if it does (see the destructor).
  struct Shared;

  StatusServer();

  std::unique_ptr<GuardedHttpServer> http_;
  std::shared_ptr<Shared> shared_;
  std::thread thread_;
  std::string address_;
  int64_t next_publish_us_ = 0;  // the coordinator's thread only
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_STATUS_SERVER_H_
