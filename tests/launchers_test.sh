#!/usr/bin/env bash
# Tests the launchers against a real coordinator on 127.0.0.1, with fake ssh, srun, hostname:
# scripts/ssh-workers (run, --dry-run, TERM) and examples/slurm/fanmap.sbatch (a normal end
# seen in both orders, a worker that starts after the run is over, workers that all fail,
# scancel).
#   tests/launchers_test.sh BIN_DIR      (BIN_DIR holds fanmap and fanmap-worker)
# Nothing here depends on speed: each wait is for a condition, with a deadline that only a
# broken launcher reaches; a run that must outlast its workers' start reads its items from a
# FIFO that the test closes once they have all joined.
set -uo pipefail

bin=$(cd "${1:?usage: launchers_test.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-launchers.XXXXXX")
cleanup() {  # stops the background jobs still running, then removes the temp dir
  local p
  exec 3>&-
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  wait
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
not() { ! "$@"; }

# Prints "ok" if FILE holds exactly one record per index 0..N-1, in order, all ok.
records_complete() {  # FILE N
  awk -v n="$2" '
    { if (match($0, /"index":[0-9]+/) == 0) { bad = 1; exit }
      i = substr($0, RSTART + 8, RLENGTH - 8) + 0
      if (i != NR - 1 || $0 !~ /"ok":true/) { bad = 1; exit } }
    END { if (!bad && NR == n) print "ok" }' "$1"
}
records_of() { grep -c "\"worker\":\"$2\"" "$1"; }  # FILE WORKER

deadline=60  # seconds: only a broken launcher or coordinator makes a wait last that long
# Waits up to SECONDS for COMMAND... to succeed.
wait_for() {  # SECONDS COMMAND...
  local until=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < until)) || return 1
    sleep 0.05
  done
}
at_least() { [[ $(grep -c -- "$2" "$3" 2>/dev/null) -ge $1 ]]; }  # COUNT PATTERN FILE
gone() { ! kill -0 "$1" 2>/dev/null; }                             # PID

# Starts a coordinator in the background on 127.0.0.1; sets coord_pid and endpoint.
listening() { endpoint=$(sed -n 's/^fanmap: listening on //p' "$1" 2>/dev/null); [[ -n $endpoint ]]; }
start_coordinator() {  # LOG ARGS...
  local log=$1
  shift
  "$bin/fanmap" -j 0 --listen 'tcp://127.0.0.1:*' --progress never "$@" 2>"$log" 3>&- &
  coord_pid=$!
  wait_for "$deadline" listening "$log" && return 0
  echo "coordinator did not start:"
  cat "$log"
  return 1
}

# --- syntax of every script --------------------------------------------------------------
for script in scripts/ssh-workers examples/slurm/fanmap.sbatch tests/launchers_test.sh \
  tests/slurm_cluster_test.sh tests/slurm/start-cluster tests/slurm/stop-cluster \
  tests/multihost_netns_test.sh tests/local_endpoint_test.sh; do
  check "bash -n $script" bash -n "$root/$script"
done

