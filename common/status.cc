#include "common/status.h"

namespace fanmap {

Status Status::WithContext(const std::string& context) const {
  if (ok()) return *this;
  return Error(context + ": " + message_);
}

}  // namespace fanmap
