"""A TCP relay that sits between workers and a coordinator, forwards every byte
unchanged, and records the fanmap messages it sees go by.

Workers connect to `relay.port`; for each connection the relay connects to
127.0.0.1:`upstream_port` (or closes the worker's connection at once if that
fails or no upstream is set, as a refused connect would). When one side
closes, the relay half-closes the other (FIN, never a reset that would
discard data already delivered) and closes both once that side is done too:
to the worker, the coordinator's death looks as it would without the relay.

The relay parses ZMTP 3 (NULL mechanism: loopback without keys) in both
directions: the 64-byte greeting, then frames; commands (READY, ...) are
skipped, message frames are decoded with fanmap_wire.decode. A test can thus
wait on what really crossed the wire (the JOB and TASKS a worker was sent, the
RESULTS it sent and to which coordinator) instead of on time.
"""

import fcntl
import selectors
import socket
import struct
import termios
import threading
import time

import fanmap_wire as wire

TO_WORKER = "to-worker"
TO_COORDINATOR = "to-coordinator"


class ZmtpStream:
    """One direction of a ZMTP 3 connection, fed bytes as they come."""

    GREETING = 64

    def __init__(self, on_message):
        self.on_message = on_message
        self.buf = bytearray()
        self.greeted = False
        self.parts = []

    def feed(self, data):
        self.buf += data
        if not self.greeted:
            if len(self.buf) < self.GREETING:
                return
            del self.buf[:self.GREETING]
            self.greeted = True
        while len(self.buf) >= 2:
            flags = self.buf[0]
            if flags & 0x02:  # LONG: 8-byte size
                if len(self.buf) < 9:
                    return
                size, head = int.from_bytes(self.buf[1:9], "big"), 9
            else:
                size, head = self.buf[1], 2
            if len(self.buf) < head + size:
                return
            body = bytes(self.buf[head:head + size])
            del self.buf[:head + size]
            if flags & 0x04:  # COMMAND
                continue
            self.parts.append(body)
            if not flags & 0x01:  # no MORE: the message is complete
                parts, self.parts = self.parts, []
                self.on_message(parts)


class Event:
    def __init__(self, conn, direction, parts, forwarded):
        self.time = time.monotonic()
        self.conn = conn
        self.direction = direction
        self.message = wire.decode(parts[0]) if len(parts) == 1 else None
        self.forwarded = forwarded  # False: the other side was already gone

    @property
    def type(self):
        return self.message[1] if self.message else None

    def __repr__(self):
        return "conn %d %s %s" % (self.conn.number, self.direction, wire.type_name(self.message))


class Connection:
    def __init__(self, number, worker, coordinator, upstream_port):
        self.number = number
        self.worker = worker
        self.coordinator = coordinator
        self.upstream_port = upstream_port
        self.opened = time.monotonic()
        self.closed = None
        self.open_sides = 2
        self.run_id = None  # from the JOB sent on this connection

    def peer_of(self, sock):
        return self.coordinator if sock is self.worker else self.worker

    def unacked_to_worker(self):
        """Bytes sent to the worker that its kernel has not acknowledged yet."""
        try:
            out = fcntl.ioctl(self.worker.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
        except OSError:
            return -1
        return struct.unpack("i", out)[0]


class Relay(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.upstream_port = None
        self.connections = []
        self.events = []
        self.refused = 0  # worker connections closed because no coordinator answered
        self.lock = threading.Lock()
        self.stopping = False
        self.selector = selectors.DefaultSelector()

    # --- queries (any thread) ------------------------------------------------------------
    def find(self, predicate=lambda e: True):
        with self.lock:
            return [e for e in self.events if predicate(e)]

    def connection_list(self):
        with self.lock:
            return list(self.connections)

    def stop(self):
        self.stopping = True
        self.join(5)

    # --- the loop --------------------------------------------------------------------------
    def run(self):
        self.selector.register(self.listener, selectors.EVENT_READ)
        while not self.stopping:
            for key, _ in self.selector.select(0.05):
                if key.fileobj is self.listener:
                    self.accept()
                else:
                    self.pump(key.fileobj, key.data)
        for conn in self.connection_list():
            for s in (conn.worker, conn.coordinator):
                s.close()
        self.listener.close()

    def accept(self):
        worker, _ = self.listener.accept()
        port = self.upstream_port
        coordinator = None
        if port is not None:
            coordinator = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                coordinator.connect(("127.0.0.1", port))
            except OSError:
                coordinator.close()
                coordinator = None
        if coordinator is None:
            self.refused += 1
            worker.close()
            return
        for s in (worker, coordinator):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            conn = Connection(len(self.connections) + 1, worker, coordinator, port)
            self.connections.append(conn)
        conn.streams = {
            worker: ZmtpStream(lambda parts: self.record(conn, TO_COORDINATOR, parts)),
            coordinator: ZmtpStream(lambda parts: self.record(conn, TO_WORKER, parts)),
        }
        conn.no_send = set()  # sides that closed, or that we half-closed
        self.selector.register(worker, selectors.EVENT_READ, conn)
        self.selector.register(coordinator, selectors.EVENT_READ, conn)

    def record(self, conn, direction, parts):
        other = conn.coordinator if direction == TO_COORDINATOR else conn.worker
        event = Event(conn, direction, parts, forwarded=other not in conn.no_send)
        with self.lock:
            if event.type == wire.JOB and direction == TO_WORKER and len(event.message) > 2:
                conn.run_id = event.message[2]
            self.events.append(event)

    def pump(self, sock, conn):
        try:
            data = sock.recv(1 << 16)
        except OSError:
            data = b""
        other = conn.peer_of(sock)
        if data:
            if other not in conn.no_send:
                try:
                    other.sendall(data)
                except OSError:
                    conn.no_send.add(other)
            # Recorded after forwarding: an event means the bytes went on.
            conn.streams[sock].feed(data)
            return
        # `sock` closed (or failed): pass the FIN on, and stop reading it. What
        # its peer still sends is recorded but goes nowhere, as with no relay.
        self.selector.unregister(sock)
        conn.open_sides -= 1
        conn.no_send.update((sock, other))
        try:
            other.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if conn.open_sides == 0:
            conn.worker.close()
            conn.coordinator.close()
            conn.closed = time.monotonic()
