"""fanmap.Executor: a concurrent.futures.Executor whose workers are fanmap's.

One fanmap run per Executor, started at the first submit() or map():
    fanmap --unordered -j WORKERS --slots SLOTS ... \
           --pipe 'exec PYTHON -m fanmap.serve --items call --pipe-answers lines'
Each call is one item line naming its function (see fanmap.codec), so one run
serves every function, as a process pool does. Results come back in
finishing order and are matched to their futures (or map positions) by the
record's index; map() yields them in input order itself.
"""
import collections
import concurrent.futures
import itertools
import os
import shlex
import sys
import threading
import time
import weakref

from . import binary, codec, funcref
from .errors import BrokenExecutor, TaskError
from .run import Run, RunEnded

_TimeoutError = concurrent.futures.TimeoutError
# With chunks, map() keeps at least this many calls (and 32 chunks) in
# flight by default: fanmap writes records in batches (every 20 ms or 64 KiB),
# so a few chunks in flight would leave the workers waiting for those batches
# to reach the caller (2M calls/s x 20 ms = 40,000 calls).
CHUNKED_AHEAD = 65536


def _task_error(record):
    return TaskError(f"fanmap gave up on this item: {record.get('error', 'no result')}", record)


class _MapState:
    """The results of one map() call that have arrived and not been yielded."""
    __slots__ = ("results", "sizes", "chunks", "cond", "ended", "closed")

    def __init__(self):
        # position -> the answer text (a success), fanmap's record (a failure),
        # or an exception to raise there
        self.results = {}
        self.sizes = {}  # position -> number of calls, for a chunk
        self.chunks = {}  # position -> its calls (argument tuples), for a chunk
        self.cond = threading.Condition()
        self.ended = None  # the run ended before answering: raise this
        self.closed = False  # the generator is gone: drop what arrives


