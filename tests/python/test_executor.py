"""fanmap.Executor against the behaviour the standard library documents for
Executor.map, submit and shutdown, with real fanmap and worker processes."""
import concurrent.futures
import itertools
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import fanmap
import fanmap_testfns as fns

DEADLINE = 120  # a failure bound only


@pytest.fixture
def ex(fanmap_bin):
    with fanmap.Executor(2, fanmap_bin=fanmap_bin) as e:
        yield e


def test_is_an_executor(fanmap_bin):
    assert issubclass(fanmap.Executor, concurrent.futures.Executor)


def test_map_keeps_input_order(ex):
    assert list(ex.map(fns.square, range(2000))) == [x * x for x in range(2000)]


def test_map_empty_input(ex):
    assert list(ex.map(fns.square, [])) == []
    assert list(ex.map(fns.square)) == []  # no iterables: zip() is empty


def test_map_several_iterables_of_unequal_length(ex):
    assert list(ex.map(fns.add, range(10), range(100, 105))) == [100, 102, 104, 106, 108]
    # The shortest ends the map, even against an endless one.
    assert list(ex.map(fns.add, itertools.count(), [10, 20, 30])) == [10, 21, 32]


def test_map_is_lazy_and_bounded_ahead(ex):
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    it = ex.map(fns.square, endless(), buffersize=16)
    assert pulled <= 16  # started, not materialized
    for i in range(100):
        assert next(it) == i * i
        assert pulled <= i + 1 + 16
    it.close()
    # The default look-ahead is bounded too.
    pulled = 0
    it = ex.map(fns.square, endless())
    assert [next(it) for _ in range(10)] == [x * x for x in range(10)]
    # 8192 calls ahead, 65536 once cheap calls travel in chunks (at most 1000 a chunk).
    assert pulled <= 10 + 65536 + 1000
    it.close()
    pulled = 0
    it = ex.map(fns.square, endless(), chunksize=1)
    assert [next(it) for _ in range(10)] == [x * x for x in range(10)]
    assert pulled <= 10 + 8192
    it.close()


def test_map_raises_an_items_exception_at_that_item_and_not_before(ex):
    it = ex.map(fns.inverse, [1, 2, 0, 4])
    assert next(it) == 1.0
    assert next(it) == 0.5
    with pytest.raises(ZeroDivisionError) as info:
        next(it)
    # The worker's traceback comes along, as with ProcessPoolExecutor.
    assert isinstance(info.value.__cause__, fanmap.RemoteTraceback)
    assert "in inverse" in str(info.value.__cause__)
    with pytest.raises(StopIteration):
        next(it)


def test_map_raises_an_iterables_exception_after_the_items_before_it(ex):
    def broken():
        yield 1
        yield 2
        raise OSError("the input broke")

    it = ex.map(fns.square, broken())
    assert next(it) == 1
    assert next(it) == 4
    with pytest.raises(OSError, match="the input broke"):
        next(it)


@pytest.mark.parametrize("chunksize,n", [(1, 25), (10, 25), (None, 25), (None, 100_123)])
def test_map_yields_every_item_pulled_before_the_iterables_exception(ex, chunksize, n):
    # The exception comes partway through a chunk: the calls already pulled
    # into that chunk are still sent and their results yielded, then it is raised.
    def broken():
        yield from range(n)
        raise ValueError("the input broke")

    got = []
    with pytest.raises(ValueError, match="the input broke"):
        for value in ex.map(fns.square, broken(), chunksize=chunksize):
            got.append(value)
    assert len(got) == n
    assert got == [x * x for x in range(n)]


def test_map_timeout(ex, gate):
    it = ex.map(fns.wait_gate, [gate.path], [1], timeout=0.2)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(it)  # the gate is closed: the result cannot be there
    assert issubclass(concurrent.futures.TimeoutError, TimeoutError)
    gate.open()
    # A timeout long enough for every result raises nothing.
    assert list(ex.map(fns.square, range(10), timeout=DEADLINE)) == [x * x for x in range(10)]


