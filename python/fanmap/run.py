"""One fanmap run in --unordered mode, fed and read by two threads.

Items go in as lines; fanmap numbers them in the order they arrive (0, 1,
...) and answers each with one record naming that index. `send()` assigns
the indexes and queues the bytes under one lock, so concurrent senders
cannot mix them up; a writer thread feeds fanmap's stdin; a reader thread
parses its stdout and hands each record to whoever sent the item (its
"sink"). Neither thread ever waits for a consumer: how much is in flight is
bounded by the senders (Executor: its pending limit; map: its look-ahead).
"""
import collections
import threading

from . import codec
from .errors import BrokenExecutor, FanmapError
from .binary import Process


class RunEnded(FanmapError):
    """send() after fanmap exited (or its input was closed): `error` is the
    run's BrokenExecutor, or None if it ended without one."""

    def __init__(self, error):
        super().__init__(str(error) if error is not None else "the fanmap run is closed")
        self.error = error


class Run:
    def __init__(self, argv, env, deliver, on_end):
        """`deliver(sinks_and_records)` is called on the reader thread with a
        list of (sink, record) for each chunk read; `on_end(error,
        orphans)` once when fanmap has exited, with the sinks that got no
        record (error is None if there were none and fanmap exited 0 or 1)."""
        self._deliver = deliver
        self._on_end = on_end
        self.process = Process(argv, env)
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._chunks = collections.deque()
        self._next_index = 0
        self._pending = {}
        self._closing = False
        self.ended = None  # set (an exception, or True) once fanmap has exited
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name="fanmap-writer")
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name="fanmap-reader")
        self._writer.start()
        self._reader.start()

    @property
    def pid(self):
        return self.process.proc.pid

    def send(self, lines, sinks):
        """Queues `lines` (str, without "\\n") as the next items; sinks[i]
        gets the record of lines[i]. Raises RunEnded if the run has ended
        or its input is closed: then no sink is kept."""
        data = ("\n".join(lines) + "\n").encode("utf-8")
        with self.lock:
            if self._closing or self.ended is not None:
                raise RunEnded(self.ended if isinstance(self.ended, BaseException) else None)
            base = self._next_index
            pending = self._pending
            for i, sink in enumerate(sinks):
                pending[base + i] = sink
            self._next_index = base + len(lines)
            self._chunks.append(data)
            self._wake.notify()

    def close_input(self):
        """No more items: fanmap finishes those it has and exits."""
        with self.lock:
            self._closing = True
            self._wake.notify()

    def join(self, timeout=None):
        self._reader.join(timeout)

    def _write_loop(self):
        out = self.process.proc.stdin
        while True:
            with self.lock:
                while not self._chunks and not self._closing:
                    self._wake.wait()
                if not self._chunks:
                    break
                data = b"".join(self._chunks)
                self._chunks.clear()
            try:
                view = memoryview(data)
                while view:
                    view = view[out.write(view):]
            except OSError:  # fanmap is gone: the reader reports why
                break
        try:
            out.close()
        except OSError:
            pass

    def _read_loop(self):
        src = self.process.proc.stdout
        decode = codec.decode_json
        pending = self._pending
        rest = b""
        problem = None
        while True:
            chunk = src.read(1 << 16)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            batch = []
            with self.lock:
                for line in lines:
                    try:
                        record = decode(line.decode("utf-8"))
                        sink = pending.pop(record["index"])
                    except (ValueError, KeyError, TypeError) as e:
                        problem = problem or f"unexpected output from fanmap ({e}): {line[:200]!r}"
                        continue
                    batch.append((sink, record))
            if batch:
                self._deliver(batch)
        code = self.process.wait()
        # One step: a send() that finds the run closed also finds why.
        with self.lock:
            orphans = list(self._pending.values())
            self._pending.clear()
            self._closing = True
            error = None
            if orphans or code not in (0, 1) or problem:
                why = self.process.describe_exit(code)
                if problem:
                    why += "; " + problem
                if orphans:
                    why += f" ({len(orphans)} item(s) without a result)"
                error = BrokenExecutor(why)
            self.ended = error or True
            self._wake.notify()
        self._on_end(error, orphans)