class Executor(concurrent.futures.Executor):
    """Runs calls on fanmap workers; see the package README for how it differs
    from ProcessPoolExecutor.

    workers: local worker processes (-j; default: os.cpu_count(); 0: only
        remote workers, with listen=). slots: calls in flight per worker.
    listen: endpoint(s) where workers on other machines may join
        (`fanmap-worker --connect ENDPOINT`); they need this package and the
        function's module too. retries, timeout: fanmap's --retries and
        --timeout (seconds per attempt). serializer: "json" (default) or
        "pickle" (refused with listen= unless curve_secret= and
        authorized_keys= are given). python: the interpreter workers run
        (default: this one). max_pending: submitted calls handed to fanmap at
        once; the rest wait in this process and can be cancelled.
    Other keyword arguments become fanmap flags (window=100 -> --window 100).
    """

    def __init__(self, workers=None, slots=1, listen=None, retries=None, timeout=None, *,
                 serializer="json", fanmap_bin=None, python=None, max_pending=None,
                 **fanmap_options):
        if serializer not in codec.SERIALIZERS:
            raise ValueError(f"serializer must be one of {codec.SERIALIZERS}, not {serializer!r}")
        listens = [] if listen is None else [listen] if isinstance(listen, str) else list(listen)
        if serializer == "pickle" and listens and not (
                fanmap_options.get("curve_secret") and fanmap_options.get("authorized_keys")):
            raise ValueError(
                "serializer='pickle' with listen= needs curve_secret= and authorized_keys=: "
                "unpickling a result runs code, so results are accepted only from workers "
                "that hold an authorized CURVE key")
        if workers is None:
            workers = os.cpu_count() or 1
        if workers < 0 or slots < 1:
            raise ValueError("workers must be >= 0 and slots >= 1")
        if workers == 0 and not listens:
            raise ValueError("workers=0 needs listen= (remote workers only)")
        self._serializer = serializer
        self._allow_pickle = serializer == "pickle"
        self._python = python or sys.executable
        # Answers this process decodes itself (fanmap passes them on as text),
        # whatever a FANMAP_PIPE_ANSWERS around it says.
        command = [self._python, "-m", "fanmap.serve", "--items", "call", "--pipe-answers",
                   "lines"]
        if self._allow_pickle:
            command.append("--pickle")
        # A library keeps stderr for errors: no end-of-run summary unless
        # quiet=False is passed.
        options = {"progress": "never", "quiet": True}
        options.update(fanmap_options)
        argv = [binary.find(fanmap_bin), "--unordered", "-j", str(workers), "--slots", str(slots)]
        for endpoint in listens:
            argv += ["--listen", endpoint]
        if retries is not None:
            argv += ["--retries", str(int(retries))]
        if timeout is not None:
            argv += ["--timeout", repr(float(timeout))]
        argv += binary.option_flags(options)
        argv += ["--pipe", "exec " + shlex.join(command)]
        self._argv = argv
        self._max_pending = max_pending or max(64, 4 * max(1, workers) * slots)
        self._lock = threading.Lock()
        self._run = None
        self._shutdown = False
        self._broken = None
        self._queue = collections.deque()  # (future, line) not handed to fanmap yet
        self._in_flight = 0  # submitted calls handed to fanmap and not settled
        self._prefixes = {}

    # -- the run -----------------------------------------------------------

    def _environment(self):
        env = dict(os.environ)
        # Workers import functions from where this process does. Another
        # interpreter (python=) gets only the folders outside this one's.
        paths = [os.getcwd() if p == "" else p for p in sys.path]
        paths = [p for p in dict.fromkeys(paths) if os.path.isdir(p)]
        if self._python != sys.executable:
            own = tuple(os.path.join(os.path.realpath(d), "")
                        for d in {sys.prefix, sys.base_prefix})
            paths = [p for p in paths if not os.path.join(os.path.realpath(p), "").startswith(own)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def _ensure_run(self):
        """The run, started if need be. Call with self._lock held."""
        if self._broken is not None:
            raise self._broken
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if self._run is None:
            self._run = Run(self._argv, self._environment(), self._deliver, self._on_end)
            weakref.finalize(self, self._run.close_input)
        return self._run

    @property
    def fanmap_pid(self):
        """The pid of the fanmap coordinator (None before the first call)."""
        return self._run.pid if self._run is not None else None

    def _prefix(self, fn):
        prefix = self._prefixes.get(fn)
        if prefix is None:
            prefix = self._prefixes[fn] = codec.call_prefix(funcref.reference(fn))
        return prefix

    def _deliver(self, batch):
        """Reader thread: records for futures and map positions."""
        touched = set()
        settled = 0
        allow_pickle = self._allow_pickle
        for sink, record in batch:
            if type(sink) is tuple:
                state, pos = sink
                if not state.closed:
                    # Only the answer text of a success is kept: up to `buffersize`
                    # of these wait here when the consumer lags.
                    state.results[pos] = record["result"] if record.get("ok") else record
                    touched.add(state)
                continue
            settled += 1
            if record.get("ok"):
                try:
                    value = codec.decode_answer(record["result"], allow_pickle)
                except BaseException as e:
                    sink.set_exception(e)
                else:
                    sink.set_result(value)
            else:
                sink.set_exception(_task_error(record))
        for state in touched:
            with state.cond:
                state.cond.notify_all()
        if settled:
            with self._lock:
                self._in_flight -= settled
                self._pump()

    def _on_end(self, error, orphans):
        """Reader thread: fanmap has exited."""
        with self._lock:
            if error is not None:
                self._broken = error
            queued = [f for f, _ in self._queue]
            self._queue.clear()
        for sink in orphans + queued:
            exc = error or BrokenExecutor("the fanmap run ended before this call was sent")
            if type(sink) is tuple:
                state = sink[0]
                with state.cond:
                    state.ended = exc
                    state.cond.notify_all()
            elif not sink.done():
                if sink.running() or sink.set_running_or_notify_cancel():
                    sink.set_exception(exc)

    def _ended_error(self, ended):
        """The exception for calls that a run which had already ended
        (RunEnded) could not take. With self._lock held."""
        if ended.error is not None:
            self._broken = ended.error
            return ended.error
        return BrokenExecutor("the fanmap run ended before this call was sent")

    def _pump(self):
        """Hands queued calls to fanmap up to max_pending. With self._lock held."""
        batch_lines, batch_futures = [], []
        while self._queue and self._in_flight < self._max_pending:
            future, line = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited here
            batch_lines.append(line)
            batch_futures.append(future)
            self._in_flight += 1
        if batch_lines:
            try:
                self._run.send(batch_lines, batch_futures)
            except RunEnded as ended:  # fanmap exited before we could tell
                self._in_flight -= len(batch_futures)
                exc = self._ended_error(ended)
                for future in batch_futures:
                    future.set_exception(exc)
        if self._shutdown and not self._queue and self._run is not None:
            self._run.close_input()

    # -- concurrent.futures.Executor -----------------------------------------

    def submit(self, fn, /, *args, **kwargs):
        prefix = self._prefix(fn)
        future = concurrent.futures.Future()
        with self._lock:
            self._ensure_run()
            try:
                line = codec.encode_call(prefix, self._serializer, args, kwargs)
            # JSON's TypeError, pickle's PicklingError or AttributeError: as
            # ProcessPoolExecutor, the future fails, not submit().
            except Exception as e:
                future.set_running_or_notify_cancel()
                future.set_exception(e)
                return future
            self._queue.append((future, line))
            self._pump()
        return future

    submit.__doc__ = concurrent.futures.Executor.submit.__doc__

    def map(self, fn, *iterables, timeout=None, chunksize=None, buffersize=None):
        """Like Executor.map: results in input order, an item's exception
        raised when its result is reached, TimeoutError if a result is not
        there `timeout` seconds after this call. Unlike it, the iterables are
        read lazily: at most `buffersize` calls are sent ahead of the result
        being yielded (default 8192; 65536 once calls travel in chunks), so
        an endless generator works and memory stays bounded. So an exception
        of the iterables is raised from the iterator, not from this call:
        after the result of every call read before it (chunked or not).

        chunksize: calls per fanmap item (one line, one answer). None (the
        default) chooses: calls go one per chunk until their cost is
        measured, then in chunks that take about 2 ms (at most 1000 calls),
        so cheap calls cost the caller far less and slow ones still go
        alone. An int fixes it, as ProcessPoolExecutor's chunksize does
        (1: every call alone). A chunk is retried and timed out as a whole;
        an exception is still raised at its own call, after the values
        before it in its chunk, and a chunk fanmap gives up on is sent again
        call by call."""
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None and int(buffersize) < 1:
            raise ValueError("buffersize must be >= 1.")
        prefix = self._prefix(fn)
        end = None if timeout is None else time.monotonic() + timeout
        state = _MapState()
        feed = _Feeder(self, state, prefix, zip(*iterables), chunksize,
                       None if buffersize is None else int(buffersize))
        feed.top_up()  # like the standard map, work starts before the first next()
        return self._results(state, feed, end)

    def _results(self, state, feed, end):
        pos = 0
        allow_pickle = self._allow_pickle
        try:
            while True:
                feed.top_up()
                if pos == feed.fed:
                    if feed.error is not None:
                        raise feed.error
                    return
                results = state.results
                item = results.pop(pos, None)
                if item is None:
                    with state.cond:
                        while pos not in results and state.ended is None:
                            if end is None:
                                state.cond.wait()
                            else:
                                left = end - time.monotonic()
                                if left <= 0:
                                    raise _TimeoutError()
                                state.cond.wait(left)
                        item = results.pop(pos, None)
                        if item is None:
                            raise state.ended
                count = state.sizes.pop(pos, None)  # a chunk of `count` calls, or one call
                pos += 1
                feed.items_ahead -= count or 1
                if type(item) is str:
                    if count is None:
                        yield codec.decode_answer(item, allow_pickle)
                        continue
                    values, error, micros = codec.decode_chunk_answer(item, count, allow_pickle)
                    feed.observe(micros, len(values) + (error is not None))
                    yield from values
                    if error is not None:
                        raise error
                elif isinstance(item, BaseException):
                    raise item
                elif count is None or count == 1:
                    raise _task_error(item)
                else:
                    # fanmap gave up on a chunk as a whole (its co-process died or
                    # it timed out, every attempt): its calls go again one by one,
                    # so that the failure is raised at the call that causes it.
                    for future in self._send_calls(feed.prefix, state.chunks.pop(pos - 1)):
                        yield future.result(None if end is None else
                                            max(0.0, end - time.monotonic()))
                state.chunks.pop(pos - 1, None)
        finally:
            state.closed = True
            state.results.clear()
            state.chunks.clear()

    def _send_calls(self, prefix, calls):
        """Sends each of `calls` (argument tuples) as its own line; returns
        their futures."""
        lines = [codec.encode_call(prefix, self._serializer, args) for args in calls]
        futures = [concurrent.futures.Future() for _ in calls]
        for future in futures:
            future.set_running_or_notify_cancel()
        with self._lock:
            run = self._ensure_run()
            try:
                run.send(lines, futures)
            except RunEnded as ended:
                exc = self._ended_error(ended)
                for future in futures:
                    future.set_exception(exc)
            else:
                self._in_flight += len(futures)
        return futures

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for future, _ in self._queue:
                    future.cancel()
                self._queue.clear()
            run = self._run
            if run is not None:
                self._pump()  # closes fanmap's input once nothing waits here
        if wait and run is not None:
            run.join()

    shutdown.__doc__ = concurrent.futures.Executor.shutdown.__doc__


_END = object()


class _Feeder:
    """Pulls a map's calls from its iterables, in the consumer's thread, and
    sends them, one call or one chunk per line, so that at most `ahead`
    calls are sent and not yet yielded."""

    # A chosen chunk takes about this long on a worker, and holds at most
    # MAX_CHUNK calls: long enough that the caller's cost per line is small
    # against it, short enough that a chunk's retry or timeout costs little.
    TARGET_MICROS = 2000
    MAX_CHUNK = 1000

    def __init__(self, executor, state, prefix, calls, chunksize, buffersize):
        self.executor = executor
        self.state = state
        self.prefix = prefix
        self.calls = calls
        self.auto = chunksize is None
        self.chunksize = 1 if chunksize is None else int(chunksize)
        self.chunked = chunksize != 1  # lines in the chunk format (the answer says its time)
        self.buffersize = buffersize
        self.per_call = None  # measured microseconds per call (auto)
        self.fed = 0  # lines sent: map positions
        self.items_ahead = 0  # calls sent and not yet yielded (the consumer lowers it)
        self.done = False
        self.error = None  # raised by the iterables: raised after the results before it

    def _ahead(self):
        if self.buffersize is not None:
            return self.buffersize
        return 8192 if self.chunksize == 1 else CHUNKED_AHEAD

    def observe(self, micros, calls):
        """The consumer read the answer to a chunk of `calls` that took
        `micros` on its worker: the next chunks are sized from it."""
        if not self.auto or calls <= 0:
            return
        each = micros / calls
        self.per_call = each if self.per_call is None else 0.7 * self.per_call + 0.3 * each
        size = int(self.TARGET_MICROS / max(self.per_call, 0.1))
        cap = self.MAX_CHUNK if self.buffersize is None else max(1, self.buffersize // 8)
        self.chunksize = max(1, min(size, cap))

    def top_up(self):
        ahead = self._ahead()
        if self.done or self.items_ahead > ahead // 2:
            return
        self.lines, self.sinks = [], []
        try:
            while self.items_ahead < ahead:
                if not self.chunked:
                    args = next(self.calls, _END)
                    if args is _END:
                        self.done = True
                        break
                    self._add_one(args)
                    continue
                size = min(self.chunksize, ahead - self.items_ahead)
                chunk = self._pull(size)
                if chunk:
                    self._add_chunk(chunk)
                if len(chunk) < size:  # the iterables ended or raised
                    self.done = True
                    break
        except Exception as e:  # the iterable itself failed
            self.error = e
            self.done = True
        lines, sinks = self.lines, self.sinks
        self.lines = self.sinks = None
        if lines:
            ex = self.executor
            with ex._lock:
                try:
                    ex._ensure_run().send(lines, sinks)
                except RunEnded as ended:
                    raise ex._ended_error(ended) from None

    def _pull(self, size):
        """Up to `size` calls from the iterables, fewer if they end. If they
        raise, the calls pulled before it are returned (they are sent, and
        their results yielded) and the exception is kept for after them: a
        list(islice(...)) would lose them with the exception."""
        chunk = []
        append = chunk.append
        try:
            for args in itertools.islice(self.calls, size):
                append(args)
        except Exception as e:  # the iterable itself failed
            self.error = e
        return chunk

    def _add_one(self, args):
        try:
            self.lines.append(codec.encode_call(self.prefix, self.executor._serializer, args))
            self.sinks.append((self.state, self.fed))
        except Exception as e:  # cannot be encoded: its own result, raised when reached
            self.state.results[self.fed] = e
        self.fed += 1
        self.items_ahead += 1

    def _add_chunk(self, chunk):
        try:
            line = codec.encode_chunk(self.prefix, self.executor._serializer, chunk)
        except Exception:
            # One of them cannot travel (JSON's TypeError, pickle's
            # PicklingError...): each goes alone, and that one's error is
            # raised at its place.
            for args in chunk:
                self._add_one(args)
            return
        self.lines.append(line)
        self.sinks.append((self.state, self.fed))
        self.state.sizes[self.fed] = len(chunk)
        self.state.chunks[self.fed] = chunk  # sent again call by call if fanmap gives up on it
        self.fed += 1
        self.items_ahead += len(chunk)
