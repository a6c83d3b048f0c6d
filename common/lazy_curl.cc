// libcurl, loaded on first use, for both binaries.
//
// Linking libcurl maps it and the thirty-odd libraries it pulls in (TLS,
// Kerberos, LDAP, SSH, RTMP...) into every process and runs their
// initialisers: about 5 MB of resident memory and some 15 ms of CPU per
// process start, in runs that never make an HTTP request. So neither
// executable is linked against libcurl: these definitions of the libcurl
// functions fanmap calls forward to libcurl.so.4, opened with dlopen the
// first time one of them is called. The coordinator calls libcurl only to
// check an --http job's URL and to name libcurl's version (--version); a
// worker calls it for an --http job (and --version). A local worker of a
// builtin, --exec or --pipe run so starts in a third of the time.
//
// Contract: each function behaves as libcurl's does. If libcurl cannot be
// loaded, the first call says so on stderr, with dlerror()'s reason, and the
// functions fail the way libcurl does when it cannot initialise or is out of
// memory (null handles, CURLE_FAILED_INIT, CURLM_INTERNAL_ERROR...), which
// their callers already turn into errors; the strerror functions name the
// missing library.
//
// The variadic setters forward their one argument by the type libcurl reads
// for the option (curl.h numbers options by type: long below
// CURLOPTTYPE_OBJECTPOINT, then pointers, function pointers, curl_off_t,
// blobs), as libcurl's own type checks do.
//
// The executables do not export these symbols (they are not linked with
// --export-dynamic), so libcurl's own calls, once it is loaded, still bind to
// libcurl's functions, not to these. The libraries' tests link libcurl
// itself and not this file.

// The definitions below must not be libcurl's type-checking macros.
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>

#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace {

// The SONAME of libcurl 7.16 and later (Debian's libcurl4; the GnuTLS flavour
// is libcurl-gnutls.so.4, which this build is not compiled against).
constexpr char kLibcurl[] = "libcurl.so.4";

// X(name) for every libcurl function forwarded here.
// clang-format off
#define FANMAP_CURL_FUNCTIONS(X)                                                      \
  X(curl_global_init) X(curl_version_info) X(curl_free)                               \
  X(curl_slist_append) X(curl_slist_free_all)                                         \
  X(curl_url) X(curl_url_set) X(curl_url_get) X(curl_url_cleanup)                     \
  X(curl_easy_init) X(curl_easy_setopt) X(curl_easy_getinfo) X(curl_easy_header)     \
  X(curl_easy_cleanup) X(curl_easy_strerror)                                          \
  X(curl_multi_init) X(curl_multi_setopt) X(curl_multi_add_handle)                    \
  X(curl_multi_remove_handle) X(curl_multi_socket_action) X(curl_multi_info_read)     \
  X(curl_multi_cleanup) X(curl_multi_strerror)                                        \
  X(curl_share_init) X(curl_share_setopt) X(curl_share_cleanup)
// clang-format on

struct Libcurl {
#define FANMAP_CURL_MEMBER(name) decltype(&::name) name = nullptr;
  FANMAP_CURL_FUNCTIONS(FANMAP_CURL_MEMBER)
#undef FANMAP_CURL_MEMBER
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
      std::fprintf(stderr, "%s: cannot load %s: %s\n", program_invocation_short_name, kLibcurl,
                   dlerror());
      return;
    }
    Libcurl c;
    bool bound = true;
#define FANMAP_CURL_BIND(name) bound = bound && Bind(lib, #name, &c.name);
    FANMAP_CURL_FUNCTIONS(FANMAP_CURL_BIND)
#undef FANMAP_CURL_BIND
    if (!bound) {
      std::fprintf(stderr, "%s: %s lacks a function fanmap needs (libcurl 7.84 or later)\n",
                   program_invocation_short_name, kLibcurl);
      return;
    }
    c.loaded = true;
    curl = c;
  });
  return curl;
}

// Calls `set(handle, option, value)` with the option's value read from `args`
// as the type libcurl reads it (CURLOPT_* and CURLMOPT_* share the numbering).
template <typename Code, typename Handle, typename Option>
Code ForwardOption(Code (*set)(Handle*, Option, ...), Handle* handle, Option option, va_list args) {
  const long number = static_cast<long>(option);
  if (number < CURLOPTTYPE_OBJECTPOINT) return set(handle, option, va_arg(args, long));
  if (number < CURLOPTTYPE_FUNCTIONPOINT) return set(handle, option, va_arg(args, void*));
  if (number < CURLOPTTYPE_OFF_T) return set(handle, option, va_arg(args, void (*)()));
  if (number < CURLOPTTYPE_BLOB) return set(handle, option, va_arg(args, curl_off_t));
  return set(handle, option, va_arg(args, void*));
}

constexpr char kNotLoaded[] = "libcurl (libcurl.so.4) could not be loaded";

}  // namespace

