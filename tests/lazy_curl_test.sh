#!/usr/bin/env bash
# The coordinator loads libcurl only when it needs it (coordinator/lazy_curl.cc): a run
# without --http never maps libcurl (nor the TLS, Kerberos, LDAP... libraries it pulls in,
# about 5 MB of resident memory), while --version still names libcurl's version and an
# --http job's URL is still checked by libcurl before any worker starts.
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

# The link: fanmap does not need libcurl, fanmap-worker does.
if readelf -d "$bin/fanmap" | grep -q 'NEEDED.*libcurl'; then
  fail "fanmap is linked against libcurl: $(readelf -d "$bin/fanmap" | grep libcurl)"
fi
readelf -d "$bin/fanmap-worker" | grep -q 'NEEDED.*libcurl' ||
  fail "fanmap-worker is not linked against libcurl (did the check above test anything?)"

# A builtin run, with a local worker: the worker maps libcurl, the coordinator does not.
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
  if grep -q 'libcurl' "$coord"; then
    fail "the coordinator of a builtin run loaded libcurl: $(grep -m1 libcurl "$coord")"
  fi
  grep -q 'file=libcurl' "$worker" || fail "the worker's log shows no libcurl: the log proves nothing"
fi

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
# A good URL passes the check (the job starts; the server is absent, so each item fails
# with a connection error, and the run says so).
out=$(echo hi | "$bin/fanmap" -j 1 --http 'http://127.0.0.1:9/v1/chat/completions' \
  --chat m --retries 0 --timeout 5 2>&1)
[[ $out == *'"ok":false'* ]] || fail "a good URL was refused or gave no record: $out"

[[ $failed -eq 0 ]] && echo "PASS"
exit "$failed"
