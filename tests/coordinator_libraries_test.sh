#!/usr/bin/env bash
# The coordinator serves its status view (--status) with Boost.Beast, header-only: no run,
# with or without --status, loads an HTTP server library nor the TLS and compression ones
# such a library pulls in (libssl, libcrypto, brotli, zlib: about 5 MB of resident memory).
#   tests/coordinator_libraries_test.sh BIN_DIR      (BIN_DIR holds fanmap and fanmap-worker)
# The dynamic loader's own log (LD_DEBUG=files, one file per process) says what each
# process loaded, dlopen included.
set -uo pipefail

bin=$(cd "${1:?usage: coordinator_libraries_test.sh BIN_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-libraries.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*"; failed=1; }
unwanted='libcpp-httplib|libssl\.|libcrypto\.|libbrotli|libz\.'

if readelf -d "$bin/fanmap" | grep -Eq "NEEDED.*($unwanted)"; then
  fail "fanmap is linked against: $(readelf -d "$bin/fanmap" | grep -E "$unwanted")"
fi

# A builtin run with the status view on: the coordinator maps none of them.
mkdir "$tmp/run"
seq 1 100 > "$tmp/in"
LD_DEBUG=files LD_DEBUG_OUTPUT="$tmp/run/ld" "$bin/fanmap" -j 1 --status 127.0.0.1:0 \
  --builtin echo --output-format raw -i "$tmp/in" -o "$tmp/out" 2> "$tmp/err" ||
  fail "the run failed: $(cat "$tmp/err")"
cmp -s "$tmp/in" "$tmp/out" || fail "the run's output is not its input"
coord=$(grep -l "initialize program: $bin/fanmap\$" "$tmp/run"/ld.* 2>/dev/null | head -n 1)
if [[ -z $coord ]]; then
  fail "no loader log for the coordinator in $tmp/run ($(ls "$tmp/run"))"
else
  grep -q 'file=libzmq' "$coord" || fail "the coordinator's log shows no libzmq: it proves nothing"
  if grep -Eq "file=($unwanted)" "$coord"; then
    fail "the coordinator loaded: $(grep -Eo "file=($unwanted)[^ ]*" "$coord" | sort -u | tr '\n' ' ')"
  fi
fi

[[ $failed -eq 0 ]] && echo "PASS"
exit "$failed"
