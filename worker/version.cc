#include "common/version.h"

#include <curl/curl.h>
#include <zmq.h>

#include "common/protocol.h"

namespace fanmap {

std::string VersionText(const std::string& program) {
  int major = 0, minor = 0, patch = 0;
  zmq_version(&major, &minor, &patch);
  const curl_version_info_data* curl = curl_version_info(CURLVERSION_NOW);
  return program + " " + kFanmapVersion + " (protocol " + std::to_string(kProtocolVersion) +
         ", libzmq " + std::to_string(major) + "." + std::to_string(minor) + "." +
         std::to_string(patch) + ", libcurl " + (curl != nullptr ? curl->version : "?") + ")";
}

}  // namespace fanmap
