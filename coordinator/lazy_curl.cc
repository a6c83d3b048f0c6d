// libcurl for the coordinator, loaded on first use.
//
// The coordinator calls libcurl only to check an --http job's URL (the code it
// shares with the workers, worker/http_request.cc) and to name libcurl's
// version (--version). Linking libcurl would map it and the twenty-odd
// libraries it pulls in (TLS, Kerberos, LDAP, SSH, RTMP...) into every run and
// run their initialisers: about 5 MB of the coordinator's resident memory, a
// quarter of it, in runs that never make an HTTP request. So the fanmap binary
// is linked without libcurl, and these definitions of the few libcurl
// functions that shared code calls forward to libcurl.so.4, opened with
// dlopen the first time one of them is called. (fanmap-worker links libcurl
// as usual: it makes the requests.)
//
// Contract: each function behaves as libcurl's does. If libcurl cannot be
// loaded, the first call says so on stderr, with dlerror()'s reason, and the
// functions fail the way libcurl does when it is out of memory (null handle,
// CURLUE_OUT_OF_MEMORY, null version info), which their callers already turn
// into errors; curl_easy_strerror() names the missing library.
//
// The executable does not export these symbols (it is not linked with
// --export-dynamic), so libcurl's own calls, once it is loaded, still bind to
// libcurl's functions, not to these.

#include <curl/curl.h>
#include <dlfcn.h>

#include <cstdio>
#include <mutex>

namespace {

// The SONAME of libcurl 7.16 and later (Debian's libcurl4; the GnuTLS flavour
// is libcurl-gnutls.so.4, which this build does not link against).
constexpr char kLibcurl[] = "libcurl.so.4";

struct Libcurl {
  decltype(&::curl_url) url = nullptr;
  decltype(&::curl_url_set) url_set = nullptr;
  decltype(&::curl_url_get) url_get = nullptr;
  decltype(&::curl_url_cleanup) url_cleanup = nullptr;
  decltype(&::curl_free) free = nullptr;
  decltype(&::curl_easy_strerror) easy_strerror = nullptr;
  decltype(&::curl_version_info) version_info = nullptr;
  bool loaded = false;
};

template <typename F>
bool Bind(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

const Libcurl& Curl() {
  static Libcurl curl;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = dlopen(kLibcurl, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      std::fprintf(stderr, "fanmap: cannot load %s: %s\n", kLibcurl, dlerror());
      return;
    }
    Libcurl c;
    c.loaded = Bind(lib, "curl_url", &c.url) && Bind(lib, "curl_url_set", &c.url_set) &&
               Bind(lib, "curl_url_get", &c.url_get) &&
               Bind(lib, "curl_url_cleanup", &c.url_cleanup) && Bind(lib, "curl_free", &c.free) &&
               Bind(lib, "curl_easy_strerror", &c.easy_strerror) &&
               Bind(lib, "curl_version_info", &c.version_info);
    if (!c.loaded) {
      std::fprintf(stderr, "fanmap: %s lacks a function fanmap needs (libcurl 7.62 or later)\n",
                   kLibcurl);
      return;
    }
    curl = c;
  });
  return curl;
}

}  // namespace

extern "C" {

CURLU* curl_url(void) { return Curl().loaded ? Curl().url() : nullptr; }

CURLUcode curl_url_set(CURLU* handle, CURLUPart what, const char* part, unsigned int flags) {
  return Curl().loaded ? Curl().url_set(handle, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

CURLUcode curl_url_get(CURLU* handle, CURLUPart what, char** part, unsigned int flags) {
  return Curl().loaded ? Curl().url_get(handle, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

void curl_url_cleanup(CURLU* handle) {
  if (Curl().loaded) Curl().url_cleanup(handle);
}

void curl_free(void* p) {
  if (Curl().loaded) Curl().free(p);
}

const char* curl_easy_strerror(CURLcode code) {
  return Curl().loaded ? Curl().easy_strerror(code) : "libcurl could not be loaded";
}

curl_version_info_data* curl_version_info(CURLversion age) {
  return Curl().loaded ? Curl().version_info(age) : nullptr;
}

}  // extern "C"
