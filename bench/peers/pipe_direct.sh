#!/usr/bin/env bash
# The pipe workload without fanmap: one CMD process per input part, all at once, each fed
# its part directly; their outputs are joined in order into OUT.
#
#   bench/peers/pipe_direct.sh CMD OUT PART...
#
# e.g. split -n l/2 -d items.txt part. && bench/peers/pipe_direct.sh \
#        'python3 examples/upper.py' out.txt part.00 part.01
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n '2,8p' "$0" >&2; exit 2; }
cmd=$1 out=$2
shift 2
pids=() outs=()
for part in "$@"; do
  sh -c "$cmd" < "$part" > "$out.${#outs[@]}" &
  pids+=($!) outs+=("$out.${#outs[@]}")
done
for pid in "${pids[@]}"; do wait "$pid"; done
cat "${outs[@]}" > "$out"
rm -f "${outs[@]}"
