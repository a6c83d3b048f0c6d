// CurveZMQ keys: generating them, and reading the files `fanmap keygen`
// writes.
//
// Files hold one 40-character Z85 key and a newline: NAME.key the secret key
// (mode 0600), NAME.pub the public key. An authorized-keys file lists public
// keys, one per line (a line starting with '#' is a comment); a folder of them is every *.pub
// file in it.
#ifndef FANMAP_COMMON_CURVE_KEYS_H_
#define FANMAP_COMMON_CURVE_KEYS_H_

#include <set>
#include <string>

#include "common/status.h"

namespace fanmap {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// True if `key` is 40 characters of valid Z85 that decode to 32 bytes.
bool IsZ85Key(const std::string& key);

Status GenerateKeyPair(CurveKeyPair* out);

// Reads a secret key file and derives its public key.
Status ReadSecretKey(const std::string& path, CurveKeyPair* out);

// `spec` is a file holding a Z85 public key, or (if no such file exists) the
// key itself.
Status ReadPublicKey(const std::string& spec, std::string* out);

// Reads an authorized-keys file or folder into `keys` (Z85).
Status ReadAuthorizedKeys(const std::string& path, std::set<std::string>* keys);

// Writes NAME.key (0600) and NAME.pub; refuses to overwrite either.
Status WriteKeyPair(const std::string& name, const CurveKeyPair& pair);

// Z85 of 32 raw key bytes (as ZAP hands them over).
std::string KeyToZ85(const void* bytes32);

}  // namespace fanmap

#endif  // FANMAP_COMMON_CURVE_KEYS_H_
