#!/usr/bin/env bash
# Builds the .deb from an existing build tree with CPack, unpacks it into a scratch root with
# dpkg-deb -x (nothing is installed into the system) and checks what a node would get:
# binaries, man pages, examples, the Depends line, and an installed fanmap running the
# installed fanmap-worker end to end. Then, as root, installs it with dpkg -i into another
# scratch root (dpkg --root), runs fanmap --version and 1,000 items with the installed
# binaries, and checks that dpkg -r leaves nothing behind.
#   tests/package_test.sh BUILD_DIR      (BUILD_DIR = CMAKE_BINARY_DIR, holding CPackConfig.cmake)
# Exits 77 (skipped) without cpack or dpkg-deb, and (after the other checks) when not root.
# Nothing here depends on timing.
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
not() { ! "$@"; }
skipped=0

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
check "Depends: runtime libraries only (no -dev package)" not grep -q -- '-dev\b' <<<"$depends"

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
if command -v python3 >/dev/null 2>&1; then
  # The package's own copy of `import fanmap`, driving the package's own binaries.
  check "import fanmap from the package runs a map" bash -c \
    'cd / && PYTHONPATH="$1" FANMAP_BIN="$2" python3 -c "
import fanmap, operator
assert fanmap.__file__.startswith(\"$1\"), fanmap.__file__
with fanmap.Executor(2) as ex:
    assert list(ex.map(operator.neg, range(50))) == [-i for i in range(50)]
"' _ "$root/usr/lib/python3/dist-packages" "$root/usr/bin/fanmap"
fi

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

# --- cmake --install into a prefix -----------------------------------------------------------
prefix=$tmp/prefix
if cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  for f in bin/fanmap bin/fanmap-worker share/man/man1/fanmap.1 share/man/man1/fanmap-worker.1 \
    share/doc/fanmap/examples/slurm/fanmap.sbatch share/doc/fanmap/examples/kubernetes/README.md; do
    check "cmake --install: $f" test -s "$prefix/$f"
  done
else
  cat "$tmp/install.log"
  fail "cmake --install --prefix"
fi

# --- dpkg -i into a scratch root, run, dpkg -r / -P ------------------------------------------
# The scratch root's dpkg database holds only the packages the .deb depends on, copied from
# this system's (a container with them installed, as apt would leave it): dpkg checks the
# Depends line against it, then installs, removes and purges files under the scratch root
# only. The installed binaries run with this system's libraries.
dpkg_installs() {
  local scratch=$tmp/scratch admin=$tmp/scratch/var/lib/dpkg dep arch
  mkdir -p "$admin/info" "$admin/updates" || return 1
  : >"$admin/available"
  : >"$admin/status"
  arch=$(dpkg --print-architecture)
  for dep in $(tr ',|' '\n\n' <<<"$depends" | sed 's/(.*)//; s/:.*//; s/[[:space:]]//g' | sort -u); do
    if ! dpkg-query -s "$dep" >>"$admin/status" 2>/dev/null; then
      fail "Depends: $dep is not installed on this system"
      continue
    fi
    echo >>"$admin/status"
    : >"$admin/info/$dep.list"
    : >"$admin/info/$dep:$arch.list"
  done
  dpkg_root() { dpkg --root="$scratch" "$@"; }
  check "dpkg -i into a scratch root" dpkg_root -i "$deb"
  check "dpkg -s: installed" bash -c 'dpkg --root="$1" -s fanmap | grep -qx "Status: install ok installed"' \
    _ "$scratch"
  dpkg_root -L fanmap >"$tmp/files" 2>&1
  check "dpkg -L lists the binaries" grep -qx /usr/bin/fanmap-worker "$tmp/files"
  check "installed fanmap --version" bash -c '"$1" --version | grep -q "0\.3\.0"' _ \
    "$scratch/usr/bin/fanmap"
  # fanmap finds fanmap-worker beside itself: the installed one.
  if env -u FANMAP_WORKER "$scratch/usr/bin/fanmap" -j 2 --builtin echo --output-format raw \
      < <(seq 1000) >"$tmp/out1000" 2>"$tmp/err1000"; then
    check "installed fanmap: 1,000 items, all in order" cmp -s "$tmp/out1000" <(seq 1000)
  else
    cat "$tmp/err1000"
    fail "installed fanmap: the 1,000-item run exited non-zero"
  fi
  check "dpkg -r" dpkg_root -r fanmap
  check "dpkg -L after -r: no file listed" not dpkg_root -L fanmap
  check "dpkg -r: no file of the package is left" \
    test -z "$(find "$scratch" -mindepth 1 -path "$scratch/var" -prune -o -print)"
  check "dpkg -P" dpkg_root -P fanmap
  check "dpkg -P: the package is unknown to dpkg" \
    test -z "$(dpkg --root="$scratch" -l fanmap 2>/dev/null | grep '^.i')"
  check "dpkg -P: no trace in its database" test -z "$(ls "$admin/info" | grep '^fanmap[.:]')"
}
if [[ $(id -u) -eq 0 ]] && command -v dpkg >/dev/null 2>&1; then
  dpkg_installs
else
  echo "SKIP: dpkg -i into a scratch root needs root (and dpkg); the other checks ran"
  skipped=1
fi

if [[ $failures -ne 0 ]]; then
  echo "package_test: $failures check(s) failed"
  exit 1
fi
if [[ $skipped -ne 0 ]]; then
  echo "package_test: SKIPPED in part (see above)"
  exit 77
fi
echo "package_test: all checks passed"
