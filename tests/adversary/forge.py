#!/usr/bin/python3
"""A foreign peer that attacks a fanmap coordinator's task socket.

    forge.py --endpoint tcp://127.0.0.1:PORT --items N

Speaks the wire format (tests/adversary/fanmap_wire.py) with python3-zmq, never
the project's worker code, from several DEALER sockets:

  e  a hoarder: HELLO claiming 0xffffffff slots, then HEARTBEAT every 200 ms
     and never a result; it joins first and keeps going until the coordinator
     says STOP (or this process gets SIGTERM), counting the tasks it is sent.
     Since it holds tasks in flight before the forgeries start, a coordinator
     that believes forged results is caught every time.
  a  RESULTS with the value "FORGED-a" for every index 0..N-1, attempts 0..2,
     from sockets that never said HELLO, each frame with a random run id;
     every forged result (a, b, c) goes out in every shape a result has
     under protocol 3 (fanmap_wire.RESULT_SHAPES), so that it is well formed
     to the coordinator whichever it speaks;
  b  HELLO, read the JOB (the run id), then forged RESULTS with the right run
     id for every index this peer was never sent (attempts 0..2);
  c  HELLO, take tasks, and answer them (and every other index) with forged
     values under another run's id;
  d  hostile frames: 16M nils (16 MiB), 64M nils (64 MiB), 16M empty arrays,
     arrays nested 100000 deep, a RESULTS declaring 2^32-1 results and holding
     none, a RESULTS holding 16M nils where its results should be.

After each phase, every socket that sent something says HELLO and waits for
the JOB: frames of one connection are handled in order, so the JOB proves the
coordinator has dealt with everything sent before it (then the socket says
BYE). A connection the coordinator closes instead ends that wait at its
deadline.

stdout: one JSON object per line: {"event": "phase", ...} as phases end,
{"event": "attack-done", ...} once a-d are done (the hoarder goes on), and
{"event": "final", ...} when the hoarder stops. Diagnostics go to stderr.
"""

import argparse
import json
import signal
import sys
import time

sys.dont_write_bytecode = True
import zmq  # noqa: E402  (python3-zmq)

import fanmap_wire as wire  # noqa: E402

HEARTBEAT_EVERY_S = 0.2
RESULTS_PER_FRAME = 1000
ATTEMPTS = (0, 1, 2)
MAX_REJOINS = 3


def emit(event, **fields):
    fields["event"] = event
    print(json.dumps(fields), flush=True)


def log(line):
    print("forge: " + line, file=sys.stderr, flush=True)


class Peer:
    """One DEALER socket: one connection, one identity at the coordinator."""

    def __init__(self, context, endpoint, name):
        self.name = name
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 0)
        self.socket.setsockopt(zmq.RCVHWM, 0)
        self.socket.connect(endpoint)
        self.run_id = None
        self.jobs = 0
        self.tasks = []  # (index, attempt) in the order they came
        self.received = {}  # message type name -> count
        self.last_reason = None
        self.joined = False  # said HELLO and not BYE: heartbeats like a worker

    def send(self, frame):
        self.socket.send(frame, copy=len(frame) < (1 << 16))

    def hello(self, slots):
        self.send(wire.hello(slots, self.name))
        self.joined = True

    def bye(self, reason):
        self.send(wire.bye(reason))
        self.joined = False

    def drain(self):
        while True:
            try:
                frame = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            message = wire.decode(frame)
            kind = wire.type_name(message)
            self.received[kind] = self.received.get(kind, 0) + 1
            if message is None:
                continue
            if message[1] == wire.JOB and len(message) > 2:
                self.run_id = message[2]
                self.jobs += 1
            elif message[1] == wire.TASKS and len(message) > 2:
                for task in message[2]:
                    self.tasks.append((task[0], task[1]))
            elif message[1] in (wire.STOP, wire.RESET, wire.REFUSE) and len(message) > 2:
                self.last_reason = message[2]

    def close(self):
        self.socket.close(0)