extern "C" {

CURLcode curl_global_init(long flags) {
  return Curl().loaded ? Curl().curl_global_init(flags) : CURLE_FAILED_INIT;
}

curl_version_info_data* curl_version_info(CURLversion age) {
  return Curl().loaded ? Curl().curl_version_info(age) : nullptr;
}

void curl_free(void* p) {
  if (Curl().loaded) Curl().curl_free(p);
}

curl_slist* curl_slist_append(curl_slist* list, const char* text) {
  return Curl().loaded ? Curl().curl_slist_append(list, text) : nullptr;
}

void curl_slist_free_all(curl_slist* list) {
  if (Curl().loaded) Curl().curl_slist_free_all(list);
}

CURLU* curl_url(void) { return Curl().loaded ? Curl().curl_url() : nullptr; }

CURLUcode curl_url_set(CURLU* handle, CURLUPart what, const char* part, unsigned int flags) {
  return Curl().loaded ? Curl().curl_url_set(handle, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

CURLUcode curl_url_get(CURLU* handle, CURLUPart what, char** part, unsigned int flags) {
  return Curl().loaded ? Curl().curl_url_get(handle, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

void curl_url_cleanup(CURLU* handle) {
  if (Curl().loaded) Curl().curl_url_cleanup(handle);
}

CURL* curl_easy_init(void) { return Curl().loaded ? Curl().curl_easy_init() : nullptr; }

CURLcode curl_easy_setopt(CURL* handle, CURLoption option, ...) {
  if (!Curl().loaded) return CURLE_FAILED_INIT;
  va_list args;
  va_start(args, option);
  CURLcode code = ForwardOption(Curl().curl_easy_setopt, handle, option, args);
  va_end(args);
  return code;
}

CURLcode curl_easy_getinfo(CURL* handle, CURLINFO info, ...) {
  if (!Curl().loaded) return CURLE_FAILED_INIT;
  // Every CURLINFO_* takes one pointer to where the answer goes.
  va_list args;
  va_start(args, info);
  CURLcode code = Curl().curl_easy_getinfo(handle, info, va_arg(args, void*));
  va_end(args);
  return code;
}

CURLHcode curl_easy_header(CURL* handle, const char* name, size_t index, unsigned int origin,
                           int request, curl_header** header) {
  return Curl().loaded ? Curl().curl_easy_header(handle, name, index, origin, request, header)
                       : CURLHE_NOT_BUILT_IN;
}

void curl_easy_cleanup(CURL* handle) {
  if (Curl().loaded) Curl().curl_easy_cleanup(handle);
}

const char* curl_easy_strerror(CURLcode code) {
  return Curl().loaded ? Curl().curl_easy_strerror(code) : kNotLoaded;
}

CURLM* curl_multi_init(void) { return Curl().loaded ? Curl().curl_multi_init() : nullptr; }

CURLMcode curl_multi_setopt(CURLM* handle, CURLMoption option, ...) {
  if (!Curl().loaded) return CURLM_INTERNAL_ERROR;
  va_list args;
  va_start(args, option);
  CURLMcode code = ForwardOption(Curl().curl_multi_setopt, handle, option, args);
  va_end(args);
  return code;
}

CURLMcode curl_multi_add_handle(CURLM* multi, CURL* easy) {
  return Curl().loaded ? Curl().curl_multi_add_handle(multi, easy) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_remove_handle(CURLM* multi, CURL* easy) {
  return Curl().loaded ? Curl().curl_multi_remove_handle(multi, easy) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_socket_action(CURLM* multi, curl_socket_t socket, int mask, int* running) {
  return Curl().loaded ? Curl().curl_multi_socket_action(multi, socket, mask, running)
                       : CURLM_INTERNAL_ERROR;
}

CURLMsg* curl_multi_info_read(CURLM* multi, int* queued) {
  return Curl().loaded ? Curl().curl_multi_info_read(multi, queued) : nullptr;
}

CURLMcode curl_multi_cleanup(CURLM* multi) {
  return Curl().loaded ? Curl().curl_multi_cleanup(multi) : CURLM_INTERNAL_ERROR;
}

const char* curl_multi_strerror(CURLMcode code) {
  return Curl().loaded ? Curl().curl_multi_strerror(code) : kNotLoaded;
}

CURLSH* curl_share_init(void) { return Curl().loaded ? Curl().curl_share_init() : nullptr; }

CURLSHcode curl_share_setopt(CURLSH* share, CURLSHoption option, ...) {
  if (!Curl().loaded) return CURLSHE_NOT_BUILT_IN;
  va_list args;
  va_start(args, option);
  CURLSHcode code;
  // curl_share_setopt's options are not numbered by type.
  switch (option) {
    case CURLSHOPT_SHARE:
    case CURLSHOPT_UNSHARE:
      code = Curl().curl_share_setopt(share, option, va_arg(args, int));
      break;
    case CURLSHOPT_LOCKFUNC:
    case CURLSHOPT_UNLOCKFUNC:
      code = Curl().curl_share_setopt(share, option, va_arg(args, void (*)()));
      break;
    default:
      code = Curl().curl_share_setopt(share, option, va_arg(args, void*));
  }
  va_end(args);
  return code;
}

CURLSHcode curl_share_cleanup(CURLSH* share) {
  return Curl().loaded ? Curl().curl_share_cleanup(share) : CURLSHE_NOT_BUILT_IN;
}

}  // extern "C"
