#include "coordinator/item_fingerprint.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "common/job_keys.h"

namespace fanmap {
namespace {

JobSpec EchoJob() {
  JobSpec job;
  job.kind = "builtin";
  job.argv = {"echo"};
  job.options[job_key::kInputFormat] = "lines";
  return job;
}

JobSpec ChatJob() {
  JobSpec job;
  job.kind = "http";
  job.argv = {"http://127.0.0.1:8000/v1/chat/completions"};
  job.options[job_key::kMethod] = "POST";
  job.options[job_key::kHeaders] = "X-Team: a";
  job.options[job_key::kChatModel] = "m";
  job.options[job_key::kSystem] = "be brief";
  job.options[job_key::kMaxTokens] = "200";
  job.options[job_key::kTemperature] = "0.500000";
  job.options[job_key::kInputFormat] = "lines";
  return job;
}

uint64_t Fingerprint(const JobSpec& job, const std::string& item) {
  return ItemFingerprinter(job).Fingerprint(item);
}

TEST(ItemFingerprintTest, Fnv1a64MatchesPublishedVectors) {
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ull);
  EXPECT_EQ(Fnv1a64("bar", Fnv1a64("foo")), Fnv1a64("foobar"));
}

TEST(ItemFingerprintTest, IdentityIsCanonicalText) {
  EXPECT_EQ(JobIdentity(EchoJob()),
            "fanmap job 1\nkind 7:builtin\nargv 1\n4:echo\ninput_format 5:lines\n");
}

TEST(ItemFingerprintTest, FingerprintIsStable) {
  // FNV-1a 64 of the identity above, a 0x00 byte and "hello": a fingerprint
  // written by any build of fanmap must be read the same by any other.
  EXPECT_EQ(Fingerprint(EchoJob(), "hello"), 0x8e6cc5433de9cad0ull);
  std::string identity = JobIdentity(EchoJob());
  identity.push_back('\0');
  EXPECT_EQ(Fingerprint(EchoJob(), "hello"), Fnv1a64(identity + "hello"));
}

TEST(ItemFingerprintTest, DiffersForDifferentItems) {
  ItemFingerprinter fingerprinter(EchoJob());
  EXPECT_NE(fingerprinter.Fingerprint("1"), fingerprinter.Fingerprint("2"));
  EXPECT_NE(fingerprinter.Fingerprint(""), fingerprinter.Fingerprint(std::string(1, '\0')));
  EXPECT_NE(fingerprinter.Fingerprint("a"), fingerprinter.Fingerprint("a "));
  EXPECT_EQ(fingerprinter.Fingerprint("same"), fingerprinter.Fingerprint("same"));
}

TEST(ItemFingerprintTest, DiffersForDifferentKindOrArgv) {
  JobSpec job = EchoJob();
  uint64_t base = Fingerprint(job, "x");
  JobSpec kind = job;
  kind.kind = "pipe";
  EXPECT_NE(Fingerprint(kind, "x"), base);
  JobSpec builtin = job;
  builtin.argv = {"sleep:1"};
  EXPECT_NE(Fingerprint(builtin, "x"), base);
  // The same words split differently are a different command.
  JobSpec one;
  one.kind = "exec";
  one.argv = {"echo a", "b"};
  JobSpec two = one;
  two.argv = {"echo", "a b"};
  JobSpec three = one;
  three.argv = {"echo", "a", "b"};
  EXPECT_NE(Fingerprint(one, "x"), Fingerprint(two, "x"));
  EXPECT_NE(Fingerprint(two, "x"), Fingerprint(three, "x"));
  EXPECT_NE(Fingerprint(one, "x"), Fingerprint(three, "x"));
}

TEST(ItemFingerprintTest, ItemCannotImitateAnotherJob) {
  // The identity is length-prefixed and ends in 0x00: moving bytes between
  // the argv and the item changes the fingerprint.
  JobSpec a = EchoJob();
  a.kind = "exec";
  a.argv = {"echo", "x"};
  JobSpec b = a;
  b.argv = {"echo"};
  EXPECT_NE(Fingerprint(a, ""), Fingerprint(b, "x"));
}

TEST(ItemFingerprintTest, DiffersForEachOptionThatDecidesResults) {
  JobSpec job = ChatJob();
  uint64_t base = Fingerprint(job, "prompt");
  for (const char* key :
       {job_key::kMethod, job_key::kHeaders, job_key::kChatModel, job_key::kSystem,
        job_key::kMaxTokens, job_key::kTemperature, job_key::kInputFormat}) {
    JobSpec changed = job;
    changed.options[key] += "!";
    EXPECT_NE(Fingerprint(changed, "prompt"), base) << key;
    JobSpec removed = job;
    removed.options.erase(key);
    EXPECT_NE(Fingerprint(removed, "prompt"), base) << key;
  }
}

TEST(ItemFingerprintTest, DiffersForEachParallelOptionThatDecidesResults) {
  JobSpec job = EchoJob();
  uint64_t base = Fingerprint(job, "item");
  for (const char* key : {job_key::kArgTable, job_key::kReplaceStr, job_key::kContextReplace,
                          job_key::kTag, job_key::kDryRun}) {
    JobSpec changed = job;
    changed.options[key] = "1";
    EXPECT_NE(Fingerprint(changed, "item"), base) << key;
  }
  JobSpec logged = job;
  logged.options[job_key::kJoblog] = "1";  // adds fields, changes no result
  EXPECT_EQ(Fingerprint(logged, "item"), base);
}

TEST(ItemFingerprintTest, JsonPipeAnswersChangeTheFingerprint) {
  JobSpec job;
  job.kind = "pipe";
  job.argv = {"python3 -m fanmap.serve mod:f"};
  job.options[job_key::kInputFormat] = "lines";
  // The default format is no option at all: files written before
  // --pipe-answers existed keep their fingerprints.
  EXPECT_EQ(JobIdentity(job),
            "fanmap job 1\nkind 4:pipe\nargv 1\n29:python3 -m fanmap.serve mod:f\n"
            "input_format 5:lines\n");
  JobSpec json = job;
  json.options[job_key::kPipeAnswers] = "json";
  EXPECT_NE(Fingerprint(json, "item"), Fingerprint(job, "item"));
}

TEST(ItemFingerprintTest, SameForOptionsThatDoNotDecideResults) {
  JobSpec job = ChatJob();
  uint64_t base = Fingerprint(job, "prompt");
  JobSpec other = job;
  other.run_id = "0123456789abcdef0123456789abcdef";
  other.default_slots = 64;
  other.options[job_key::kApiKey] = "sk-new";
  other.options[job_key::kTimeoutMs] = "30000";
  other.options[job_key::kLivenessMs] = "5000";
  other.options["some_future_key"] = "1";
  EXPECT_EQ(Fingerprint(other, "prompt"), base);
  EXPECT_EQ(JobIdentity(other), JobIdentity(job));
}

TEST(ItemFingerprintTest, HexIsSixteenLowercaseDigits) {
  EXPECT_EQ(FingerprintHex(0), "0000000000000000");
  EXPECT_EQ(FingerprintHex(0x8e6cc5433de9cad0ull), "8e6cc5433de9cad0");
  EXPECT_EQ(FingerprintHex(UINT64_MAX), "ffffffffffffffff");
  std::string out = "x";
  AppendFingerprintHex(0xabcull, &out);
  EXPECT_EQ(out, "x0000000000000abc");
}

TEST(ItemFingerprintTest, ParsesOnlyItsOwnHex) {
  uint64_t value = 7;
  EXPECT_TRUE(ParseFingerprintHex("8e6cc5433de9cad0", &value));
  EXPECT_EQ(value, 0x8e6cc5433de9cad0ull);
  EXPECT_TRUE(ParseFingerprintHex("ffffffffffffffff", &value));
  EXPECT_EQ(value, UINT64_MAX);
  for (const char* bad : {"", "8e6cc5433de9cad", "8e6cc5433de9cad00", "8E6CC5433DE9CAD0",
                          "8e6cc5433de9cadg", " 8e6cc5433de9cad", "0x6cc5433de9cad0"}) {
    value = 7;
    EXPECT_FALSE(ParseFingerprintHex(bad, &value)) << bad;
    EXPECT_EQ(value, 7u) << bad;
  }
}

TEST(ItemFingerprintTest, RoundTripsThroughHex) {
  ItemFingerprinter fingerprinter(ChatJob());
  for (const char* item : {"", "a", "{\"k\":[1,2]}", "\xff\xfe"}) {
    uint64_t fingerprint = fingerprinter.Fingerprint(item);
    uint64_t parsed = 0;
    ASSERT_TRUE(ParseFingerprintHex(FingerprintHex(fingerprint), &parsed));
    EXPECT_EQ(parsed, fingerprint);
  }
}

}  // namespace
}  // namespace fanmap
