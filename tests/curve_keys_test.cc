#include "common/curve_keys.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

namespace fanmap {
namespace {

class CurveKeysTest : public ::testing::Test {
 protected:
  CurveKeysTest() {
    char tmpl[] = "/tmp/fanmap-keys-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~CurveKeysTest() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string Path(const std::string& name) { return dir_ + "/" + name; }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(Path(name)) << text;
  }
  CurveKeyPair Generate() {
    CurveKeyPair pair;
    EXPECT_TRUE(GenerateKeyPair(&pair).ok());
    return pair;
  }
  // A key pair whose public key contains '#', which Z85 allows.
  CurveKeyPair GenerateWithHash() {
    for (int i = 0; i < 10000; ++i) {
      CurveKeyPair pair = Generate();
      if (pair.public_key.find('#') != std::string::npos) return pair;
    }
    ADD_FAILURE() << "no key with '#' in 10000 tries";
    return Generate();
  }

  std::string dir_;
};

TEST_F(CurveKeysTest, GeneratedKeysAreZ85AndTheSecretGivesThePublic) {
  CurveKeyPair pair = Generate();
  EXPECT_TRUE(IsZ85Key(pair.public_key));
  EXPECT_TRUE(IsZ85Key(pair.secret_key));
  ASSERT_TRUE(WriteKeyPair(Path("k"), pair).ok());
  CurveKeyPair read;
  ASSERT_TRUE(ReadSecretKey(Path("k.key"), &read).ok());
  EXPECT_EQ(read.public_key, pair.public_key);
  struct stat st;
  ASSERT_EQ(stat(Path("k.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(WriteKeyPair(Path("k"), pair).ok()) << "must not overwrite";
}

TEST_F(CurveKeysTest, RejectsWhatIsNotAKey) {
  EXPECT_FALSE(IsZ85Key(""));
  EXPECT_FALSE(IsZ85Key(std::string(39, 'a')));
  EXPECT_FALSE(IsZ85Key(std::string(40, '"')));  // not in the Z85 alphabet
  Write("bad.key", "not a key\n");
  CurveKeyPair pair;
  Status status = ReadSecretKey(Path("bad.key"), &pair);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("bad.key"), std::string::npos);
  std::string key;
  EXPECT_FALSE(ReadPublicKey(Path("missing.pub"), &key).ok());
}

TEST_F(CurveKeysTest, PublicKeyMayBeGivenInlineOrAsAFile) {
  CurveKeyPair pair = Generate();
  std::string key;
  ASSERT_TRUE(ReadPublicKey(pair.public_key, &key).ok());
  EXPECT_EQ(key, pair.public_key);
  Write("p.pub", pair.public_key + "\n");
  ASSERT_TRUE(ReadPublicKey(Path("p.pub"), &key).ok());
  EXPECT_EQ(key, pair.public_key);
}

TEST_F(CurveKeysTest, AuthorizedKeysFileKeepsKeysContainingHashAndSkipsComments) {
  CurveKeyPair with_hash = GenerateWithHash();
  CurveKeyPair other = Generate();
  Write("authorized", "# workers\n\n" + with_hash.public_key + "\n  " + other.public_key +
                          "  \n   # indented comment\n");
  std::set<std::string> keys;
  Status status = ReadAuthorizedKeys(Path("authorized"), &keys);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(keys, (std::set<std::string>{with_hash.public_key, other.public_key}));
}

TEST_F(CurveKeysTest, AuthorizedKeysFileNamesABadLine) {
  Write("authorized", Generate().public_key + "\nnonsense\n");
  std::set<std::string> keys;
  Status status = ReadAuthorizedKeys(Path("authorized"), &keys);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("line 2"), std::string::npos) << status.message();
}

TEST_F(CurveKeysTest, AuthorizedKeysFolderReadsEveryPubFile) {
  mkdir(Path("workers").c_str(), 0755);
  CurveKeyPair a = Generate(), b = Generate();
  ASSERT_TRUE(WriteKeyPair(Path("workers/a"), a).ok());
  ASSERT_TRUE(WriteKeyPair(Path("workers/b"), b).ok());
  Write("workers/notes.txt", "ignored\n");
  std::set<std::string> keys;
  ASSERT_TRUE(ReadAuthorizedKeys(Path("workers"), &keys).ok());
  EXPECT_EQ(keys, (std::set<std::string>{a.public_key, b.public_key}));
}

}  // namespace
}  // namespace fanmap
