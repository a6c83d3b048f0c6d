#!/usr/bin/env bash
# curl --parallel sending one chat request per line of SRC, MAX in flight; each response
# goes to OUTDIR/I.json (I: the line's index from 0).
#
#   bench/peers/http_curl.sh SRC OUTDIR URL MODEL MAX
#
# The requests are written to a curl config file first (JSON-escaping \ and " in the
# prompts), then one curl process sends them all, opening connections at once rather than
# waiting to see whether it can multiplex them (--parallel-immediate: the server speaks
# HTTP/1.1) and keeping them alive for the next requests.
set -euo pipefail
[[ $# -eq 5 ]] || { sed -n '2,8p' "$0" >&2; exit 2; }
src=$1 outdir=$2 url=$3 model=$4 max=$5
mkdir -p "$outdir"
cfg=$outdir/requests.curl
awk -v url="$url" -v model="$model" -v dir="$outdir" '
  NR > 1 { print "next" }
  { p = $0; gsub(/\\/, "\\\\", p); gsub(/"/, "\\\"", p)
    body = "{\"model\":\"" model "\",\"messages\":[{\"role\":\"user\",\"content\":\"" p "\"}]}"
    gsub(/\\/, "\\\\", body); gsub(/"/, "\\\"", body)   # quoted again for the config file
    printf "url = \"%s\"\nheader = \"Content-Type: application/json\"\n", url
    printf "data = \"%s\"\noutput = \"%s/%d.json\"\nfail-with-body\n", body, dir, NR - 1 }
' "$src" > "$cfg"
exec curl --no-progress-meter --parallel --parallel-immediate --parallel-max "$max" --config "$cfg"