def test_map_after_shutdown_is_refused(fanmap_bin):
    ex = fanmap.Executor(1, fanmap_bin=fanmap_bin)
    ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.map(fns.square, [1])
    with pytest.raises(RuntimeError):
        ex.submit(fns.square, 1)


def test_submit_returns_real_futures(ex):
    futures = [ex.submit(fns.square, i) for i in range(50)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    done, not_done = concurrent.futures.wait(futures, timeout=DEADLINE)
    assert not not_done
    assert [f.result() for f in futures] == [i * i for i in range(50)]
    assert ex.submit(fns.scaled, 3, by=4).result(timeout=DEADLINE) == 12
    assert sorted(f.result() for f in concurrent.futures.as_completed(
        [ex.submit(fns.square, i) for i in range(5)], timeout=DEADLINE)) == [0, 1, 4, 9, 16]


def test_submit_exception_lands_in_its_future(ex):
    f = ex.submit(fns.inverse, 0)
    assert isinstance(f.exception(timeout=DEADLINE), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        f.result()
    g = ex.submit(fns.raise_key, "k")
    with pytest.raises(KeyError) as info:
        g.result(timeout=DEADLINE)
    assert info.value.args == ("k",)


def test_submit_result_timeout(ex, gate):
    f = ex.submit(fns.wait_gate, gate.path, 1)
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.1)
    gate.open()
    assert f.result(timeout=DEADLINE) == 1


def test_shutdown_cancel_futures(fanmap_bin, gate):
    ex = fanmap.Executor(1, fanmap_bin=fanmap_bin, max_pending=2)
    futures = [ex.submit(fns.wait_gate, gate.path, i) for i in range(20)]
    gate.wait_arrivals(1)  # the first call is running; the gate holds it
    ex.shutdown(wait=False, cancel_futures=True)
    # Two were handed to fanmap; the others waited here and are cancelled.
    assert not futures[0].cancelled() and not futures[1].cancelled()
    assert all(f.cancelled() for f in futures[2:])
    gate.open()
    assert futures[0].result(timeout=DEADLINE) == 0
    assert futures[1].result(timeout=DEADLINE) == 1
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures)


def test_shutdown_wait_finishes_submitted_calls(fanmap_bin):
    with fanmap.Executor(2, fanmap_bin=fanmap_bin, max_pending=4) as ex:
        futures = [ex.submit(fns.square, i) for i in range(100)]
    # Leaving the block waited: every call finished, none was dropped.
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [i * i for i in range(100)]


def test_functions_must_be_importable(ex):
    with pytest.raises(TypeError, match="module level"):
        ex.submit(lambda x: x, 1)

    def local(x):
        return x

    with pytest.raises(TypeError, match="module level"):
        ex.map(local, [1])
    with pytest.raises(TypeError, match="not a module-level function"):
        ex.submit(fns.CustomError("x").__str__)


def test_arguments_that_json_cannot_carry(ex):
    f = ex.submit(fns.roundtrip, {1, 2})
    assert isinstance(f.exception(timeout=DEADLINE), TypeError)
    assert "serializer='pickle'" in str(f.exception())
    it = ex.map(fns.roundtrip, [1, object(), 3])
    assert next(it) == 1
    with pytest.raises(TypeError):
        next(it)


def test_json_values_round_trip(ex):
    value = {"s": "é\n\r\t\x00", "n": [1, 2.5, None, True], "big": 10 ** 30}
    assert ex.submit(fns.roundtrip, value).result(timeout=DEADLINE) == value


def test_custom_exception_without_pickle_is_a_remote_error(ex):
    with pytest.raises(fanmap.RemoteError) as info:
        ex.submit(fns.raise_custom, 7).result(timeout=DEADLINE)
    assert info.value.type_name == "fanmap_testfns.CustomError"
    assert info.value.message == "custom 7"
    assert "raise CustomError" in info.value.remote_traceback


