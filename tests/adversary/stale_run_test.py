#!/usr/bin/python3
"""AdversaryStaleRunTest: results of a killed coordinator's run must not land
in the next run on the same port.

    /usr/bin/python3 tests/adversary/stale_run_test.py BIN_DIR

The scenario:
    printf 'A-item-%s\\n' 0 1 2 3 >inA; printf 'B-item-%s\\n' 0 1 2 3 >inB
    fanmap-worker --connect tcp://127.0.0.1:PORT --slots 4 &
    fanmap -j 0 --listen tcp://127.0.0.1:PORT --builtin sleep:1500 -i inA -o outA &
    ... once the worker holds A's four tasks: kill -9 the coordinator
    fanmap -j 0 --listen tcp://127.0.0.1:PORT --builtin echo -i inB -o outB
outB must hold exactly B-item-0..3, in order, all from that worker, and the
second coordinator must exit 0.

No sleeps and no luck decide what happens:
  * The worker reaches PORT through tests/adversary/zmtp_relay.py, which
    forwards bytes unchanged and records the messages. Coordinator A is killed
    once the relay has passed A's four tasks to the worker and the worker's
    kernel has acknowledged them; the tasks sleep 1.5 s, so their results
    cannot have reached A (the relay shows whether one did: the attempt is
    then repeated).
  * A runs with --heartbeat 120: the worker heartbeats every 24 s and waits
    120 s for a silent coordinator, so the first thing it sends after A's
    death is its RESULTS of run A, to whoever listens on PORT by then: B.
    (With the default 5 s the worker's own heartbeat, due 1 s after its HELLO,
    could reach B before the results and get it reset; the stale results
    would then never be sent, whatever B does with them.)
The relay also tells whether the stale results reached B (or B spoke to the
worker first), and which run the worker ended up serving.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

harness.require_modules()
import fanmap_wire as wire  # noqa: E402
import zmtp_relay  # noqa: E402

WORKER_NAME = "stale-worker"
TRIES = 3


def results_entries(events):
    return [entry for e in events for entry in e.message[3]]


def scenario(procs, fanmap, worker_bin, tmp):
    """Plays the scenario once; returns a dict of what happened."""
    os.makedirs(tmp)
    path = lambda name: os.path.join(tmp, name)  # noqa: E731
    with open(path("inA"), "w") as f:
        f.write("".join("A-item-%d\n" % i for i in range(4)))
    with open(path("inB"), "w") as f:
        f.write("".join("B-item-%d\n" % i for i in range(4)))
    seen = {"precondition": None}
    relay = zmtp_relay.Relay()
    relay.start()
    try:
        with open(path("errA"), "wb") as err:
            a = procs.start([fanmap, "-j", "0", "--listen", "tcp://127.0.0.1:*", "--builtin",
                             "sleep:1500", "--heartbeat", "120", "--progress", "never",
                             "-i", path("inA"), "-o", path("outA")], stderr=err)
        m = harness.wait_for_line(path("errA"), r"^fanmap: listening on tcp://127\.0\.0\.1:(\d+)$",
                                  15, a)
        if m is None:
            seen["precondition"] = "coordinator A did not listen: " + harness.read(path("errA"))
            return seen
        port = int(m.group(1))
        relay.upstream_port = port
        with open(path("errW"), "wb") as err:
            worker = procs.start([worker_bin, "--connect", "tcp://127.0.0.1:%d" % relay.port,
                                  "--slots", "4", "--name", WORKER_NAME], stderr=err)

        # A's four tasks have crossed the relay and the worker's kernel has them.
        def tasks_delivered():
            tasks = relay.find(lambda e: e.direction == zmtp_relay.TO_WORKER
                               and e.type == wire.TASKS and e.conn.upstream_port == port)
            count = sum(len(e.message[2]) for e in tasks)
            return count >= 4 and all(e.conn.unacked_to_worker() == 0 for e in tasks) and tasks

        tasks = harness.wait_for(tasks_delivered, 20)
        if not tasks:
            seen["precondition"] = "A's tasks never reached the worker"
            return seen
        run_a = tasks[0].conn.run_id
        a_conn = tasks[0].conn
        a.send_signal(signal.SIGKILL)
        a.wait()
        killed_at = time.monotonic()
        seen["run_a"] = run_a
        seen["tasks_a"] = [(t[0], t[1], t[2]) for e in tasks for t in e.message[2]]
        # Results that went to A (or into its dead connection) spoil the scenario.
        early = relay.find(lambda e: e.conn is a_conn and e.type == wire.RESULTS)
        if early:
            seen["precondition"] = "the worker's results went to A before it was killed"
            return seen

        with open(path("errB"), "wb") as err:
            b = procs.start([fanmap, "-j", "0", "--listen", "tcp://127.0.0.1:%d" % port,
                             "--builtin", "echo", "-i", path("inB"), "-o", path("outB")],
                            stderr=err)
        status_b, _ = harness.wait_exit(b, 40)
        seen["b_timed_out"] = status_b is None
        if status_b is None:
            b.kill()
            status_b, _ = harness.wait_exit(b, 10)
        seen["status_b"] = status_b
        # The worker leaves when B says STOP; if B never let it join, stop it.
        try:
            worker.wait(5)
        except subprocess.TimeoutExpired:
            worker.terminate()
            worker.wait(5)
        seen["worker_status"] = worker.returncode

        after = [c for c in relay.connection_list() if c.opened > killed_at]
        first = {}
        for e in relay.find(lambda e: e.conn in after):
            first.setdefault(e.conn.number, e)
        stale = relay.find(lambda e: e.conn in after and e.direction == zmtp_relay.TO_COORDINATOR
                           and e.type == wire.RESULTS and e.message[2] == run_a)
        run_b = [c.run_id for c in after if c.run_id]
        served_b = relay.find(lambda e: e.conn in after and e.type == wire.RESULTS
                              and e.direction == zmtp_relay.TO_COORDINATOR
                              and run_b and e.message[2] == run_b[0])
        seen["stale_results"] = results_entries(stale)
        seen["stale_forwarded"] = all(e.forwarded for e in stale)
        seen["b_spoke_first"] = any(e.direction == zmtp_relay.TO_WORKER for e in first.values())
        seen["run_b"] = run_b[0] if run_b else None
        seen["served_b"] = results_entries(served_b)
        seen["connections_after_kill"] = len(after)
        seen["timeline"] = ["%+.3f s %r" % (e.time - killed_at, e) for e in relay.find()]
        seen["outB"] = harness.read(path("outB"))
        seen["errB"] = harness.read(path("errB"))
        seen["errW"] = harness.read(path("errW"))
        # The scenario happened if the worker, holding run A's results, reached B:
        # it sent them to B, or B spoke to it before it could.
        if not stale and not seen["b_spoke_first"]:
            seen["precondition"] = "the worker never sent run A's results to B"
        return seen
    finally:
        relay.stop()
        procs.cleanup()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: stale_run_test.py BIN_DIR")
    fanmap, worker_bin = harness.binaries(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="fanmap-adversary-stale.")
    checks = harness.Checks()
    try:
        for attempt in range(1, TRIES + 1):
            procs = harness.Processes()
            seen = scenario(procs, fanmap, worker_bin, os.path.join(tmp, "try%d" % attempt))
            if seen["precondition"] is None:
                break
            print("try %d: scenario not set up (%s); again" % (attempt, seen["precondition"]))
        if not checks.check("the scenario was set up (try %d of at most %d)" % (attempt, TRIES),
                            seen["precondition"] is None, seen["precondition"] or ""):
            return checks.exit_status()

        print("--- what crossed the wire (times from the kill -9 of A)")
        for line in seen["timeline"]:
            print("  " + line)
        print("run A %s: the worker held %s" % (seen["run_a"], seen["tasks_a"]))
        print("run B %s; stale results of run A sent to B: %d (%s)%s" % (
            seen["run_b"], len(seen["stale_results"]),
            ", ".join("%s=%r" % (r[0], r[3]) for r in seen["stale_results"]),
            "; B spoke to the worker first" if seen["b_spoke_first"] else ""))
        print("--- outB")
        print(seen["outB"], end="")
        print("--- B's stderr")
        print(seen["errB"], end="")
        print("---")

        records = []
        for line in seen["outB"].splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"unparsable": line})
        expected = ["B-item-%d" % i for i in range(4)]
        checks.check("B finished within 40 s", not seen["b_timed_out"])
        checks.check("B exits 0", seen["status_b"] == 0, "exit %s" % seen["status_b"])
        checks.check("outB holds no result of run A",
                     not any("A-item" in json.dumps(r) for r in records))
        checks.check("outB is exactly B-item-0..3 in order, all ok",
                     [(r.get("index"), r.get("ok"), r.get("result")) for r in records]
                     == [(i, True, v) for i, v in enumerate(expected)])
        checks.check("every record of B comes from %s" % WORKER_NAME,
                     len(records) == 4 and all(r.get("worker") == WORKER_NAME for r in records),
                     str([r.get("worker") for r in records]))
        checks.check("the worker served run B (its RESULTS carry B's run id)",
                     sorted(r[0] for r in seen["served_b"]) == [0, 1, 2, 3],
                     "indexes %s" % sorted(r[0] for r in seen["served_b"]))
        return checks.exit_status()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
