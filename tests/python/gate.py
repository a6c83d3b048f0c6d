"""A gate on a Unix socket: calls that reach it wait until the test opens it.

Tests use it instead of sleeps: the test knows when an item has started (and
in which process: SO_PEERCRED), and decides when it may finish.
"""
import os
import socket
import struct
import tempfile
import threading


class Gate:
    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="fanmap-gate-")
        self.path = os.path.join(self._dir.name, "gate.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(1024)
        self._cond = threading.Condition()
        self._open = False
        self._held = []
        self.arrivals = []  # (item text, pid of the caller)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(64)
                if not chunk:
                    break
                data += chunk
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid = struct.unpack("3i", creds)[0]
            with self._cond:
                self.arrivals.append((data.decode().strip(), pid))
                if self._open:
                    self._release(conn)
                else:
                    self._held.append(conn)
                self._cond.notify_all()

    @staticmethod
    def _release(conn):
        try:
            conn.sendall(b"go")
        except OSError:
            pass
        conn.close()

    def wait_arrivals(self, n, deadline=120):
        """Waits until `n` calls have reached the gate (a failure bound, not a
        timing assumption)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.arrivals) >= n, deadline):
                raise AssertionError(f"only {len(self.arrivals)} of {n} calls reached the gate")
            return list(self.arrivals)

    def open(self):
        with self._cond:
            self._open = True
            for conn in self._held:
                self._release(conn)
            self._held.clear()

    def close(self):
        self.open()
        self._sock.close()
        self._dir.cleanup()
