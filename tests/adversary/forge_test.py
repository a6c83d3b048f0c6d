#!/usr/bin/python3
"""AdversaryForgeTest: a foreign peer forges results and sends hostile frames to
a running coordinator; the run must come out exactly as a clean one.

    /usr/bin/python3 tests/adversary/forge_test.py BIN_DIR

Runs the same job twice with identical flags: 20,000 items, `-j 2 --slots 4
--builtin sleep:1 --listen tcp://127.0.0.1:*`, items fed through a FIFO. The
first run is clean. In the second, tests/adversary/forge.py attacks the task
socket (a hoarder, forged results with and without HELLO and with other run
ids, hostile frames: see its docstring) while the run goes on; the FIFO holds
back the last item until the attacker is done, so the run cannot end before
the attack has been delivered and handled (no timing luck).

Checks: the attacked run exits 0 with a record for every item, no record holds
a forged value or names an attacker, the records equal the clean run's (but
for the per-run fields "worker" (a local worker's host:pid) and "attempts"),
the coordinator's peak RSS stays <= 256 MiB, and the hoarder holds no more
than an earning worker's initial credit. Durations are not checked (they
belong to benchmarks): the test prints them as figures, with the peak RSS,
the tasks the hoarder held, and what the coordinator says it dropped.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

ITEMS = 20000
FLAGS = ["-j", "2", "--slots", "4", "--builtin", "sleep:1",
         "--listen", "tcp://127.0.0.1:*", "--progress", "never"]
MAX_RSS_KIB = 256 * 1024
# WorkerCredit::kInitialCredit (coordinator/credit.h): what a peer that
# claims any number of slots and returns nothing can hold.
INITIAL_CREDIT = 32
RUN_DEADLINE_S = 150  # one run
BUDGET_S = 380  # every run together (the ctest TIMEOUT is 400 s)


class FifoFeeder(threading.Thread):
    """Writes items 0..n-2 into the FIFO the coordinator reads, then the last
    one when `release` is set, then closes it (end of input)."""

    def __init__(self, path, items, release, proc):
        super().__init__(daemon=True)
        self.path, self.items, self.release, self.proc = path, items, release, proc
        self.error = None
        self.released_at = None

    def run(self):
        try:
            fd = None
            while fd is None:  # O_NONBLOCK: no reader yet is ENXIO, not a hang
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    if self.proc.poll() is not None:
                        raise RuntimeError("the coordinator exited before opening its input")
                    time.sleep(0.005)
            os.set_blocking(fd, True)
            with os.fdopen(fd, "wb") as f:
                f.write("".join("item-%d\n" % i for i in range(self.items - 1)).encode())
                f.flush()
                self.release.wait()
                self.released_at = time.monotonic()
                f.write(("item-%d\n" % (self.items - 1)).encode())
        except Exception as e:  # reported by the driver
            self.error = repr(e)


class AttackerOutput(threading.Thread):
    """Reads forge.py's JSON lines; sets `done` when the attack is delivered."""

    def __init__(self, stream, done):
        super().__init__(daemon=True)
        self.stream, self.done = stream, done
        self.events = []

    def run(self):
        for line in self.stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("event") == "attack-done":
                self.done.set()
        self.done.set()  # the attacker died: do not hold the run forever

    def last(self, name):
        found = [e for e in self.events if e.get("event") == name]
        return found[-1] if found else None


