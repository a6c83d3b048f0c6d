#!/usr/bin/env bash
# The endpoint local workers connect to (fanmap -j N) is reachable by our user only.
#
# A run is kept going by an input FIFO this test writes to. Meanwhile, as user nobody, an
# attacker (python3-zmq) connects to the endpoint it reads from a worker's command line, says
# HELLO, sends forged RESULTS and waits a few seconds: it must get neither a JOB (which carries
# the API key) nor TASKS, and must not even be able to connect(2) to the socket file. Then the
# run must end with exactly the records of an unattacked run, its private directory gone, and
# the leftover directory of a killed run (a dead pid) swept from the same parent.
#   tests/local_endpoint_test.sh BIN_DIR      (BIN_DIR holds fanmap and fanmap-worker)
# Needs root (to run the attacker as nobody); exits 77 (skipped) otherwise.
set -uo pipefail

bin=$(cd "${1:?usage: local_endpoint_test.sh BIN_DIR}" && pwd)
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: local_endpoint_test.sh needs root (it runs an attacker as user nobody)"
  exit 77
fi
python=/usr/bin/python3  # Debian's, with python3-zmq and python3-msgpack (scripts/deps)
if ! "$python" -c 'import zmq, msgpack' 2>/dev/null || ! command -v setpriv >/dev/null ||
  ! id nobody >/dev/null 2>&1; then
  echo "FAIL: needs $python with python3-zmq and python3-msgpack, setpriv and user nobody" \
    "(scripts/deps installs them)"
  exit 1
