#include "common/curve_keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace fanmap {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

Status ReadWholeFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read '" + path + "': " + strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return Status::Ok();
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status WriteFile(const std::string& path, const std::string& text, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Status::Error("cannot create '" + path + "': " + strerror(errno));
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = close(fd) == 0 && ok;
  if (!ok) return Status::Error("cannot write '" + path + "'");
  return Status::Ok();
}

}  // namespace

bool IsZ85Key(const std::string& key) {
  if (key.size() != 40) return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, key.c_str()) != nullptr;
}

Status GenerateKeyPair(CurveKeyPair* out) {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Status::Error(std::string("cannot make CURVE keys: ") + zmq_strerror(zmq_errno()));
  }
  out->public_key = pub;
  out->secret_key = sec;
  return Status::Ok();
}

Status ReadSecretKey(const std::string& path, CurveKeyPair* out) {
  std::string text;
  Status status = ReadWholeFile(path, &text);
  if (!status.ok()) return status;
  std::string key = Trim(text);
  if (!IsZ85Key(key)) return Status::Error("'" + path + "' does not hold a CURVE secret key");
  char pub[41];
  if (zmq_curve_public(pub, key.c_str()) != 0) {
    return Status::Error("'" + path + "' does not hold a CURVE secret key");
  }
  out->secret_key = key;
  out->public_key = pub;
  return Status::Ok();
}

Status ReadPublicKey(const std::string& spec, std::string* out) {
  // A file wins: a 40-character path can also be valid Z85.
  struct stat st;
  if (stat(spec.c_str(), &st) != 0 && IsZ85Key(spec)) {
    *out = spec;
    return Status::Ok();
  }
  std::string text;
  Status status = ReadWholeFile(spec, &text);
  if (!status.ok()) return status;
  std::string key = Trim(text);
  if (!IsZ85Key(key)) return Status::Error("'" + spec + "' does not hold a CURVE public key");
  *out = key;
  return Status::Ok();
}

Status ReadAuthorizedKeys(const std::string& path, std::set<std::string>* keys) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return Status::Error("cannot read authorized keys '" + path + "': " + strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) return Status::Error("cannot list '" + path + "': " + strerror(errno));
    Status status;
    while (dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (!EndsWith(name, ".pub")) continue;
      std::string key;
      status = ReadPublicKey(path + "/" + name, &key);
      if (!status.ok()) break;
      keys->insert(key);
    }
    closedir(dir);
    return status;
  }
  std::string text;
  Status status = ReadWholeFile(path, &text);
  if (!status.ok()) return status;
  std::istringstream lines(text);
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    // Z85 itself uses '#': only a whole line can be a comment.
    std::string key = Trim(line);
    if (key.empty() || key[0] == '#') continue;
    if (!IsZ85Key(key)) {
      return Status::Error("'" + path + "' line " + std::to_string(number) +
                           ": not a CURVE public key");
    }
    keys->insert(key);
  }
  return Status::Ok();
}

Status WriteKeyPair(const std::string& name, const CurveKeyPair& pair) {
  // "workers/host1": make the directories, as `mkdir -p` would.
  for (size_t slash = name.find('/', 1); slash != std::string::npos;
       slash = name.find('/', slash + 1)) {
    std::string dir = name.substr(0, slash);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::Error("cannot create directory '" + dir + "': " + strerror(errno));
    }
  }
  Status status = WriteFile(name + ".key", pair.secret_key + "\n", 0600);
  if (!status.ok()) return status;
  return WriteFile(name + ".pub", pair.public_key + "\n", 0644);
}

std::string KeyToZ85(const void* bytes32) {
  char z85[41];
  zmq_z85_encode(z85, static_cast<const uint8_t*>(bytes32), 32);
  return z85;
}

}  // namespace fanmap