def run_job(procs, fanmap, tmp, name, attack, deadline_s=RUN_DEADLINE_S):
    """Runs the job once (killed after `deadline_s`); returns what happened."""
    fifo = os.path.join(tmp, name + ".fifo")
    out = os.path.join(tmp, name + ".jsonl")
    err = os.path.join(tmp, name + ".err")
    os.mkfifo(fifo)
    release = threading.Event()
    started = time.monotonic()
    with open(err, "wb") as err_file:
        coordinator = procs.start([fanmap] + FLAGS + ["-i", fifo, "-o", out], stderr=err_file)
    rss = harness.PeakRss(coordinator.pid)
    rss.start()
    feeder = FifoFeeder(fifo, ITEMS, release, coordinator)
    feeder.start()
    attacker = None
    reader = None
    endpoint = harness.wait_for_line(err, r"^fanmap: listening on (\S+)$", 15, coordinator)
    if attack and endpoint is not None:
        with open(os.path.join(tmp, name + ".attacker.err"), "wb") as attacker_err:
            attacker = procs.start(
                ["/usr/bin/python3", os.path.join(HERE, "forge.py"),
                 "--endpoint", endpoint.group(1), "--items", str(ITEMS)],
                stdout=subprocess.PIPE, stderr=attacker_err)
        reader = AttackerOutput(attacker.stdout, release)
        reader.start()
    else:
        release.set()
    status, rusage = harness.wait_exit(coordinator, deadline_s)
    elapsed = time.monotonic() - started
    timed_out = status is None
    if timed_out:
        coordinator.kill()
        status, rusage = harness.wait_exit(coordinator, 10)
    rss.stop()
    release.set()
    if attacker is not None:
        if attacker.poll() is None:
            attacker.terminate()
        try:
            attacker.wait(10)
        except subprocess.TimeoutExpired:
            attacker.kill()
            attacker.wait()
        reader.join(5)
    return {
        "name": name, "deadline_s": deadline_s, "out": out, "err": err, "status": status, "timed_out": timed_out,
        "seconds": elapsed, "peak_rss_kib": rss.peak_kib,
        "ru_maxrss_kib": rusage.ru_maxrss if rusage else None,
        "listening": endpoint is not None, "feeder_error": feeder.error,
        "attack_to_release_s": (feeder.released_at - started) if feeder.released_at else None,
        "attacker": reader,
    }


def records(path):
    result = []
    with open(path, "rb") as f:
        for line in f:
            try:
                result.append(json.loads(line))
            except ValueError:
                result.append({"unparsable": line.decode("utf-8", "replace")})
    return result


def strip_run_fields(record):
    return {k: v for k, v in record.items() if k not in ("worker", "attempts")}


