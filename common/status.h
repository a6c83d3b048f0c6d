// Status: the outcome of an operation that can fail in an expected way.
//
// Modelled on LevelDB's Status: cheap when ok, carries a human-readable
// message otherwise. Library exceptions are caught at the edge where they
// happen and turned into a Status with context.
#ifndef FANMAP_COMMON_STATUS_H_
#define FANMAP_COMMON_STATUS_H_

#include <string>
#include <utility>

namespace fanmap {

class Status {
 public:
  Status() = default;  // ok

  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message), true); }

  bool ok() const { return !failed_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "context: message".
  Status WithContext(const std::string& context) const;

 private:
  Status(std::string message, bool failed) : message_(std::move(message)), failed_(failed) {}

  std::string message_;
  bool failed_ = false;
};

}  // namespace fanmap

#endif  // FANMAP_COMMON_STATUS_H_
