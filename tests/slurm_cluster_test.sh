#!/usr/bin/env bash
# Runs examples/slurm/fanmap.sbatch on a real single-node Slurm cluster (Debian's slurmctld,
# slurmd, slurm-client and munge, started here by tests/slurm/start-cluster in a temp dir,
# stopped by PID at the end) and checks what `sbatch --wait` leaves: the job's exit status
# (the coordinator's), every record in order with its content, and a log without false alarms.
#   tests/slurm_cluster_test.sh BIN_DIR      (BIN_DIR holds fanmap and fanmap-worker)
# Exits 77 (skipped; the reason is printed) where the cluster cannot run: not root, or the
# packages are missing. Nothing here depends on speed: the cluster's start waits for
# `scontrol ping` and an idle node, and each job for its end, with deadlines only a broken
# setup reaches.
set -uo pipefail

bin=$(cd "${1:?usage: slurm_cluster_test.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-slurm.XXXXXX")
chmod 755 "$tmp"  # munged wants its socket's path open to all (see start-cluster)
cluster=$tmp/cluster
cleanup() {
  "$root/tests/slurm/stop-cluster" "$cluster" || echo "FAIL: a daemon of the cluster needed KILL"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s%3N)
"$root/tests/slurm/start-cluster" "$cluster"
case $? in
  0) echo "cluster up in $(($(date +%s%3N) - start)) ms" ;;
  77) echo "SKIPPED: no Slurm cluster here (see above)"; exit 77 ;;
  *) echo "FAIL: the cluster did not start"; exit 1 ;;
esac
export SLURM_CONF=$cluster/slurm.conf
node=$(hostname -s)

failures=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
not() { ! "$@"; }

# Idempotent: a second start finds the daemons running and keeps them.
daemon_pids() { cat "$cluster/munge/munged.pid" "$cluster/run/slurmctld.pid" "$cluster/run/slurmd.pid"; }
pids_before=$(daemon_pids)
check "start-cluster again: ok" "$root/tests/slurm/start-cluster" "$cluster"
check "start-cluster again: the same daemons" test "$(daemon_pids)" = "$pids_before"

# Prints "ok" if FILE holds one record per line of ITEMS, in order, each ok with the result
# EXPECTED(item) and the name of one of the job's workers; else the first bad record.
# EXPECTED: "echo" (the item itself) or "fails-every-7th" (see the second job).
records_match() {  # FILE ITEMS EXPECTED
  awk -v node="$node" -v mode="$3" '
    FNR == NR { item[NR - 1] = $0; n = NR; next }
    { i = FNR - 1
      want_ok = !(mode == "fails-every-7th" && i % 7 == 0)
      want = want_ok ? "\"ok\":true,\"result\":\"" (mode == "echo" ? item[i] : "done " item[i]) "\"" \
                     : "\"ok\":false"
      if (index($0, "{\"index\":" i ",") != 1 || index($0, want) == 0 ||
          $0 !~ ("\"worker\":\"" node "-[0-9]+\"")) { print "record " i ": " $0; bad = 1; exit } }
    END { if (!bad) print (FNR == n ? "ok" : "records: " FNR " of " n) }' "$2" "$1"
}
# The batch script never complains of a kill that found nobody, nor of a failed command,
# and raises no alarm about workers at a normal end.
no_false_alarm() {
  ! grep -E 'No such process|fanmap.sbatch: line|every worker has exited|some workers failed' "$1"
}
# No coordinator or worker of the job in FOLDER is left (they name its keys).
nothing_left() { ! pgrep -f -- "$1/.fanmap-keys-[^ ]*\.key" >/dev/null; }

# Submits the batch script from FOLDER with sbatch --wait on 1 node, in the background, with
# the sbatch OPTIONS (e.g. --ntasks-per-node=N: N workers) and fanmap's ARGS; sets job_pid.
# VAR=VALUE... go to the job's environment.
deadline=120  # seconds: only a job that hangs takes that long
start_job() {  # FOLDER [VAR=VALUE...] [OPTION...] -- ARGS...
  local folder=$1 vars=() options=()
  shift
  while [[ $1 != -- ]]; do
    if [[ $1 == -* ]]; then options+=("$1"); else vars+=("$1"); fi
    shift
  done
  shift
  (cd "$folder" && exec env PATH="$bin:$PATH" "${vars[@]}" timeout "$deadline" sbatch --wait \
    --quiet --nodes=1 "${options[@]}" --output=job.log --job-name="$(basename "$folder")" \
    "$root/examples/slurm/fanmap.sbatch" "$@") 3>&- &
  job_pid=$!
}
# Waits for the job started last; sets job_status (sbatch's: the batch script's).
end_job() {  # FOLDER
  wait "$job_pid"
  job_status=$?
  if ((job_status == 124)); then
    scancel --name="$(basename "$1")" 2>/dev/null
    echo "sbatch --wait: no end in $deadline s"
  fi
}
# Waits up to the deadline for COMMAND... to succeed.
wait_for() {  # COMMAND...
  local until=$((SECONDS + deadline))
  until "$@"; do
    ((SECONDS < until)) || return 1
    sleep 0.1
  done
}
joined() { [[ $(grep -c "worker $node-[0-9]* joined" "$2" 2>/dev/null) -ge $1 ]]; }  # N LOG
# Waits until N workers have joined the job started last (or it has ended: then fails).
joined_or_ended() { joined "$@" || ! kill -0 "$job_pid" 2>/dev/null; }
wait_joined() { wait_for joined_or_ended "$@" && joined "$@"; }  # N LOG

