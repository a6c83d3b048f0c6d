// The version both binaries report with --version.
#ifndef FANMAP_COMMON_VERSION_H_
#define FANMAP_COMMON_VERSION_H_

#include <string>

namespace fanmap {

constexpr char kFanmapVersion[] = "0.3.0";

// "NAME 0.3.0 (protocol 2, libzmq X.Y.Z, libcurl X.Y.Z)": what a bug report
// needs. Defined in version.cc, which links libzmq and libcurl.
std::string VersionText(const std::string& program);

}  // namespace fanmap

#endif  // FANMAP_COMMON_VERSION_H_
