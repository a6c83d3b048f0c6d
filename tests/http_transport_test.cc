#include "worker/http_transport.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>

#include "common/job_keys.h"

namespace fanmap {
namespace {

constexpr char kPem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

JobSpec Job(std::map<std::string, std::string> options = {}) {
  JobSpec job;
  job.kind = "http";
  job.argv = {"https://127.0.0.1:8443/v1/chat/completions"};
  job.options = std::move(options);
  return job;
}

TEST(HttpTransportTest, DefaultsToTheSystemStoreAndHttp2WhereOffered) {
  TransportOptions options;
  ASSERT_TRUE(ParseTransportOptions(Job(), Job().argv[0], &options).ok());
  EXPECT_TRUE(options.ca_pem.empty());
  EXPECT_FALSE(options.http1_only);
  EXPECT_EQ(options.host, "127.0.0.1:8443");
}

TEST(HttpTransportTest, ReadsTheCaAndTheHttpVersion) {
  TransportOptions options;
  JobSpec job = Job({{job_key::kCaCertPem, kPem}, {job_key::kHttpVersion, "1.1"}});
  ASSERT_TRUE(ParseTransportOptions(job, job.argv[0], &options).ok());
  EXPECT_EQ(options.ca_pem, kPem);
  EXPECT_TRUE(options.http1_only);
}

TEST(HttpTransportTest, RefusesACaWithoutCertificateAndUnknownVersions) {
  TransportOptions options;
  JobSpec job = Job({{job_key::kCaCertPem, "-----BEGIN PRIVATE KEY-----\nxx\n"}});
  Status status = ParseTransportOptions(job, job.argv[0], &options);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("no PEM certificate"), std::string::npos);
  // The file's content (maybe a key) is never echoed.
  EXPECT_EQ(status.message().find("xx"), std::string::npos);
  EXPECT_FALSE(CheckCaPem(std::string(kMaxCaCertBytes + 1, 'x')).ok());
  job = Job({{job_key::kHttpVersion, "3"}});
  EXPECT_FALSE(ParseTransportOptions(job, job.argv[0], &options).ok());
}

TEST(HttpTransportTest, CertificateErrorsAreToldApartFromOtherTlsFailures) {
  EXPECT_TRUE(IsCertificateError(CURLE_PEER_FAILED_VERIFICATION));
  EXPECT_TRUE(IsCertificateError(CURLE_SSL_CACERT_BADFILE));
  EXPECT_FALSE(IsCertificateError(CURLE_SSL_CONNECT_ERROR));
  EXPECT_FALSE(IsCertificateError(CURLE_COULDNT_CONNECT));
}

TEST(HttpTransportTest, CertificateErrorTextNamesTheHostAndSuggestsCacertOnlyWithoutOne) {
  TransportOptions options;
  options.host = "llm.internal:443";
  std::string text = CertificateErrorText(options, CURLE_PEER_FAILED_VERIFICATION,
                                          "SSL certificate problem: self-signed certificate");
  EXPECT_EQ(text,
            "TLS: the certificate of llm.internal:443 is not trusted: SSL certificate problem: "
            "self-signed certificate (a private CA? give its certificate with --cacert FILE)");
  options.ca_pem = kPem;
  text = CertificateErrorText(options, CURLE_PEER_FAILED_VERIFICATION, "");
  EXPECT_EQ(text.find("--cacert"), std::string::npos) << text;
  EXPECT_NE(text.find(curl_easy_strerror(CURLE_PEER_FAILED_VERIFICATION)), std::string::npos);
}

TEST(HttpTransportTest, ConnectionCapIsLiftedOnlyForHttp1Servers) {
  CURLM* multi = curl_multi_init();
  {
    HttpTransport tls;
    ASSERT_TRUE(tls.Init(multi, TransportOptions(), /*https=*/true).ok());
    EXPECT_TRUE(tls.capped());
    CURL* easy = curl_easy_init();
    EXPECT_EQ(tls.ConfigureEasy(easy), CURLE_OK);
    // A handle that has not talked to anyone says HTTP version 0: no change.
    tls.OnDone(easy);
    EXPECT_TRUE(tls.capped());
    curl_easy_cleanup(easy);
  }
  {
    HttpTransport cleartext;
    ASSERT_TRUE(cleartext.Init(multi, TransportOptions(), /*https=*/false).ok());
    EXPECT_FALSE(cleartext.capped());
  }
  {
    TransportOptions http1;
    http1.http1_only = true;
    HttpTransport tls;
    ASSERT_TRUE(tls.Init(multi, http1, /*https=*/true).ok());
    EXPECT_FALSE(tls.capped());
  }
  curl_multi_cleanup(multi);
}

}  // namespace
}  // namespace fanmap

namespace fanmap {
namespace {

TEST(HttpTransportTest, CacertGoesToAPrivateFileRemovedOnReset) {
  CURLM* multi = curl_multi_init();
  TransportOptions options;
  options.ca_pem = kPem;
  HttpTransport transport;
  ASSERT_TRUE(transport.Init(multi, options, /*https=*/true).ok());
  std::string path = transport.ca_file();
  ASSERT_FALSE(path.empty());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The PEM given, then the system's bundle: --cacert adds to the system store.
  EXPECT_GT(static_cast<size_t>(st.st_size), sizeof kPem - 1);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.rfind(kPem, 0), 0u);
  transport.Reset();
  EXPECT_NE(stat(path.c_str(), &st), 0);
  transport.Reset();  // twice is fine
  curl_multi_cleanup(multi);
}

}  // namespace
}  // namespace fanmap
