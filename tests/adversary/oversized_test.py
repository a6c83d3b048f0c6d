#!/usr/bin/python3
"""AdversaryOversizedTest: big frames and big results from peers cost the run
neither its time nor its records' limit.

    /usr/bin/python3 tests/adversary/oversized_test.py BIN_DIR

One coordinator, `fanmap -j 0 --listen tcp://127.0.0.1:* --heartbeat 600 --builtin
echo`, one item, no worker of its own:

1. A peer that never said HELLO sends three RESULTS frames of 100 MiB each.
   The coordinator must drop each without decoding it (decoding one took about
   a second of its only thread, during which no heartbeat went out and its
   workers took it for dead) and tell the peer to reset: stderr names a frame
   of that size from a peer that is not a worker of this run, and the peer
   gets RESET.
2. A peer says HELLO (1 slot), gets the run's only task and answers it ok
   with a value of 130 MiB, over the 128 MiB any result may hold: the record
   is an error ("result larger than 128 MiB"), not 130 MiB of output, and the
   run exits 1.
Nothing here waits on time but for deadlines on conditions.
"""

import json
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

harness.require_modules()
import zmq  # noqa: E402

import fanmap_wire as wire  # noqa: E402

BIG_FRAME_VALUE = 100 << 20
OVERSIZED_VALUE = 130 << 20


def receive(socket, seconds):
    """The next message the coordinator sends `socket`, decoded, or None."""
    if socket.poll(int(seconds * 1000)) == 0:
        return None
    return wire.decode(socket.recv())


def main():
    fanmap, _ = harness.binaries(sys.argv[1] if len(sys.argv) > 1 else "build/bin")
    tmp = tempfile.mkdtemp(prefix="fanmap-oversized-")
    path = lambda name: os.path.join(tmp, name)  # noqa: E731
    procs = harness.Processes()
    checks = harness.Checks()
    context = zmq.Context()
    try:
        with open(path("in"), "w") as f:
            f.write("only-item\n")
        with open(path("err"), "wb") as err:
            # --heartbeat: the peer below says nothing while its 130 MiB frame is on
            # the way, which can take longer than the default 5 s on a loaded machine;
            # silence is not what this test is about.
            coordinator = procs.start([fanmap, "-j", "0", "--listen", "tcp://127.0.0.1:*",
                                       "--heartbeat", "600", "--builtin", "echo",
                                       "--progress", "never",
                                       "-i", path("in"), "-o", path("out")], stderr=err)
        m = harness.wait_for_line(path("err"), r"^fanmap: listening on tcp://127\.0\.0\.1:(\d+)$",
                                  15, coordinator)
        if m is None:
            checks.check("the coordinator listens", False, harness.read(path("err")))
            return checks.exit_status()
        endpoint = "tcp://127.0.0.1:%s" % m.group(1)

        # 1. Big frames from a stranger.
        stranger = context.socket(zmq.DEALER)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.connect(endpoint)
        big = wire.results(wire.random_run_id(), [wire.result(0, 0, "x" * BIG_FRAME_VALUE)])
        for _ in range(3):
            stranger.send(big)
        answer = receive(stranger, 60)
        checks.check("a stranger's big frame is answered with RESET",
                     answer is not None and answer[1] == wire.RESET, repr(answer)[:200])
        line = harness.wait_for_line(
            path("err"), r"dropped a frame of (\d+) bytes from a peer that is not a worker", 30)
        checks.check("the big frame is dropped as a stranger's, undecoded",
                     line is not None and int(line.group(1)) >= BIG_FRAME_VALUE,
                     harness.read(path("err"))[-2000:])

        # 2. An oversized result from a worker that was sent the task.
        peer = context.socket(zmq.DEALER)
        peer.setsockopt(zmq.LINGER, 2000)
        peer.connect(endpoint)
        peer.send(wire.hello(1, "big-answers"))
        # JOB is [version, JOB, run_id, ...]; TASKS [version, TASKS, [[index, attempt, item]]].
        run_id, task = None, None
        for _ in range(20):
            message = receive(peer, 30)
            if message is None:
                break
            if message[1] == wire.JOB:
                run_id = message[2]
            if message[1] == wire.TASKS and message[2]:
                task = message[2][0]
                break
        checks.check("the peer is sent the job and the task", run_id is not None and task,
                     repr(task)[:200])
        if run_id is None or not task:
            return checks.exit_status()
        peer.send(wire.results(run_id, [wire.result(task[0], task[1], "y" * OVERSIZED_VALUE)]))
        status, _ = harness.wait_exit(coordinator, 60)
        checks.check("the run ends with exit status 1 (an item failed)", status == 1,
                     "status %r; %s" % (status, harness.read(path("err"))[-2000:]))
        out = harness.read(path("out"))
        checks.check("the record is small", len(out) < 4096, "%d bytes" % len(out))
        try:
            record = json.loads(out.splitlines()[0])
        except (ValueError, IndexError) as e:
            record = {"unreadable": str(e)}
        checks.check("the item's record is an error naming the limit",
                     record.get("index") == 0 and record.get("ok") is False
                     and record.get("error") == "result larger than 128 MiB", repr(record))
        return checks.exit_status()
    finally:
        context.destroy(linger=0)
        procs.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
