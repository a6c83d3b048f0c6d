#!/usr/bin/env bash
# Builds the .deb from an existing build tree with CPack, unpacks it into a scratch root with
# dpkg-deb -x (nothing is installed into the system) and checks what a node would get:
# binaries, man pages, examples, the Depends line, and an installed fanmap running the
# installed fanmap-worker end to end.
#   tests/package_test.sh BUILD_DIR      (BUILD_DIR = CMAKE_BINARY_DIR, holding CPackConfig.cmake)
# Exits 77 (skipped) without cpack or dpkg-deb. Nothing here depends on timing.
set -uo pipefail

build=$(cd "${1:?usage: package_test.sh BUILD_DIR}" && pwd)
for tool in cpack dpkg-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool not found"
    exit 77
  fi
done
if [[ ! -f "$build/CPackConfig.cmake" ]]; then
  echo "FAIL: $build/CPackConfig.cmake missing (not a configured build tree?)"
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

failures=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

# CPack installs the build tree into its own staging dir under -B, so the build dir is untouched.
if ! (cd "$build" && cpack -G DEB -B "$tmp/cpack" >"$tmp/cpack.log" 2>&1); then
  cat "$tmp/cpack.log"
  fail "cpack -G DEB"
  exit 1
fi
debs=("$tmp"/cpack/*.deb)
if [[ ${#debs[@]} -ne 1 || ! -f "${debs[0]}" ]]; then
  cat "$tmp/cpack.log"
  fail "cpack made exactly one .deb (got: ${debs[*]})"
  exit 1
fi
deb=${debs[0]}
pass "cpack made $(basename "$deb")"

check "package name is fanmap" test "$(dpkg-deb -f "$deb" Package)" = fanmap
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
check "Depends names libzmq5" grep -q 'libzmq5' <<<"$depends"
check "Depends names libcurl4" grep -q 'libcurl4' <<<"$depends"

root=$tmp/root
dpkg-deb -x "$deb" "$root" || { fail "dpkg-deb -x"; exit 1; }
for f in usr/bin/fanmap usr/bin/fanmap-worker; do
  check "$f is executable" test -x "$root/$f"
done
for page in fanmap fanmap-worker; do
  man_page=$root/usr/share/man/man1/$page.1
  [[ -f "$man_page" ]] || man_page=$man_page.gz  # in case a packager compresses it
  check "man page $page.1 present" test -s "$man_page"
  if command -v man >/dev/null 2>&1 && [[ -s "$man_page" ]]; then
    check "man -l $page.1 renders" bash -c \
      'MANPAGER=cat MANWIDTH=80 man -l "$1" 2>/dev/null | grep -q "$2"' _ "$man_page" "$page"
  fi
done
docs=$root/usr/share/doc/fanmap/examples
check "examples installed" test -f "$docs/README.md" -a -f "$docs/slurm/fanmap.sbatch" \
  -a -f "$docs/kubernetes/fanmap-workers.yaml"
check "example scripts keep their mode" test -x "$docs/upper.py"

check "installed fanmap --version" bash -c '"$1" --version | grep -q "0\.3\.0"' _ \
  "$root/usr/bin/fanmap"
if FANMAP_WORKER=$root/usr/bin/fanmap-worker \
    "$root/usr/bin/fanmap" -j 2 --builtin echo --output-format raw \
    < <(seq 100) >"$tmp/out" 2>"$tmp/err"; then
  check "installed fanmap + fanmap-worker echo 1..100" cmp -s "$tmp/out" <(seq 100)
else
  cat "$tmp/err"
  fail "installed fanmap run exited non-zero"
fi

if [[ $failures -ne 0 ]]; then
  echo "package_test: $failures check(s) failed"
  exit 1
fi
echo "package_test: all checks passed"
