#!/usr/bin/env bash
# `pip install --no-index --no-build-isolation ./python` into a fresh venv, offline, for
# Debian's python3 and for the python3 first on PATH (pyenv) when it is another one; then the
# installed package (not the checkout) runs a map on real fanmap workers from another folder.
#   install_test.sh BIN_DIR
set -euo pipefail
bin_dir=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

interpreters=(/usr/bin/python3)
other=$(command -v python3 || true)
if [[ -n $other ]]; then
  other=$("$other" -c 'import sys; print(sys.executable)')
  [[ $other != /usr/bin/python3* ]] && interpreters+=("$other")
fi

for py in "${interpreters[@]}"; do
  venv=$scratch/venv-$(basename "$(dirname "$(dirname "$py")")")
  "$py" -m venv "$venv"
  # The build must not leave anything in the checkout (it may be read-only).
  PIP_NO_INDEX=1 "$venv/bin/pip" install -q --no-index --no-build-isolation "$root/python"
  cat >"$scratch/job.py" <<'PY'
import os, sys
import fanmap
assert fanmap.__file__.startswith(sys.prefix), fanmap.__file__
with fanmap.Executor(2) as ex:
    got = list(ex.map(os.path.basename, ["/a/x", "/b/y", "/c/z"]))
assert got == ["x", "y", "z"], got
print(sys.version.split()[0], "ok")
PY
  (cd "$scratch" && env -u PYTHONPATH FANMAP_BIN="$bin_dir/fanmap" "$venv/bin/python" job.py)
done
