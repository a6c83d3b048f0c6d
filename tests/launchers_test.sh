#!/usr/bin/env bash
# Tests the launchers against a real coordinator on 127.0.0.1, with fake ssh, srun, hostname:
# scripts/ssh-workers (run, --dry-run, TERM) and examples/slurm/fanmap.sbatch.
#   tests/launchers_test.sh BIN_DIR      (BIN_DIR holds fanmap and fanmap-worker)
set -uo pipefail

bin=$(cd "${1:?usage: launchers_test.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-launchers.XXXXXX")
cleanup() {  # stops the background jobs still running, then removes the temp dir
  local p
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

# Prints "ok" if FILE holds exactly one record per index 0..N-1, in order, all ok.
records_complete() {  # FILE N
  awk -v n="$2" '
    { if (match($0, /"index":[0-9]+/) == 0) { bad = 1; exit }
      i = substr($0, RSTART + 8, RLENGTH - 8) + 0
      if (i != NR - 1 || $0 !~ /"ok":true/) { bad = 1; exit } }
    END { if (!bad && NR == n) print "ok" }' "$1"
}
records_of() { grep -c "\"worker\":\"$2\"" "$1"; }  # FILE WORKER

# Starts a coordinator in the background on 127.0.0.1; sets coord_pid and endpoint.
start_coordinator() {  # LOG ARGS...
  local log=$1; shift
  "$bin/fanmap" -j 0 --listen 'tcp://127.0.0.1:*' --progress never "$@" 2>"$log" &
  coord_pid=$!
  endpoint=""
  for _ in $(seq 100); do
    endpoint=$(sed -n 's/^fanmap: listening on //p' "$log")
    [[ -n $endpoint ]] && return 0
    sleep 0.1
  done
  echo "coordinator did not start:"; cat "$log"
  return 1
}

# --- syntax of every script --------------------------------------------------------------
for script in scripts/ssh-workers examples/slurm/fanmap.sbatch tests/launchers_test.sh \
  tests/multihost_netns_test.sh; do
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
# Fake srun: runs its command $SLURM_NTASKS times here, in the background, and waits.
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
pids=()
for ((i = 0; i < ${SLURM_NTASKS:-1}; i++)); do
  SLURM_PROCID=$i "$@" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
exit "$status"
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
n=600
seq 0 $((n - 1)) >items.txt
start_coordinator coord.log --curve-secret coord.key --authorized-keys worker.pub \
  -i items.txt -o out.jsonl --builtin sleep:10 || exit 1
start=$(date +%s%3N)
PATH="$tmp/fake:$PATH" "${ssh_workers[@]}" --connect "$endpoint" -- --connect-timeout 10 \
  >sw.out 2>sw.err
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
  --worker-path "$bin/fanmap-worker" -- --connect-timeout 10 2>sw2.err &
sw_pid=$!
for _ in $(seq 100); do
  [[ $(grep -c joined coord2.log) -ge 3 ]] && break
  sleep 0.1
done
kill -TERM "$sw_pid"
wait "$sw_pid"
check "ssh-workers exits 143 on TERM" test $? -eq 143
for _ in $(seq 50); do
  [[ $(grep -c 'left (stopped by a signal)' coord2.log) -ge 3 ]] && break
  sleep 0.1
done
check "TERM: all 3 workers left the coordinator" \
  test "$(grep -c 'left (stopped by a signal)' coord2.log)" -eq 3
kill -TERM "$coord_pid"
wait "$coord_pid"
check "coordinator interrupted (130)" test $? -eq 130

# --- examples/slurm/fanmap.sbatch with fake srun and hostname --------------------------------
mkdir submit && cd submit || exit 1
n=500
seq 0 $((n - 1)) >items.txt
start=$(date +%s%3N)
env PATH="$tmp/fake:$bin:$PATH" SLURM_NTASKS=3 SLURM_JOB_ID=$$ SLURM_SUBMIT_DIR="$PWD" \
  FANMAP_BIND=127.0.0.1 bash "$root/examples/slurm/fanmap.sbatch" \
  -i items.txt -o results.jsonl --resume --builtin sleep:5 >job.log 2>&1 &
job_pid=$!
wait "$job_pid"
job_status=$?
echo "sbatch run: $(($(date +%s%3N) - start)) ms"
check "sbatch script exits 0" test "$job_status" -eq 0
check "sbatch: every record, in order" test "$(records_complete results.jsonl $n)" = ok
check "sbatch: 3 workers joined" test "$(grep -c 'worker 127.0.0.1-[0-2] joined' job.log)" -eq 3
check "sbatch: the keys are removed" test -z "$(ls -A -d .fanmap-keys-* 2>/dev/null)"
[[ $failures -eq 0 ]] || { echo "--- job log"; cat job.log; }
cd "$tmp" || exit 1

if [[ $failures -gt 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all launcher checks passed"
