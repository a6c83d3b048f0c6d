#!/usr/bin/env bash
# Multi-host test on one machine: four network namespaces on a bridge stand for four hosts.
# The coordinator (host 1) listens with CurveZMQ keys on 10.213.X.1; workers on hosts 2..4
# connect to it. Mid-run, host 4's link is cut: the coordinator must declare its worker silent
# and send its tasks again; when the link comes back the worker must join again, and the run
# must end with exactly one record per item, in order, from all three workers.
#   tests/multihost_netns_test.sh BIN_DIR     (root; exits 77 where namespaces are not allowed)
# FANMAP_NETNS_ITEMS=N changes the number of items (default 3000, `--builtin sleep:20` each).
# Nothing depends on speed: the items come through a FIFO that stays open until host 4 has
# joined again, so the run cannot end first; each wait is for a line in a log, with a
# deadline only a bug reaches; the heartbeat (10 s) is one a healthy worker on a loaded
# machine never misses.
set -uo pipefail

bin=$(cd "${1:?usage: multihost_netns_test.sh BIN_DIR}" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root (network namespaces)"
command -v ip >/dev/null || skip "needs the ip command (iproute2)"

n=${FANMAP_NETNS_ITEMS:-3000}
deadline=60   # seconds: only a bug makes a wait last that long
heartbeat=10  # --heartbeat: how long the cut must last before host 4 is declared silent
net="10.213.$(($$ % 254 + 1))"  # one subnet per run, from the PID
port=5555
ns=("" "fanmap$$-1" "fanmap$$-2" "fanmap$$-3" "fanmap$$-4")  # ns[1]: coordinator
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-netns.XXXXXX")
made=()
cleanup() {
  local p name
  exec 3>&-
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  for name in "${made[@]}"; do
    for p in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  wait
  for name in "${made[@]}"; do ip netns del "$name" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
in_ns() { local i=$1; shift; ip netns exec "${ns[i]}" "$@"; }
# Copies stdin to FILE, each line prefixed with the time in ms.
stamp() { local l; while IFS= read -r l; do printf '%s %s\n' "$(now_ms)" "$l"; done >"$1"; }
# Waits up to SECONDS for PATTERN to appear COUNT times in FILE; prints the time (ms) of the
# COUNT-th match. Fails early if PID is given and has exited.
count_lines() { grep -cE -- "$2" "$1" 2>/dev/null; }  # FILE PATTERN
wait_line() {  # FILE PATTERN COUNT SECONDS [PID]
  local deadline=$(($(now_ms) + $4 * 1000)) t
  while (($(now_ms) < deadline)); do
    t=$(grep -E -- "$2" "$1" 2>/dev/null | sed -n "$3{s/ .*//p;q}")
    [[ -n $t ]] && { echo "$t"; return 0; }
    [[ -n ${5:-} ]] && ! kill -0 "$5" 2>/dev/null && return 1
    sleep 0.05
  done
  return 1
}
# Waits up to SECONDS, while PID runs, until out.jsonl holds COUNT records and one from WORKER.
wait_records() {  # COUNT WORKER SECONDS PID
  local deadline=$(($(now_ms) + $3 * 1000))
  while (($(now_ms) < deadline)) && kill -0 "$4" 2>/dev/null; do
    if [[ $(wc -l <out.jsonl) -ge $1 ]] && grep -q "\"worker\":\"$2\"" out.jsonl; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# --- four hosts on a bridge in host 1 ----------------------------------------------------
ip netns add "${ns[1]}" 2>"$tmp/netns.err" || skip "ip netns add is not permitted: $(cat "$tmp/netns.err")"
made+=("${ns[1]}")
set -e
for i in 2 3 4; do ip netns add "${ns[i]}"; made+=("${ns[i]}"); done
ip -n "${ns[1]}" link add br0 type bridge
ip -n "${ns[1]}" addr add "$net.1/24" dev br0
ip -n "${ns[1]}" link set br0 up
ip -n "${ns[1]}" link set lo up
for i in 2 3 4; do
  # h$i (host 1's side, on the bridge) <-> eth0 (host i)
  ip -n "${ns[1]}" link add "h$i" type veth peer name eth0 netns "${ns[i]}"
  ip -n "${ns[1]}" link set "h$i" master br0 up
  ip -n "${ns[i]}" addr add "$net.$i/24" dev eth0
  ip -n "${ns[i]}" link set eth0 up
  ip -n "${ns[i]}" link set lo up
done
set +e
echo "hosts: ${ns[*]:1} on $net.0/24"

cd "$tmp" || exit 1
mkdir workers
"$bin/fanmap" keygen coord >/dev/null
for i in 2 3 4; do (cd workers && "$bin/fanmap" keygen "host$i" >/dev/null); done
seq 0 $((n - 1)) >items.txt
seq 0 9 >ten.txt
endpoint="tcp://$net.1:$port"

# --- beyond loopback, keys or --insecure ---------------------------------------------------
in_ns 1 "$bin/fanmap" -j 0 --listen "$endpoint" --builtin echo -i ten.txt >/dev/null 2>refuse.err
check "coordinator without keys on $net.1 refuses to start (exit 2)" test $? -eq 2
check "and says why" grep -q "without keys would let anyone join" refuse.err
in_ns 1 "$bin/fanmap" -j 0 --listen "$endpoint" --insecure --builtin echo -i ten.txt \
  -o insecure.jsonl 2>insecure.err &
insecure_pid=$!
in_ns 2 "$bin/fanmap-worker" --connect "$endpoint" --connect-timeout "$deadline" 2>insecure-worker.err
worker_status=$?
wait "$insecure_pid"
check "with --insecure it runs, and host 2 reaches host 1" \
  test "$?/$worker_status/$(wc -l <insecure.jsonl)" = 0/0/10
if [[ $failures -gt 0 ]]; then
  cat refuse.err insecure.err insecure-worker.err
  exit 1
fi

# --- the run: three workers, host 4 cut off mid-run ------------------------------------------
start=$(now_ms)
mkfifo items.fifo
# Read-write: never blocks; the run's EOF comes when it is closed. No child may hold it, so
# each closes it first (before a process substitution, which would inherit it).
exec 3<>items.fifo
in_ns 1 "$bin/fanmap" -j 0 --listen "$endpoint" --curve-secret coord.key \
  --authorized-keys workers --heartbeat "$heartbeat" --progress never \
  --builtin sleep:20 -i items.fifo -o out.jsonl 3>&- 2> >(stamp coord.log) &
coord=$!
cat items.txt >&3 &  # more than a pipe holds: written as the coordinator reads
feeder=$!
worker_pids=()
for i in 2 3 4; do
  in_ns "$i" "$bin/fanmap-worker" --connect "$endpoint" --slots 4 --name "host$i" \
    --curve-secret "workers/host$i.key" --server-key coord.pub 3>&- 2> >(stamp "worker$i.log") &
  worker_pids+=($!)
done
# A worker without keys must not get in (it gives up after 3 s without a job: however slow
# the machine, it cannot get one sooner).
in_ns 3 "$bin/fanmap-worker" --connect "$endpoint" --name intruder --connect-timeout 3 \
  2>intruder.log 3>&- &
intruder=$!

cut="" detected="" up="" rejoined=""
if wait_line coord.log "worker host4 joined" 1 "$deadline" "$coord" >/dev/null &&
  wait_records $((n / 10)) host4 "$deadline" "$coord"; then
  # Host 4 holds tasks at the cut: 90% of the items are still to come, more than its slots,
  # and they take 20 ms each of sleep, which no machine, loaded or not, does faster.
  # Counted from the cut: a line about host 4 from before it does not count.
  silent_before=$(count_lines coord.log "worker host4 silent for")
  joined_before=$(count_lines coord.log "worker host4 joined")
  cut=$(now_ms)
  ip -n "${ns[1]}" link set h4 down
  # Its tasks go elsewhere as soon as it answers nothing for eight times its
  # own task time (copies), or at the latest when it is declared dead.
  detected=$(wait_line coord.log "worker host4 silent for [0-9]+ ms" \
    $((silent_before + 1)) "$deadline" "$coord")
  up=$(now_ms)
  ip -n "${ns[1]}" link set h4 up
  rejoined=$(wait_line coord.log "worker host4 joined" $((joined_before + 1)) "$deadline" "$coord")
fi
check "host 4's worker joined before the cut" test -n "$cut"
check "the coordinator declared host 4's worker silent (its tasks went to other workers)" \
  test -n "$detected"
check "host 4's worker joined again before the run ended" test -n "$rejoined"

wait "$feeder"
exec 3>&-  # the end of the input: the run can end now
wait "$coord"
coord_status=$?
end=$(now_ms)
statuses=""
for p in "${worker_pids[@]}"; do wait "$p"; statuses+="$? "; done
wait "$intruder"
intruder_status=$?

check "coordinator exits 0" test "$coord_status" -eq 0
check "workers exit 0 at the end" test "$statuses" = "0 0 0 "
complete=$(awk -v n="$n" '
  { if (match($0, /"index":[0-9]+/) == 0) { bad = 1; exit }
    i = substr($0, RSTART + 8, RLENGTH - 8) + 0
    if (i != NR - 1 || $0 !~ /"ok":true/) { bad = 1; exit } }
  END { if (!bad && NR == n) print "ok" }' out.jsonl)
check "exactly one record per item 0..$((n - 1)), in order, all ok" test "$complete" = ok
for i in 2 3 4; do
  check "records from host$i" grep -q "\"worker\":\"host$i\"" out.jsonl
done
check "a worker without keys is refused (exit 1, no record)" \
  test "$intruder_status/$(grep -c '"worker":"intruder"' out.jsonl)" = 1/0

echo "--- summary"
echo "items: $n (sleep:20), 3 workers x 4 slots, --heartbeat $heartbeat; run: $((end - start)) ms"
if [[ -n $cut ]]; then
  echo "link of host 4 cut at +$((cut - start)) ms"
  [[ -n $detected ]] && echo "  coordinator declared it silent $((detected - cut)) ms after the cut:" &&
    sed -n 's/^[0-9]* fanmap: \(worker host4 silent.*\)/    \1/p' coord.log
  echo "link up again $((up - cut)) ms after the cut"
  [[ -n $rejoined ]] && echo "  host 4's worker joined again $((rejoined - up)) ms after the link came back"
  echo "host 4's worker said (ms after the cut):"
  while read -r t line; do echo "  +$((t - cut)) $line"; done <worker4.log
fi
for i in 2 3 4; do
  echo "records from host$i: $(grep -c "\"worker\":\"host$i\"" out.jsonl)"
done
if [[ $failures -gt 0 ]]; then
  for f in coord.log worker2.log worker3.log worker4.log intruder.log; do
    echo "--- $f"
    cat "$f"
  done
  echo "$failures check(s) failed"
  exit 1
fi
echo "multi-host checks passed"