class Adversary:
    def __init__(self, endpoint, items):
        self.endpoint = endpoint
        self.items = items
        self.context = zmq.Context()
        self.peers = []
        self.hoarder = None
        self.hoarded = 0  # tasks sent to earlier hoarder sockets (before a RESET)
        self.hoarder_resets = 0
        self.hoarder_refused = False
        self.hoarder_stopped = False
        self.next_heartbeat = 0.0
        self.terminated = False
        self.run_id = None
        self.sent_frames = 0
        self.sent_results = 0

    def peer(self, name):
        p = Peer(self.context, self.endpoint, name)
        self.peers.append(p)
        return p

    def forget(self, p):
        self.peers.remove(p)
        p.close()

    # --- the loop ----------------------------------------------------------------------
    def pump(self, seconds):
        """Receives on every socket for up to `seconds`; keeps the hoarder beating."""
        deadline = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            self.beat(now)
            wait_s = max(0, min(deadline - now, self.next_heartbeat - now))
            # Sockets come and go (a hoarder that is reset joins again): poll the current ones.
            poller = zmq.Poller()
            for p in self.peers:
                poller.register(p.socket, zmq.POLLIN)
            ready = dict(poller.poll(wait_s * 1000)) if self.peers else {}
            if not self.peers:
                time.sleep(wait_s)
            for p in self.peers:
                if p.socket in ready:
                    p.drain()
            self.watch_hoarder()
            if time.monotonic() >= deadline or self.terminated:
                return

    def wait_for(self, condition, seconds):
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() >= deadline or self.terminated:
                return False
            self.pump(min(0.05, deadline - time.monotonic()))
        return True

    def beat(self, now):
        """Every peer that said HELLO heartbeats, so that none is dropped as silent."""
        if now < self.next_heartbeat:
            return
        for p in self.peers:
            if p.joined and not p.received.get("STOP"):
                p.send(wire.heartbeat())
        self.next_heartbeat = now + HEARTBEAT_EVERY_S

    def watch_hoarder(self):
        h = self.hoarder
        if h is None or self.hoarder_stopped:
            return
        if h.received.get("STOP"):
            self.hoarder_stopped = True
        elif h.received.get("REFUSE"):
            self.hoarder_refused = True
            self.hoarder_stopped = True
        elif h.received.get("RESET"):
            # What a real worker does: drop everything, join again as a new peer.
            self.hoarder_resets += 1
            self.hoarded += len(h.tasks)
            self.forget(h)
            if self.hoarder_resets > MAX_REJOINS:
                self.hoarder = None
                self.hoarder_stopped = True
                return
            self.hoarder = self.peer("adversary-hoarder")
            self.hoarder.hello(0xFFFFFFFF)

    def hoarded_tasks(self):
        return self.hoarded + (len(self.hoarder.tasks) if self.hoarder else 0)

    # --- helpers -------------------------------------------------------------------------
    def send_results(self, sockets, run_id_of, entries):
        """Sends `entries` in frames of RESULTS_PER_FRAME, round robin over `sockets`,
        each chunk once in every result shape (wire.RESULT_SHAPES); run_id_of()
        gives each frame's run id."""
        frames = 0
        for k in range(0, len(entries), RESULTS_PER_FRAME):
            chunk = entries[k:k + RESULTS_PER_FRAME]
            for fields in wire.RESULT_SHAPES:
                p = sockets[frames % len(sockets)]
                p.send(wire.results(run_id_of(), chunk, fields))
                frames += 1
                self.sent_frames += 1
                self.sent_results += len(chunk)
                if frames % 8 == 0:
                    self.pump(0)

    def forged(self, indices, tag):
        return [wire.result(i, a, "FORGED-" + tag) for a in ATTEMPTS for i in indices]

    def sync(self, sockets, seconds):
        """HELLO on each socket, then waits for as many JOBs as it has ever had
        plus one: the coordinator has handled all that came before. Then BYE.
        Returns how many sockets got their JOB."""
        want = {id(p): p.jobs + 1 for p in sockets}
        for p in sockets:
            p.hello(1)
        self.wait_for(lambda: all(p.jobs >= want[id(p)] for p in sockets), seconds)
        synced = sum(1 for p in sockets if p.jobs >= want[id(p)])
        for p in sockets:
            p.bye("adversary done")
        self.pump(0.05)
        return synced

    def phase_done(self, name, started, **fields):
        fields.update(phase=name, seconds=round(time.monotonic() - started, 3),
                      hoarded_tasks=self.hoarded_tasks())
        emit("phase", **fields)

    # --- the phases ------------------------------------------------------------------------
    def hoard(self):
        started = time.monotonic()
        self.hoarder = self.peer("adversary-hoarder")
        self.hoarder.hello(0xFFFFFFFF)
        got = self.wait_for(lambda: self.hoarder is None or self.hoarder.tasks
                            or self.hoarder_stopped, 10)
        if self.hoarder is not None and self.hoarder.run_id:
            self.run_id = self.hoarder.run_id
        self.phase_done("e-hoarder-joined", started, got_tasks=bool(got and self.hoarded_tasks()),
                        run_id_known=self.run_id is not None)

    def forge_without_hello(self):
        started = time.monotonic()
        sockets = [self.peer("adversary-a%d" % k) for k in range(4)]
        self.send_results(sockets, wire.random_run_id, self.forged(range(self.items), "a"))
        synced = self.sync(sockets, 20)
        for p in sockets:
            self.forget(p)
        self.phase_done("a-forged-without-hello", started, sockets=len(sockets), synced=synced)

    def forge_after_hello(self):
        started = time.monotonic()
        p = self.peer("adversary-b")
        p.hello(1)
        joined = self.wait_for(lambda: p.run_id is not None or p.received.get("REFUSE"), 10)
        forged = 0
        synced = 0
        if p.run_id is not None:
            self.run_id = self.run_id or p.run_id
            # Its one slot's task follows the JOB (if any item is left to send);
            # holding it, it has no room for more. A task that comes later anyway
            # is reported below: its answer is b's to give.
            self.wait_for(lambda: p.tasks, 10)
            sent = {index for index, _ in p.tasks}
            entries = self.forged([i for i in range(self.items) if i not in sent], "b")
            self.send_results([p], lambda: p.run_id, entries)
            forged = len(entries)
            # A second HELLO from a known worker changes nothing: leave, then join again.
            p.bye("adversary rejoins")
            synced = self.sync([p], 20)
        self.forget(p)
        self.phase_done("b-forged-with-run-id", started, joined=bool(joined), forged=forged,
                        tasks_sent_to_it=len(p.tasks),
                        indices_sent_to_it=sorted({index for index, _ in p.tasks}),
                        synced=synced)

    def forge_other_run(self):
        started = time.monotonic()
        p = self.peer("adversary-c")
        p.hello(4)
        self.wait_for(lambda: p.tasks or p.received.get("REFUSE"), 3)
        other = wire.random_run_id()
        while other == p.run_id:
            other = wire.random_run_id()
        held = [wire.result(i, a, "FORGED-c") for i, a in p.tasks]
        entries = held + self.forged(range(self.items), "c")
        self.send_results([p], lambda: other, entries)
        p.bye("adversary rejoins")
        synced = self.sync([p], 20)
        self.forget(p)
        self.phase_done("c-forged-other-run-id", started, held_tasks_answered=len(held),
                        forged=len(entries), synced=synced)

    def hostile_frames(self):
        started = time.monotonic()
        run_id = self.run_id or wire.random_run_id()
        p = self.peer("adversary-d")
        m = 1 << 20
        builders = [
            ("16M nils (16 MiB)", lambda: wire.nils_array(16 * m)),
            ("64M nils (64 MiB)", lambda: wire.nils_array(64 * m)),
            ("16M empty arrays (16 MiB)", lambda: wire.empty_arrays_array(16 * m)),
            ("arrays nested 100000 deep", lambda: wire.nested_arrays(100000)),
            ("RESULTS declaring 2^32-1 results", lambda: wire.results_declaring(run_id,
                                                                                 0xFFFFFFFF)),
            ("RESULTS holding 16M nils (16 MiB)", lambda: wire.results_of_nils(run_id, 16 * m)),
        ]
        sent = []
        for name, build in builders:
            frame = build()
            p.send(frame)
            sent.append({"frame": name, "bytes": len(frame)})
            del frame
            self.pump(0.02)
        synced = self.sync([p], 20)
        self.forget(p)
        self.phase_done("d-hostile-frames", started, frames=sent, synced=synced)

    def run(self):
        started = time.monotonic()
        self.hoard()
        for phase in (self.forge_without_hello, self.forge_after_hello, self.forge_other_run,
                      self.hostile_frames):
            if self.terminated:
                break
            phase()
        emit("attack-done", seconds=round(time.monotonic() - started, 3),
             forged_frames=self.sent_frames, forged_results=self.sent_results,
             hoarded_tasks=self.hoarded_tasks(), run_id=self.run_id)
        # The hoarder keeps holding its tasks until the run is over.
        while not self.terminated and not self.hoarder_stopped:
            self.pump(0.5)
        emit("final", hoarded_tasks=self.hoarded_tasks(), hoarder_resets=self.hoarder_resets,
             hoarder_refused=self.hoarder_refused, hoarder_stopped=self.hoarder_stopped,
             hoarder_last_reason=self.hoarder.last_reason if self.hoarder else None)
        for p in list(self.peers):
            self.forget(p)
        self.context.term()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--items", type=int, required=True)
    args = parser.parse_args()
    adversary = Adversary(args.endpoint, args.items)

    def stop(signum, frame):
        adversary.terminated = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    adversary.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
