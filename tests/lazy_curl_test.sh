#!/usr/bin/env bash
# Both executables load libcurl only when they need it (common/lazy_curl.cc): a run without
# --http never maps libcurl (nor the TLS, Kerberos, LDAP... libraries it pulls in, about 5 MB
# of resident memory and some 15 ms of start-up per process) in the coordinator or in its
# workers, while --version still names libcurl's version, an --http job's URL is still
# checked by libcurl before any worker starts, and an --http run's workers make requests.
#   tests/lazy_curl_test.sh BIN_DIR      (BIN_DIR holds fanmap and fanmap-worker)
# The dynamic loader's own log (LD_DEBUG=files, one file per process) says what each
# process loaded, dlopen included.
set -uo pipefail

bin=$(cd "${1:?usage: lazy_curl_test.sh BIN_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-lazy-curl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*"; failed=1; }

# The log of the process that ran PROGRAM (a path), among those in folder DIR.
log_of() {
  grep -l "initialize program: $2\$" "$1"/ld.* 2>/dev/null | head -n 1
}

# The link: neither executable needs libcurl.
for program in fanmap fanmap-worker; do
  if readelf -d "$bin/$program" | grep -q 'NEEDED.*libcurl'; then
    fail "$program is linked against libcurl: $(readelf -d "$bin/$program" | grep libcurl)"
  fi
done
readelf -d "$bin/fanmap-worker" | grep -q 'NEEDED.*libzmq' ||
  fail "fanmap-worker is not linked against libzmq (did the check above read its links?)"

# A builtin run, with a local worker: neither the worker nor the coordinator maps libcurl.
mkdir "$tmp/run"
seq 1 100 > "$tmp/in"
LD_DEBUG=files LD_DEBUG_OUTPUT="$tmp/run/ld" "$bin/fanmap" -j 1 --builtin echo \
  --output-format raw -i "$tmp/in" -o "$tmp/out" 2> "$tmp/err" || fail "the run failed: $(cat "$tmp/err")"
cmp -s "$tmp/in" "$tmp/out" || fail "the run's output is not its input"
coord=$(log_of "$tmp/run" "$bin/fanmap")
worker=$(log_of "$tmp/run" "$bin/fanmap-worker")
if [[ -z $coord || -z $worker ]]; then
  fail "no loader log for the coordinator or the worker in $tmp/run ($(ls "$tmp/run"))"
else
  for log in "$coord" "$worker"; do
    if grep -q 'libcurl' "$log"; then
      fail "a process of a builtin run loaded libcurl: $(grep -m1 libcurl "$log") ($log)"
    fi
    grep -q 'file=libzmq' "$log" || fail "$log shows no libzmq: the log proves nothing"
  done
fi

# A good URL passes the check, and the --http run's worker loads libcurl and makes the
# request: the server is absent, so the item fails with libcurl's own connection error.
mkdir "$tmp/http"
out=$(echo hi | LD_DEBUG=files LD_DEBUG_OUTPUT="$tmp/http/ld" "$bin/fanmap" -j 1 \
  --http 'http://127.0.0.1:9/v1/chat/completions' --chat m --retries 0 --timeout 60 2>&1)
[[ $out == *'"ok":false'* && $out == *'onnect'* ]] ||
  fail "an --http run to a closed port gave no connection error record: $out"
worker=$(log_of "$tmp/http" "$bin/fanmap-worker")
if [[ -z $worker ]]; then
  fail "no loader log for the --http run's worker in $tmp/http ($(ls "$tmp/http"))"
else
  grep -q 'file=libcurl' "$worker" || fail "the --http run's worker did not load libcurl"
fi
[[ $("$bin/fanmap-worker" --version) =~ libcurl\ [0-9]+\.[0-9]+\.[0-9]+ ]] ||
  fail "fanmap-worker --version names no libcurl version"

# --version loads it on demand and names its version.
version=$("$bin/fanmap" --version) || fail "fanmap --version failed"
[[ $version =~ libcurl\ [0-9]+\.[0-9]+\.[0-9]+ ]] || fail "--version names no libcurl version: $version"

# An --http job's URL is checked (by libcurl) before any worker starts: exit 2, clear error.
for url in 'ftp://example.invalid/' 'http://' 'http:// spaced'; do
  out=$(echo hi | "$bin/fanmap" -j 1 --http "$url" --chat m 2>&1)
  rc=$?
  [[ $rc -eq 2 ]] || fail "--http '$url': exit status $rc, expected 2 (usage): $out"
  [[ $out == *"URL"* ]] ||
    fail "--http '$url': the error does not name the URL: $out"
done
[[ $failed -eq 0 ]] && echo "PASS"
exit "$failed"