# --- fakes ---------------------------------------------------------------------------------
mkdir -p "$tmp/fake"
cat >"$tmp/fake/ssh" <<EOF
#!/usr/bin/env bash
# Fake ssh: logs the call, drops the options and the host, runs the command here with sh.
printf '%s\n' "\$*" >>"$tmp/ssh.calls"
while [[ \$# -gt 0 && \$1 == -* ]]; do
  case "\$1" in -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;; *) shift ;; esac
done
shift
[[ \${1:-} == -- ]] && shift
exec sh -c "\$*"
EOF
cat >"$tmp/fake/srun" <<'EOF'
#!/usr/bin/env bash
# Fake srun: runs its command $SLURM_NTASKS times here, in the background, and waits for them.
# As the real one, it answers TERM by killing its tasks (SIGKILL; noted in
# $FAKE_LOG.srun-killed) and passes INT on. Its tasks' PIDs are in $FAKE_LOG.srun-tasks while it
# runs, for the fake squeue and scancel. The test's levers, to decide what the batch script
# sees first:
#   FAKE_SRUN_TASK_EXIT=N      each task exits N at once instead (workers that cannot start)
#   FAKE_SRUN_EXIT_AFTER=TEXT  once its tasks have exited, exit only when $FAKE_LOG holds TEXT
#   FAKE_SRUN_LATE_TEXT=TEXT   the last task starts only once $FAKE_LOG holds TEXT
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
until_log_has() {  # TEXT: waits (60 s at most) for TEXT in $FAKE_LOG
  local until=$((SECONDS + 60))
  until grep -qF -- "$1" "$FAKE_LOG"; do
    ((SECONDS < until)) || { echo "fake srun: no '$1' in 60 s" >&2; return 1; }
    sleep 0.05
  done
}
pids=()
for ((i = 0; i < ${SLURM_NTASKS:-1}; i++)); do
  if [[ -n ${FAKE_SRUN_TASK_EXIT:-} ]]; then
    (exit "$FAKE_SRUN_TASK_EXIT") &
  elif [[ -n ${FAKE_SRUN_LATE_TEXT:-} ]] && ((i == ${SLURM_NTASKS:-1} - 1)); then
    (until_log_has "$FAKE_SRUN_LATE_TEXT"; SLURM_PROCID=$i exec "$@") &
  else
    SLURM_PROCID=$i "$@" &
  fi
  pids+=($!)
done
printf '%s\n' "${pids[@]}" >"$FAKE_LOG.srun-tasks"
trap 'echo KILL >>"$FAKE_LOG.srun-killed"; kill -KILL "${pids[@]}" 2>/dev/null' TERM
trap 'kill -INT "${pids[@]}" 2>/dev/null' INT
status=0
for p in "${pids[@]}"; do
  # A trap interrupts wait: wait again while the task runs.
  while s=0; wait "$p" || s=$?; ((s > 128)) && kill -0 "$p" 2>/dev/null; do :; done
  ((s == 0)) || status=$s
done
rm -f "$FAKE_LOG.srun-tasks"
[[ -z ${FAKE_SRUN_EXIT_AFTER:-} ]] || until_log_has "$FAKE_SRUN_EXIT_AFTER"
exit "$status"
EOF
cat >"$tmp/fake/squeue" <<'EOF'
#!/usr/bin/env bash
# Fake squeue --steps: the fake srun's step, named as the batch script names it, while it runs.
[[ -s $FAKE_LOG.srun-tasks ]] && echo "$SLURM_JOB_ID.0 fanmap-worker"
exit 0
EOF
cat >"$tmp/fake/scancel" <<'EOF'
#!/usr/bin/env bash
# Fake scancel --signal=SIG JOB.0: SIG to the fake srun's tasks; the call is noted in
# $FAKE_LOG.scancel.
echo "$*" >>"$FAKE_LOG.scancel"
[[ $1 == --signal=* && $2 == "$SLURM_JOB_ID.0" && -s $FAKE_LOG.srun-tasks ]] || exit 1
kill "-${1#--signal=}" $(cat "$FAKE_LOG.srun-tasks") 2>/dev/null
exit 0
EOF
cat >"$tmp/fake/fanmap" <<EOF
#!/usr/bin/env bash
# Fake fanmap: the real one. The test's lever:
#   FAKE_FANMAP_EXIT_AFTER=TEXT  a coordinator (fanmap -j ...) that has exited exits itself
#                                only when \$FAKE_LOG holds TEXT; meanwhile, TERM and INT are
#                                passed on to it and noted in \$FAKE_LOG.signals
[[ \${1:-} == -j && -n \${FAKE_FANMAP_EXIT_AFTER:-} ]] || exec "$bin/fanmap" "\$@"
"$bin/fanmap" "\$@" &
pid=\$!
trap 'echo TERM >>"\$FAKE_LOG.signals"; kill -TERM "\$pid" 2>/dev/null' TERM
trap 'echo INT >>"\$FAKE_LOG.signals"; kill -INT "\$pid" 2>/dev/null' INT
while s=0; wait "\$pid" || s=\$?; ((s > 128)) && kill -0 "\$pid" 2>/dev/null; do :; done
until=\$((SECONDS + 60))
until grep -qF -- "\$FAKE_FANMAP_EXIT_AFTER" "\$FAKE_LOG"; do
  ((SECONDS < until)) || { echo "fake fanmap: no '\$FAKE_FANMAP_EXIT_AFTER' in 60 s" >&2; break; }
  sleep 0.05
done
exit "\$s"
EOF
printf '#!/bin/sh\necho 127.0.0.1\n' >"$tmp/fake/hostname"
chmod +x "$tmp/fake/"*

cd "$tmp" || exit 1
"$bin/fanmap" keygen coord >/dev/null && "$bin/fanmap" keygen worker >/dev/null ||
  { fail "fanmap keygen"; exit 1; }
printf '# two workers on hostA, one here\n2/hostA\n\n:\n' >hosts
ssh_workers=("$root/scripts/ssh-workers" --hosts hosts --worker-path "$bin/fanmap-worker"
  --curve-secret "$tmp/worker.key" --server-key coord.pub --ssh "ssh -o BatchMode=yes")
local_name="$HOSTNAME-1"

# --- ssh-workers --help, --dry-run ----------------------------------------------------------
"${ssh_workers[0]}" --help >help.txt 2>&1
check "ssh-workers --help documents the port" grep -q -- "--listen port" help.txt

PATH="$tmp/fake:$PATH" "${ssh_workers[@]}" --connect tcp://127.0.0.1:5555 --slots 2 --dry-run \
  >dry.txt 2>&1
check "--dry-run prints 3 commands" test "$(wc -l <dry.txt)" -eq 3
check "--dry-run: hostA-1 and hostA-2 through ssh" \
  test "$(grep -c '^ssh -o BatchMode=yes hostA .*--name hostA-[12] ' dry.txt)" -eq 2
check "--dry-run: the local worker without ssh" \
  grep -q "^$bin/fanmap-worker --connect tcp://127.0.0.1:5555 --name $local_name --slots 2 " dry.txt
check "--dry-run: the server key read from its file" grep -qF -- "$(cat coord.pub)" dry.txt
check "--dry-run starts nothing" test ! -e ssh.calls

# --- ssh-workers against a real coordinator --------------------------------------------------
# The items come through a FIFO, closed once the 3 workers have joined: the run cannot end
# before a slow-starting worker joins it.
n=600
seq 0 $((n - 1)) >items.txt
mkfifo items.fifo
exec 3<>items.fifo  # read-write: never blocks; the run's EOF comes when it is closed
start_coordinator coord.log --curve-secret coord.key --authorized-keys worker.pub \
  -i items.fifo -o out.jsonl --builtin sleep:10 || exit 1
cat items.txt >&3
start=$(date +%s%3N)
PATH="$tmp/fake:$PATH" "${ssh_workers[@]}" --connect "$endpoint" -- --connect-timeout "$deadline" \
  >sw.out 2>sw.err 3>&- &
sw_pid=$!
check "ssh-workers: 3 workers joined" wait_for "$deadline" at_least 3 "worker .* joined" coord.log
exec 3>&-
wait "$sw_pid"
sw_status=$?
wait "$coord_pid"
coord_status=$?
echo "ssh-workers run: $(($(date +%s%3N) - start)) ms"
check "ssh-workers exits 0" test "$sw_status" -eq 0
check "coordinator exits 0" test "$coord_status" -eq 0
check "every record, in order" test "$(records_complete out.jsonl $n)" = ok
for w in hostA-1 hostA-2 "$local_name"; do
  check "worker $w joined" grep -q "worker $w joined" coord.log
  check "records from $w" test "$(records_of out.jsonl "$w")" -gt 0
done
check "ssh called twice, for hostA" test "$(grep -c ' hostA ' ssh.calls)" -eq 2
[[ $failures -eq 0 ]] || { echo "--- coordinator"; cat coord.log; echo "--- ssh-workers"; cat sw.err; }

# --- TERM stops every worker -----------------------------------------------------------------
rm -f out.jsonl
start_coordinator coord2.log -i items.txt -o out.jsonl --builtin sleep:1000 || exit 1
PATH="$tmp/fake:$PATH" "$root/scripts/ssh-workers" --hosts hosts --connect "$endpoint" \
  --worker-path "$bin/fanmap-worker" -- --connect-timeout "$deadline" 2>sw2.err &
sw_pid=$!
check "TERM: 3 workers joined first" wait_for "$deadline" at_least 3 joined coord2.log
kill -TERM "$sw_pid"
wait "$sw_pid"
check "ssh-workers exits 143 on TERM" test $? -eq 143
check "TERM: all 3 workers left the coordinator" \
  wait_for "$deadline" at_least 3 'left (stopped by a signal)' coord2.log
check "TERM: no more than 3 left" test "$(grep -c 'left (stopped by a signal)' coord2.log)" -eq 3
kill -TERM "$coord_pid"
wait "$coord_pid"
check "coordinator interrupted (130)" test $? -eq 130
[[ $failures -eq 0 ]] || { echo "--- coordinator"; cat coord2.log; echo "--- ssh-workers"; cat sw2.err; }

# --- examples/slurm/fanmap.sbatch with fake srun, hostname (and fanmap) ----------------------
# Makes the directory $tmp/NAME (a job's submit folder) and goes there.
new_submit_dir() { mkdir "$tmp/$1" && cd "$tmp/$1" || exit 1; }
# Starts the batch script in the background in this folder, as job NAME of 3 tasks, with the
# fakes' levers VAR=VALUE... and fanmap's ARGS; its output goes to job.log. Sets job_pid.
start_sbatch() {  # NAME [VAR=VALUE...] -- ARGS...
  local job=$1 vars=()
  shift
  while [[ $1 != -- ]]; do vars+=("$1"); shift; done
  shift
  env PATH="$tmp/fake:$bin:$PATH" SLURM_NTASKS=3 SLURM_JOB_ID="$job" SLURM_SUBMIT_DIR="$PWD" \
    FANMAP_BIND=127.0.0.1 FAKE_LOG="$PWD/job.log" "${vars[@]}" \
    bash "$root/examples/slurm/fanmap.sbatch" "$@" >job.log 2>&1 3>&- &
  job_pid=$!
}
keys_removed() { test -z "$(ls -A -d .fanmap-keys-* 2>/dev/null)"; }
# No coordinator or worker of this job is left (they name its keys): the batch script
# waited for each. (Its tee of the coordinator's log may still be draining: not counted.)
nothing_left() { ! pgrep -f -- "$PWD/.fanmap-keys-[^ ]*\.key" >/dev/null; }
# The batch script never complains of a kill that found nobody, nor of a failed command.
no_script_errors() { ! grep -E 'No such process|fanmap.sbatch: line' job.log; }

# A normal end, seen in both orders: the workers' step ending before the coordinator, and
# after it. The fakes hold the second one back until the script has seen the first end.
n=300
for order in workers-first coordinator-first; do
  new_submit_dir "$order"
  seq 0 $((n - 1)) >items.txt
  mkfifo items.fifo
  exec 3<>items.fifo
  if [[ $order == workers-first ]]; then
    lever=FAKE_FANMAP_EXIT_AFTER="fanmap: the workers have left"
  else
    lever=FAKE_SRUN_EXIT_AFTER="fanmap: the coordinator exited"
    # A requeued job (same ID) whose first run was killed: its keys are still there.
    mkdir -m 700 ".fanmap-keys-$order" && touch ".fanmap-keys-$order/coordinator.key"
  fi
  start=$(date +%s%3N)
  start_sbatch "$order" "$lever" -- \
    -i "$PWD/items.fifo" -o results.jsonl --resume --builtin sleep:5
  cat items.txt >&3
  check "sbatch ($order): 3 workers joined" \
    wait_for "$deadline" at_least 3 'worker 127.0.0.1-[0-2] joined' job.log
  exec 3>&-
  wait "$job_pid"
  job_status=$?
  echo "sbatch run ($order): $(($(date +%s%3N) - start)) ms"
  check "sbatch ($order): exits 0" test "$job_status" -eq 0
  check "sbatch ($order): every record, in order" test "$(records_complete results.jsonl $n)" = ok
  if [[ $order == workers-first ]]; then
    check "sbatch ($order): the script saw the workers leave first" \
      grep -q "fanmap: the workers have left; waiting for the coordinator" job.log
    check "sbatch ($order): and did not signal the coordinator" test ! -e job.log.signals
  else
    check "sbatch ($order): the script saw the coordinator end first" \
      grep -q "fanmap: the coordinator exited with status 0; waiting for the workers" job.log
  fi
  check "sbatch ($order): no worker is said to have failed" \
    not grep -qE "every worker has exited|some workers failed" job.log
  check "sbatch ($order): no error in the script" no_script_errors
  check "sbatch ($order): the workers were not stopped" test ! -e job.log.scancel
  check "sbatch ($order): the keys are removed" keys_removed
  check "sbatch ($order): no process left" nothing_left
  [[ $failures -eq 0 ]] || { echo "--- job log ($order)"; cat job.log; }
done

# A worker that starts only after the run is over (fewer items than workers, a slow node)
# cannot join it, and would wait for a coordinator until its --connect-timeout (60 s): once
# the grace is over, the script stops it through Slurm, and the job still ends as the
# coordinator did, with no alarm.
new_submit_dir late-worker
seq 0 29 >items.txt
start=$(date +%s%3N)
start_sbatch late-worker FAKE_SRUN_LATE_TEXT="fanmap: the coordinator exited" FANMAP_GRACE=1 -- \
  -i items.txt -o results.jsonl --resume --builtin echo
wait "$job_pid"
job_status=$?
echo "sbatch run (late worker): $(($(date +%s%3N) - start)) ms"
check "sbatch (late worker): exits 0" test "$job_status" -eq 0
check "sbatch (late worker): every record, in order" test "$(records_complete results.jsonl 30)" = ok
check "sbatch (late worker): says it stops the late workers" \
  grep -q "fanmap: the run is over; stopping the workers that started too late" job.log
check "sbatch (late worker): through Slurm (INT to the step's tasks)" \
  grep -qx -- "--signal=INT late-worker.0" job.log.scancel
check "sbatch (late worker): srun was not signalled (it would KILL its tasks)" \
  test ! -e job.log.srun-killed
check "sbatch (late worker): no worker is said to have failed" \
  not grep -qE "every worker has exited|some workers failed" job.log
check "sbatch (late worker): no error in the script" no_script_errors
check "sbatch (late worker): the keys are removed" keys_removed
check "sbatch (late worker): no process left" nothing_left
[[ $failures -eq 0 ]] || { echo "--- job log (late worker)"; cat job.log; }

# Every worker fails (here: before it connects): nobody is left to do the work, so the
# script stops the coordinator, which ends as interrupted (130), and so does the job.
new_submit_dir all-fail
seq 0 9 >items.txt
start_sbatch all-fail FAKE_SRUN_TASK_EXIT=3 -- -i items.txt -o results.jsonl --resume \
  --builtin echo
wait "$job_pid"
job_status=$?
check "sbatch (workers fail): exits 130, the coordinator's status" test "$job_status" -eq 130
check "sbatch (workers fail): says so" \
  grep -q "every worker has exited (srun: status 3) while the coordinator runs" job.log
check "sbatch (workers fail): the coordinator was interrupted" \
  wait_for "$deadline" at_least 1 "interrupted" job.log  # its log comes through tee
check "sbatch (workers fail): no error in the script" no_script_errors
check "sbatch (workers fail): the keys are removed" keys_removed
check "sbatch (workers fail): no process left" nothing_left
[[ $failures -eq 0 ]] || { echo "--- job log (workers fail)"; cat job.log; }

# scancel or the time limit: TERM to the batch script stops the coordinator (which keeps
# what is finished) and the workers, and leaves nothing running.
new_submit_dir scancel
seq 0 99 >items.txt
start_sbatch scancel -- -i items.txt -o results.jsonl --resume --builtin sleep:1000
check "sbatch (scancel): 3 workers joined" \
  wait_for "$deadline" at_least 3 'worker 127.0.0.1-[0-2] joined' job.log
kill -TERM "$job_pid"
wait "$job_pid"
job_status=$?
check "sbatch (scancel): exits 143" test "$job_status" -eq 143
check "sbatch (scancel): srun was not signalled (it would KILL its tasks)" \
  test ! -e job.log.srun-killed
check "sbatch (scancel): the coordinator was interrupted" \
  wait_for "$deadline" at_least 1 "interrupted" job.log  # its log comes through tee
check "sbatch (scancel): no error in the script" no_script_errors
check "sbatch (scancel): the keys are removed" keys_removed
check "sbatch (scancel): no process left" nothing_left
[[ $failures -eq 0 ]] || { echo "--- job log (scancel)"; cat job.log; }
cd "$tmp" || exit 1

if [[ $failures -gt 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all launcher checks passed"