# --- a normal run: every item ok -------------------------------------------------------------
# The items come through a FIFO, closed once the 4 workers have joined: the run cannot end
# before a worker that starts late joins it (that case is the next job's).
job=$tmp/normal
mkdir "$job"
n=2000
seq 0 $((n - 1)) | sed 's/^/item-/' >"$job/items.txt"
mkfifo "$job/items.fifo"
exec 3<>"$job/items.fifo"  # read-write: never blocks; the run's EOF comes when it is closed
t0=$(date +%s%3N)
start_job "$job" --ntasks-per-node=4 -- -i items.fifo -o results.jsonl --resume --builtin echo
cat "$job/items.txt" >&3
check "normal: 4 workers joined" wait_joined 4 "$job/job.log"
exec 3>&-
end_job "$job"
echo "job (normal): $(($(date +%s%3N) - t0)) ms"
check "normal: the job exits 0" test "$job_status" -eq 0
check "normal: every record, in order, with its item" \
  test "$(records_match "$job/results.jsonl" "$job/items.txt" echo)" = ok
check "normal: the coordinator exited 0" \
  grep -q 'the coordinator exited with status 0\|the workers have left' "$job/job.log"
check "normal: no worker was stopped" not grep -q 'stopping the workers' "$job/job.log"
check "normal: no false alarm" no_false_alarm "$job/job.log"
check "normal: the keys are removed" test -z "$(ls -A -d "$job"/.fanmap-keys-* 2>/dev/null)"
check "normal: no process left" nothing_left "$job"
[[ $failures -eq 0 ]] || { echo "--- job log (normal)"; cat "$job/job.log"; }

# --- a worker that starts after the run is over ---------------------------------------------
# (A slow node, or fewer items than workers.) Task 3 starts only once the coordinator has
# exited: it cannot join, and would wait for a coordinator for 60 s. The script stops it
# through Slurm once the grace is over, and the job ends as the coordinator did.
job=$tmp/late
mkdir -p "$job/late-bin"
cat >"$job/late-bin/fanmap-worker" <<EOF
#!/usr/bin/env bash
if [[ \$SLURM_PROCID == 3 ]]; then
  until grep -q 'the coordinator exited' "$job/job.log"; do sleep 0.1; done
fi
exec "$bin/fanmap-worker" "\$@"
EOF
chmod +x "$job/late-bin/fanmap-worker"
seq 0 99 >"$job/items.txt"
t0=$(date +%s%3N)
start_job "$job" PATH="$job/late-bin:$bin:$PATH" FANMAP_GRACE=2 --ntasks-per-node=4 -- \
  -i items.txt -o results.jsonl --resume --builtin echo
end_job "$job"
echo "job (late worker): $(($(date +%s%3N) - t0)) ms"
check "late worker: the job exits 0" test "$job_status" -eq 0
check "late worker: every record, in order, with its item" \
  test "$(records_match "$job/results.jsonl" "$job/items.txt" echo)" = ok
check "late worker: the script stops it" \
  grep -q 'the run is over; stopping the workers that started too late' "$job/job.log"
check "late worker: through Slurm, not with srun's KILL" \
  not grep -qE 'Killed|CANCELLED' "$job/job.log"
check "late worker: no false alarm" no_false_alarm "$job/job.log"
check "late worker: no process left" nothing_left "$job"
[[ $failures -eq 0 ]] || { echo "--- job log (late worker)"; cat "$job/job.log"; }

# --- some items fail: the coordinator exits 1, and so does the job ---------------------------
job=$tmp/failing
mkdir "$job"
n=300
seq 0 $((n - 1)) >"$job/items.txt"
# Items 0, 7, 14, ... fail (exit 3); the others print "done ITEM". 8 workers take every CPU
# of the node (and of the job): their step runs beside the batch step all the same. The
# items come through a FIFO, closed once all 8 have joined.
mkfifo "$job/items.fifo"
exec 3<>"$job/items.fifo"
start_job "$job" --ntasks-per-node=8 -- -i items.fifo -o results.jsonl --resume -- \
  sh -c 'test $(($1 % 7)) -ne 0 && echo "done $1" || exit 3' sh '{}'
cat "$job/items.txt" >&3
check "failing: 8 workers joined" wait_joined 8 "$job/job.log"
exec 3>&-
end_job "$job"
check "failing: the job exits 1 (the coordinator's status)" test "$job_status" -eq 1
check "failing: the coordinator exited 1" \
  grep -q 'the coordinator exited with status 1' "$job/job.log"
check "failing: every record, in order, failed exactly where expected" \
  test "$(records_match "$job/results.jsonl" "$job/items.txt" fails-every-7th)" = ok
check "failing: no false alarm about the workers" no_false_alarm "$job/job.log"
check "failing: no process left" nothing_left "$job"
[[ $failures -eq 0 ]] || { echo "--- job log (failing)"; cat "$job/job.log"; }

echo "slurm cluster test: $(($(date +%s%3N) - start)) ms in all"
if [[ $failures -gt 0 ]]; then
  echo "--- slurmctld log (tail)"; tail -n 20 "$cluster/log/slurmctld.log"
  echo "--- slurmd log (tail)"; tail -n 20 "$cluster/log/slurmd.log"
  echo "$failures check(s) failed"
  exit 1
fi
echo "all slurm cluster checks passed"