def test_pickle_serializer_carries_any_object(fanmap_bin):
    with fanmap.Executor(1, fanmap_bin=fanmap_bin, serializer="pickle") as ex:
        assert ex.submit(fns.roundtrip, {1, (2, 3)}).result(timeout=DEADLINE) == {1, (2, 3)}
        with pytest.raises(fns.CustomError, match="custom 3"):
            ex.submit(fns.raise_custom, 3).result(timeout=DEADLINE)
        assert list(ex.map(fns.roundtrip, [(1, 2), frozenset()])) == [(1, 2), frozenset()]


@pytest.mark.parametrize("chunksize", [1, 10, None])
def test_an_argument_pickle_refuses_fails_at_its_place(fanmap_bin, chunksize):
    # A lambda cannot be pickled (PicklingError, not TypeError): that call
    # fails where it stands, after the result of every call before it (its
    # chunk's neighbours included).
    items = list(range(25))
    items[13] = lambda: None
    with fanmap.Executor(1, fanmap_bin=fanmap_bin, serializer="pickle") as ex:
        it = ex.map(fns.roundtrip, items, chunksize=chunksize)
        assert [next(it) for _ in range(13)] == list(range(13))
        with pytest.raises(Exception) as info:
            next(it)
        assert "pickle" in str(info.value).lower(), info.value
        f = ex.submit(fns.roundtrip, lambda: None)
        assert f.exception(timeout=DEADLINE) is not None


def test_pickle_from_remote_workers_needs_curve_keys(fanmap_bin):
    with pytest.raises(ValueError, match="CURVE"):
        fanmap.Executor(0, listen="tcp://127.0.0.1:0", serializer="pickle", fanmap_bin=fanmap_bin)
    with pytest.raises(ValueError, match="CURVE"):
        fanmap.Executor(1, listen=["ipc:///tmp/x"], serializer="pickle", fanmap_bin=fanmap_bin,
                        curve_secret="coord.secret")


def test_output_of_the_function_never_breaks_the_stream(ex):
    assert list(ex.map(fns.noisy, range(30))) == list(range(30))
    assert list(ex.map(fns.multiline, range(3))) == [
        f"first\nsecond\r\nthird {x}\r" for x in range(3)]


def test_a_crashing_call_is_a_task_error(fanmap_bin):
    with fanmap.Executor(1, retries=0, fanmap_bin=fanmap_bin) as ex:
        f = ex.submit(fns.exit_hard, 1)
        exc = f.exception(timeout=DEADLINE)
        assert isinstance(exc, fanmap.TaskError)
        assert exc.record.get("exit_code") == 3
        # The executor goes on with the next calls (a fresh co-process).
        assert ex.submit(fns.square, 5).result(timeout=DEADLINE) == 25
        it = ex.map(fns.exit_hard, [1])
        with pytest.raises(fanmap.TaskError) as info:
            next(it)
        assert info.value.record.get("exit_code") == 3


def test_fanmap_failing_to_start_breaks_the_executor(fanmap_bin):
    ex = fanmap.Executor(1, fanmap_bin=fanmap_bin, window="not-a-number")
    f = ex.submit(fns.square, 2)
    exc = f.exception(timeout=DEADLINE)
    assert isinstance(exc, concurrent.futures.BrokenExecutor)
    assert "status 2" in str(exc) and "window" in str(exc)
    with pytest.raises(concurrent.futures.BrokenExecutor):
        ex.submit(fns.square, 3)
    ex.shutdown()