fi
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups env -i PATH=/usr/bin:/bin)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-endpoint.XXXXXX")
coord_pid=""
cleanup() {  # stops what is still running, then removes the temp dir
  exec 3>&-
  [[ -n $coord_pid ]] && kill -TERM "$coord_pid" 2>/dev/null
  local p
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  wait
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$tmp"  # nobody must reach the attacker script and the runs' parent directory

failures=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
not() { ! "$@"; }
alive() { kill -0 "$1" 2>/dev/null; }

deadline=60  # seconds: only a broken coordinator makes a wait last that long
# Waits up to SECONDS for COMMAND... to succeed.
wait_for() {  # SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# The run, with its private directory made in $TMPDIR: env execs fanmap, so $! is its pid.
fanmap_in() {  # PARENT: the command line, in the array fanmap
  fanmap=(env -u XDG_RUNTIME_DIR TMPDIR="$1" "$bin/fanmap" -j 2 --progress never
    --builtin sleep:20)
}

cat >"$tmp/attacker.py" <<'EOF'
"""Plays a local worker of another user: connect, HELLO, forged RESULTS, and report."""
import errno
import os
import socket
import sys
import time

import msgpack
import zmq

endpoint, window_s = sys.argv[1], float(sys.argv[2])
path = endpoint[len("ipc://"):]

# connect(2) itself: zmq connects to ipc in the background and would hide the error.
raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    raw.connect("\0" + path[1:] if path.startswith("@") else path)
    print("raw connect: connected", flush=True)
except OSError as e:
    print("raw connect: " + errno.errorcode.get(e.errno, str(e.errno)), flush=True)
raw.close()

ctx = zmq.Context()
dealer = ctx.socket(zmq.DEALER)
dealer.setsockopt(zmq.LINGER, 0)
dealer.connect(endpoint)
hello = msgpack.packb([2, 1, 1, "attacker", "evil", os.getpid()])
dealer.send(hello)


def forged(index, attempt):
    return [index, attempt, True, "FORGED", False, 1, False, 0, {}, False]


dealer.send(msgpack.packb([2, 2, "0" * 32, [forged(0, 0)]]))  # a blind forgery
print("ready", flush=True)

run_id = "0" * 32
deadline = time.monotonic() + window_s
while (left := deadline - time.monotonic()) > 0:
    if not dealer.poll(int(left * 1000) + 1):
        continue
    message = msgpack.unpackb(dealer.recv(), raw=False)
    kind = {4: "JOB", 5: "TASKS", 3: "HEARTBEAT", 6: "STOP", 7: "REFUSE", 9: "RESET"}.get(
        message[1], str(message[1]))
    print("received " + kind, flush=True)
    if kind == "JOB":
        run_id = message[2]
        print("job options: " + repr(message[5]), flush=True)
    elif kind == "TASKS":
        dealer.send(msgpack.packb([2, 2, run_id, [forged(t[0], t[1]) for t in message[2]]]))
    elif kind == "RESET":  # what the blind forgery earns: join again, as a worker would
        dealer.send(hello)
print("done", flush=True)
EOF
chmod 644 "$tmp/attacker.py"

n=40
first=10  # items fed before the attack; the rest while the attacker listens
seq 0 $((n - 1)) >"$tmp/items.txt"

# --- an unattacked run: the records to expect ----------------------------------------------
mkdir -m 1777 "$tmp/ref-parent"
fanmap_in "$tmp/ref-parent"
"${fanmap[@]}" -i "$tmp/items.txt" -o "$tmp/ref.jsonl" 2>"$tmp/ref.log"
check "unattacked run exits 0" test $? -eq 0
check "unattacked run: $n records" test "$(wc -l <"$tmp/ref.jsonl")" -eq "$n"
check "unattacked run leaves no directory" test -z "$(ls -A "$tmp/ref-parent")"

# --- leftovers in the parent of the attacked run ---------------------------------------------
parent="$tmp/parent"
mkdir -m 1777 "$parent"  # like /tmp: only the private directory's own mode protects it
sh -c 'exit 0' &
dead_pid=$!
wait "$dead_pid"
check "pid $dead_pid is dead" not alive "$dead_pid"
stale="$parent/fanmap-$dead_pid-abcdef"
live="$parent/fanmap-$$-live00"           # this shell's pid: a live run
others="$parent/fanmap-$dead_pid-nobody"  # nobody's
for d in "$stale" "$live" "$others"; do
  mkdir -m 700 "$d" && echo secret >"$d/worker.key"
done
chown -R nobody:nogroup "$others"

# --- the attacked run ------------------------------------------------------------------------
mkfifo "$tmp/items.fifo"
fanmap_in "$parent"
"${fanmap[@]}" -i "$tmp/items.fifo" -o "$tmp/out.jsonl" 2>"$tmp/coord.log" &
coord_pid=$!
exec 3<>"$tmp/items.fifo"  # read-write: never blocks; the run's EOF comes when it is closed
head -n "$first" "$tmp/items.txt" >&3

worker_pids() { pgrep -P "$coord_pid" -x fanmap-worker; }
two_workers() { [[ $(worker_pids | wc -l) -ge 2 ]]; }
check "fanmap started 2 workers" wait_for "$deadline" two_workers
worker=$(worker_pids | head -n 1)
endpoint=$(tr '\0' '\n' <"/proc/$worker/cmdline" 2>/dev/null | sed -n '/^--connect$/{n;p;q}')
echo "worker $worker connects to: $endpoint"
check "the worker's --connect is ipc://<dir>/workers, not an abstract socket" \
  eval '[[ $endpoint == ipc:///*/workers ]]'
socket_path=${endpoint#ipc://}
dir=$(dirname "$socket_path")
if [[ $endpoint == ipc:///*/workers ]]; then
  check "the private directory is in \$TMPDIR" test "$(dirname "$dir")" = "$parent"
  check "the private directory is ours with mode 0700" test "$(stat -c '%u %a' "$dir")" = "0 700"
  check "the private directory is not a symlink" test ! -L "$dir"
  check "the socket file exists" wait_for "$deadline" test -S "$socket_path"
  check "nobody cannot write the socket file" not "${as_nobody[@]}" test -w "$socket_path"
  check "nobody cannot enter the private directory" not "${as_nobody[@]}" test -x "$dir/."
fi
check "the run swept the directory of the dead run" test ! -e "$stale"
check "the run kept the directory of a live run" test -e "$live/worker.key"
check "the run kept nobody's directory" test -e "$others/worker.key"

# The attacker listens for 3 s after it is ready, while the rest of the items are fed: a
# window to observe what must not happen (nothing waits for it to end early).
"${as_nobody[@]}" "$python" "$tmp/attacker.py" "$endpoint" 3 >"$tmp/attacker.out" \
  2>"$tmp/attacker.err" 3>&- &
attacker_pid=$!
attacker_ready() { grep -q '^ready$' "$tmp/attacker.out" || ! alive "$attacker_pid"; }
wait_for "$deadline" attacker_ready
tail -n "+$((first + 1))" "$tmp/items.txt" >&3  # tasks to steal, if the attacker can
attacker_done() { ! alive "$attacker_pid"; }
check "the attacker finished" wait_for "$deadline" attacker_done
wait "$attacker_pid"
echo "--- attacker (as nobody)"
cat "$tmp/attacker.out" "$tmp/attacker.err"
echo "---"
check "the attacker ran to the end" grep -q '^done$' "$tmp/attacker.out"
check "the attacker could not connect(2): EACCES" grep -q '^raw connect: EACCES$' "$tmp/attacker.out"
check "the attacker received no JOB" not grep -q '^received JOB' "$tmp/attacker.out"
check "the attacker received no TASKS" not grep -q '^received TASKS' "$tmp/attacker.out"

exec 3>&-  # EOF: the run can finish
coord_done() { ! alive "$coord_pid"; }
check "the run finished" wait_for "$deadline" coord_done
wait "$coord_pid"
coord_status=$?
coord_pid=""
check "the run exits 0" test "$coord_status" -eq 0
check "its records are those of the unattacked run" cmp "$tmp/ref.jsonl" "$tmp/out.jsonl"
check "no forged record" not grep -q FORGED "$tmp/out.jsonl"
if [[ $endpoint == ipc:///*/workers ]]; then
  check "the private directory is gone after the run" test ! -e "$dir"
fi
check "nothing else left in the parent" \
  test "$(ls -A "$parent" | sort)" = "$(printf '%s\n' "${others##*/}" "${live##*/}" | sort)"

if [[ $failures -ne 0 ]]; then
  echo "--- coordinator"
  cat "$tmp/coord.log"
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
