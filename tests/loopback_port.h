// UnusedLoopbackPort: a TCP port on 127.0.0.1 that was free a moment ago
// (bound once to get a number, then closed), for a server that cannot be
// told to pick its own (nginx) or for a port nobody listens on. Another
// process may take it in between: callers that bind it retry.
#ifndef FANMAP_TESTS_LOOPBACK_PORT_H_
#define FANMAP_TESTS_LOOPBACK_PORT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace fanmap {
namespace testing_util {

inline int UnusedLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace testing_util
}  // namespace fanmap

#endif  // FANMAP_TESTS_LOOPBACK_PORT_H_