def check_attacked(checks, tmp, clean, clean_records, attacked):
    """Prints the figures of one attacked run and checks everything but its
    duration; returns its duration as a multiple of the clean run's."""
    name = attacked["name"]
    log = harness.read(attacked["err"])
    reader = attacked["attacker"]
    done = reader.last("attack-done") if reader else None
    final = reader.last("final") if reader else None
    phases = [e for e in (reader.events if reader else []) if e.get("event") == "phase"]
    out = records(attacked["out"]) if os.path.exists(attacked["out"]) else []
    # Peer b answers every item; those it was really sent (its own task, or one
    # that reached it after it forged) are its to answer, whatever it says.
    own = {i for e in phases if e["phase"] == "b-forged-with-run-id"
           for i in e.get("indices_sent_to_it", [])}
    own_answers = [r for r in out if r.get("index") in own and
                   r.get("worker") == "adversary-b" and "FORGED-b" in json.dumps(r)]
    out_checked = [r for r in out if r not in own_answers]
    forged = [r for r in out_checked if "FORGED" in json.dumps(r)]
    adversary_named = [r for r in out_checked if "adversary" in str(r.get("worker", ""))]
    differing = [(i, a, c) for i, (a, c) in enumerate(zip(out, clean_records))
                 if strip_run_fields(a) != strip_run_fields(c) and a not in own_answers]
    with_attempts = sum(1 for r in out if "attempts" in r)
    dropped = [line for line in log.splitlines() if "dropped" in line]
    ratio = attacked["seconds"] / clean["seconds"]

    print("--- figures of the %s run" % name)
    print("clean run:    %.2f s, exit %s, peak RSS %.1f MiB" % (
        clean["seconds"], clean["status"], clean["peak_rss_kib"] / 1024))
    print("attacked run: %.2f s (%.2fx the clean run), exit %s, peak RSS %.1f MiB "
          "(VmHWM polled; wait4 ru_maxrss %.1f MiB)" % (
              attacked["seconds"], ratio, attacked["status"],
              attacked["peak_rss_kib"] / 1024, (attacked["ru_maxrss_kib"] or 0) / 1024))
    if done:
        print("attack delivered in %.2f s: %d forged results in %d frames; the last item "
              "was released %.2f s after the coordinator started" % (
                  done["seconds"], done["forged_results"], done["forged_frames"],
                  attacked["attack_to_release_s"] or -1))
    for e in phases:
        print("  phase %s: %s" % (e["phase"], json.dumps(
            {k: v for k, v in e.items() if k not in ("event", "phase")})))
    if final:
        print("hoarder (claimed 0xffffffff slots): held %d task(s); resets %d, refused %s, "
              "stopped by the coordinator %s" % (
                  final["hoarded_tasks"], final["hoarder_resets"], final["hoarder_refused"],
                  final["hoarder_stopped"]))
    print("coordinator's log on drops: %s" % ("; ".join(dropped[-3:]) if dropped else "(none)"))
    print("records: %d, forged %d, naming an attacker %d, with \"attempts\" %d, "
          "differing from the clean run (but for worker/attempts) %d" % (
              len(out), len(forged), len(adversary_named), with_attempts, len(differing)))
    for i, a, c in differing[:5]:
        print("  record %d: attacked %s | clean %s" % (i, json.dumps(a), json.dumps(c)))
    tail = log.splitlines()[-15:]
    print("--- the %s coordinator's stderr (last %d lines)" % (name, len(tail)))
    for line in tail:
        print("  " + line[:300])
    print("---")

    checks.check("%s: the attack was delivered (attacker ran to attack-done)" % name,
                 done is not None,
                 harness.read(os.path.join(tmp, name + ".attacker.err"))[-500:])
    checks.check("%s: finished within %d s" % (name, attacked["deadline_s"]),
                 not attacked["timed_out"])
    checks.check("%s: exits 0" % name, attacked["status"] == 0, "exit %s" % attacked["status"])
    checks.check("%s: no record holds a forged value" % name, not forged,
                 "%d forged, first: %s" % (len(forged), json.dumps(forged[0]) if forged else ""))
    checks.check("%s: no record names an attacking peer" % name, not adversary_named)
    checks.check("%s: one record per item (%d)" % (name, ITEMS), len(out) == ITEMS,
                 "%d" % len(out))
    checks.check("%s: records equal the clean run's (worker/attempts aside)" % name,
                 len(out) == ITEMS and not differing, "%d differ" % len(differing))
    if final:
        checks.check("%s: the hoarder held at most %d tasks (an earning worker's initial "
                     "credit)" % (name, INITIAL_CREDIT),
                     final["hoarded_tasks"] <= INITIAL_CREDIT, "%d" % final["hoarded_tasks"])
    checks.check("%s: coordinator peak RSS <= 256 MiB" % name,
                 0 < attacked["peak_rss_kib"] <= MAX_RSS_KIB,
                 "%.1f MiB" % (attacked["peak_rss_kib"] / 1024))
    return ratio


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: forge_test.py BIN_DIR")
    harness.require_modules()
    fanmap, _ = harness.binaries(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="fanmap-adversary-forge.")
    procs = harness.Processes()
    checks = harness.Checks()
    started = time.monotonic()
    try:
        clean = run_job(procs, fanmap, tmp, "clean", attack=False)
        # The clean run is the reference: if it is wrong, nothing else means anything.
        clean_records = records(clean["out"])
        ok_clean = (clean["status"] == 0 and len(clean_records) == ITEMS and all(
            r.get("index") == i and r.get("ok") is True and r.get("result") == "item-%d" % i
            for i, r in enumerate(clean_records)))
        if not checks.check("clean run: exit 0, %d records in order" % ITEMS, ok_clean,
                            "exit %s, %d records; %s" % (clean["status"], len(clean_records),
                                                         harness.read(clean["err"])[-500:])):
            return checks.exit_status()

        attacked = run_job(procs, fanmap, tmp, "attacked", attack=True)
        ratio = check_attacked(checks, tmp, clean, clean_records, attacked)
        # Durations belong to benchmarks: the ratio is a figure to report (the
        # target is 2x), not a check. What keeps it small is checked instead:
        # the hoarder holds no more than an earning worker's initial credit.
        print("figure: attacked run %.2fx the clean run (%.2f s; target <= 2x)" % (
            ratio, clean["seconds"]))
        return checks.exit_status()
    finally:
        procs.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