def test_a_call_sent_as_fanmap_exits_fails_with_the_runs_error(fanmap_bin):
    # The window between fanmap's exit and the executor hearing of it: the
    # run is closed but the executor is not broken yet. A call sent then
    # fails with the run's own error (it used to escape submit() as
    # "the fanmap run is closed").
    ex = fanmap.Executor(1, fanmap_bin=fanmap_bin, window="not-a-number")
    first = ex.submit(fns.square, 2)
    assert isinstance(first.exception(timeout=DEADLINE), concurrent.futures.BrokenExecutor)
    # The first call may have failed in submit() (fanmap already gone) while
    # the reader thread had yet to report the end: wait until it has, or its
    # report would break the executor again after the reset below.
    ex._run.join(DEADLINE)
    assert ex._run.ended is not None
    ex._broken = None  # as if the end had not been reported yet
    late = ex.submit(fns.square, 3)
    exc = late.exception(timeout=DEADLINE)
    assert isinstance(exc, concurrent.futures.BrokenExecutor)
    assert "status 2" in str(exc)
    with pytest.raises(concurrent.futures.BrokenExecutor):
        ex.submit(fns.square, 4)
    ex.shutdown()


def test_missing_binary_is_a_clear_error(tmp_path):
    with pytest.raises(fanmap.FanmapError, match="not an executable"):
        fanmap.Executor(1, fanmap_bin=str(tmp_path / "nope"))


def _parent_pid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def test_a_worker_killed_mid_run_loses_nothing(fanmap_bin, gate):
    n, at = 400, 200
    with fanmap.Executor(2, fanmap_bin=fanmap_bin) as ex:
        it = ex.map(fns.gated_at, range(n), itertools.repeat(gate.path), itertools.repeat(at))
        got = [next(it) for _ in range(at)]
        # Item `at` is running and held by the gate: kill the worker that runs it.
        (_, serve_pid), = gate.wait_arrivals(1)
        worker = _parent_pid(serve_pid)
        assert _comm(worker) == "fanmap-worker"
        os.kill(worker, signal.SIGKILL)
        # fanmap sends the item again, to a worker that is alive.
        arrivals = gate.wait_arrivals(2)
        assert [a[0] for a in arrivals[:2]] == [str(at), str(at)]
        assert _parent_pid(arrivals[1][1]) != worker
        gate.open()
        got += list(it)
    assert got == list(range(n))  # every result once, in order


@pytest.mark.parametrize("name", ["job.py", "job-without-suffix"])
def test_function_of_the_main_script(fanmap_bin, tmp_path, name):
    script = tmp_path / name
    script.write_text(textwrap.dedent("""
        import fanmap

        def cube(x):
            return x ** 3

        if __name__ == "__main__":
            with fanmap.Executor(2) as ex:
                print(list(ex.map(cube, range(5))))
    """))
    env = dict(os.environ, FANMAP_BIN=fanmap_bin,
               PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "python"))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=DEADLINE, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 1, 8, 27, 64]"
    # A library keeps the caller's stderr for errors: no end-of-run summary.
    assert out.stderr == "", out.stderr


def test_an_abandoned_map_leaves_the_executor_usable(ex):
    it = ex.map(fns.square, range(100_000))
    assert [next(it) for _ in range(10)] == [x * x for x in range(10)]
    it.close()  # results still in flight are dropped as they arrive
    assert list(ex.map(fns.square, range(100))) == [x * x for x in range(100)]


def test_submit_from_many_threads(ex):
    import threading
    results = {}

    def client(t):
        futures = [ex.submit(fns.add, t, i) for i in range(200)]
        results[t] = [f.result(timeout=DEADLINE) for f in futures]

    threads = [threading.Thread(target=client, args=(t * 1000,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == {t * 1000: [t * 1000 + i for i in range(200)] for t in range(8)}


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listen_lets_workers_of_other_machines_join(bin_dir, fanmap_bin):
    # workers=0: nothing runs until a worker joins over TCP, as one from another host would.
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(here, "..", "..", "python"), here]))
    with fanmap.Executor(0, listen=endpoint, fanmap_bin=fanmap_bin) as ex:
        it = ex.map(fns.square, range(50))
        worker = subprocess.Popen([os.path.join(bin_dir, "fanmap-worker"), "--connect", endpoint],
                                  env=env)
        try:
            assert list(it) == [x * x for x in range(50)]
        finally:
            ex.shutdown()
            assert worker.wait(DEADLINE) == 0  # released by the coordinator at the end


def test_another_interpreter_for_the_workers(fanmap_bin):
    import shutil
    others = {os.path.realpath(p) for p in (shutil.which("python3"), "/usr/bin/python3") if p}
    others.discard(os.path.realpath(sys.executable))
    if not others:
        pytest.skip("only one python3 on this machine")
    python = sorted(others)[0]
    real = subprocess.run([python, "-c", "import os, sys; print(os.path.realpath(sys.executable))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    if real == os.path.realpath(sys.executable):
        pytest.skip("only one python3 on this machine")
    with fanmap.Executor(1, python=python, fanmap_bin=fanmap_bin) as ex:
        assert ex.submit(fns.interpreter).result(timeout=DEADLINE) == real


@pytest.mark.parametrize("chunksize", [2, 7, 1000])
def test_map_with_chunks(ex, chunksize):
    assert list(ex.map(fns.square, range(2500), chunksize=chunksize)) == [
        x * x for x in range(2500)]
    assert list(ex.map(fns.add, range(10), range(5), chunksize=chunksize)) == [0, 2, 4, 6, 8]
    assert list(ex.map(fns.square, [], chunksize=chunksize)) == []
    # An exception is raised at its item: the values before it in its chunk come first.
    it = ex.map(fns.inverse, [1, 2, 0, 4, 5], chunksize=chunksize)
    assert [next(it), next(it)] == [1.0, 0.5]
    with pytest.raises(ZeroDivisionError):
        next(it)
    # So is a value or an argument that JSON cannot carry.
    it = ex.map(fns.roundtrip, [1, 2, {3}, 4], chunksize=chunksize)
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(TypeError):
        next(it)


def test_map_with_chunks_is_lazy(ex):
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    it = ex.map(fns.square, endless(), chunksize=10, buffersize=40)
    for i in range(500):
        assert next(it) == i * i
        # 4 chunks ahead of the chunk being yielded, and the one being read
        assert pulled <= (i // 10 + 1 + 4) * 10 + 10
    it.close()


def test_map_with_chunks_and_pickle(fanmap_bin):
    with fanmap.Executor(2, fanmap_bin=fanmap_bin, serializer="pickle") as ex:
        assert list(ex.map(fns.roundtrip, [(1,), {2}, b"3"] * 10, chunksize=4)) == \
            [(1,), {2}, b"3"] * 10
        it = ex.map(fns.raise_custom, [1], chunksize=4)
        with pytest.raises(fns.CustomError):
            next(it)


def test_timeout_option_cancels_a_call_that_runs_too_long(fanmap_bin, gate):
    # fanmap's --timeout: the attempt is cancelled (its co-process killed) and, with
    # retries=0, the call fails with fanmap's record; the gate never opens for it.
    # The next call's clock includes a fresh co-process's start-up (an interpreter
    # importing fanmap): the timeout leaves room for that on a loaded machine.
    with fanmap.Executor(1, retries=0, timeout=5, fanmap_bin=fanmap_bin) as ex:
        f = ex.submit(fns.wait_gate, gate.path, 1)
        exc = f.exception(timeout=DEADLINE)
        assert isinstance(exc, fanmap.TaskError)
        assert "time" in exc.record.get("error", "").lower()
        gate.open()
        assert ex.submit(fns.square, 3).result(timeout=DEADLINE) == 9


def test_a_chunk_fanmap_gives_up_on_fails_at_its_call(fanmap_bin):
    # The chunk [0, 1, 2] kills its co-process on every attempt: its calls go again one
    # by one, so 0 and 1 are yielded and the failure is raised at 2, not at 0.
    with fanmap.Executor(1, retries=0, fanmap_bin=fanmap_bin) as ex:
        it = ex.map(fns.exit_at, range(9), itertools.repeat(2), chunksize=3)
        assert [next(it), next(it)] == [0, 1]
        with pytest.raises(fanmap.TaskError) as info:
            next(it)
        assert info.value.record.get("exit_code") == 3
