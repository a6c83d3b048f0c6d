"""Helpers shared by the bench's workloads: running and timing commands, checking records,
the mock server, the machine's load, number formatting."""

import json
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")



class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs)


def tail_of(path_or_bytes, n=15):
    if isinstance(path_or_bytes, bytes):
        text = path_or_bytes.decode(errors="replace")
    else:
        try:
            with open(path_or_bytes, errors="replace") as fh:
                text = fh.read()
        except OSError:
            return ""
    return "\n  ".join(text.strip().splitlines()[-n:])


def run(cmd, *, stdin=None, stdout=None, rss=None, what=None, env=None, timeout=600,
        input_bytes=None):
    """Runs cmd, returns (elapsed seconds, stdout bytes or None, peak RSS KB or None).

    stdin: a path or None (empty input); stdout: a path, or None to capture it.
    rss: a scratch path: wraps cmd in /usr/bin/time -f %M and reads the peak RSS back
    (the largest of the process and the children it waited for).
    Raises BenchError unless the exit status is 0.
    """
    full = cmd
    if rss:
        full = ["/usr/bin/time", "-f", "%M", "-o", rss] + cmd
    if input_bytes is not None:
        fin = subprocess.PIPE
    else:
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.PIPE
    try:
        start = time.perf_counter()
        p = subprocess.run(full, stdin=fin if input_bytes is None else None, input=input_bytes,
                           stdout=fout, stderr=subprocess.PIPE, env=env, timeout=timeout,
                           cwd=ROOT)
        elapsed = time.perf_counter() - start
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what or cmd[0]} did not finish in {timeout} s: {' '.join(cmd)}")
    finally:
        if stdin and input_bytes is None:
            fin.close()
        if stdout:
            fout.close()
    if p.returncode != 0:
        raise BenchError(f"{what or cmd[0]} failed with exit status {p.returncode}: "
                         f"{' '.join(cmd)}\n  " + tail_of(p.stderr))
    peak = None
    if rss:
        with open(rss) as fh:
            lines = [l for l in fh.read().split() if l.isdigit()]
        if not lines:
            raise BenchError(f"no peak RSS from /usr/bin/time for {' '.join(cmd)}")
        peak = int(lines[-1])
    return elapsed, (p.stdout if not stdout else None), peak


def read_vmhwm(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_polled(cmd, *, stdin=None, what=None, timeout=600, errpath=None):
    """Runs cmd (its output goes to files named in cmd) and samples /proc/PID/status VmHWM
    every 20 ms: returns (elapsed, the last VmHWM seen in KB, i.e. that process alone)."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    ferr = open(errpath, "wb")
    try:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=fin, stdout=subprocess.DEVNULL, stderr=ferr, cwd=ROOT)
        hwm = None
        while p.poll() is None:
            v = read_vmhwm(p.pid)
            if v is not None:
                hwm = v
            if time.perf_counter() - start > timeout:
                p.kill()
                p.wait()
                raise BenchError(f"{what} did not finish in {timeout} s")
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
    finally:
        if stdin:
            fin.close()
        ferr.close()
    if p.returncode != 0:
        raise BenchError(f"{what} failed with exit status {p.returncode}: {' '.join(cmd)}\n  "
                         + tail_of(errpath))
    return elapsed, hwm


def json_str(s):
    return json.dumps(s, ensure_ascii=False)


def expected_records(results, plain=False):
    """The exact bytes fanmap writes for these ok results, without optional fields.
    plain: every result is known to need no JSON escaping (faster)."""
    if plain:
        return "".join(f'{{"index":{i},"ok":true,"result":"{r}"}}\n'
                       for i, r in enumerate(results)).encode()
    return "".join(f'{{"index":{i},"ok":true,"result":{json_str(r)}}}\n'
                   for i, r in enumerate(results)).encode()


# optional fields ("worker", "attempts", ...): their distinct values are dropped before the
# byte-for-byte comparison
EXTRA_FIELD = re.compile(rb',"(?!ok"|result")[A-Za-z_]+":(?:"[^"\\\n]*"|[^,}"\n]*)(?=[,}])')


def without_extra_fields(data):
    found = set(EXTRA_FIELD.findall(data))
    if len(found) > 1000:  # e.g. elapsed times: leave it to the parsing check
        return None
    for field in found:
        data = data.replace(field, b"")
    return data


def read_records(path, n, what="fanmap", ordered=True):
    """Reads JSON records; checks n of them, all ok, indexes 0..n-1 (in order when ordered).
    Returns the results by index."""
    results = [None] * n
    seen = 0
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh):
            try:
                rec = json.loads(line)
            except ValueError:
                raise BenchError(f"{what}: record {line_no} is not JSON: {line[:200]!r}")
            idx = rec.get("index")
            if rec.get("ok") is not True or not isinstance(idx, int) or not 0 <= idx < n:
                raise BenchError(f"{what}: record {line_no} is wrong: {line[:200]!r}")
            if ordered and idx != line_no:
                raise BenchError(f"{what}: record {line_no} has index {idx}: out of order")
            if results[idx] is not None:
                raise BenchError(f"{what}: two records for index {idx}")
            results[idx] = rec.get("result")
            seen += 1
    if seen != n:
        raise BenchError(f"{what}: {seen} records for {n} items in {path}")
    return results


def check_records(path, n, result_of=None, expected=None, what="fanmap"):
    """Checks exactly n ok records in input order; result_of(i) -> expected result.
    expected: the exact bytes (fast path; falls back to parsing, e.g. for extra fields)."""
    if expected is not None:
        with open(path, "rb") as fh:
            data = fh.read()
        if data == expected or without_extra_fields(data) == expected:
            return
    results = read_records(path, n, what)
    if result_of is not None:
        for i, r in enumerate(results):
            if r != result_of(i):
                raise BenchError(f"{what}: record {i} has result {r!r}, "
                                 f"expected {result_of(i)!r}")


def count_lines(path):
    with open(path, "rb") as fh:
        n = 0
        while True:
            block = fh.read(1 << 20)
            if not block:
                return n
            n += block.count(b"\n")


def check_lines(path, n, what):
    got = count_lines(path)
    if got != n:
        raise BenchError(f"{what}: {got} output lines for {n} items")


def write_lines(path, lines):
    with open(path, "w") as fh:
        fh.writelines(f"{l}\n" for l in lines)


def seq_file(path, first, last):
    with open(path, "w") as fh:
        subprocess.run(["seq", str(first), str(last)], stdout=fh, check=True)


def find_mock_llm(bindir):
    for p in (os.path.join(bindir, "mock-llm"), os.path.join(ROOT, "scripts", "mock-llm")):
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


class Server:
    """A mock-llm process; url is read from its `listening on URL` line."""

    def __init__(self, exe, args, errpath, wait=15.0):
        self.errpath = errpath
        self.err = open(errpath, "wb")
        self.p = subprocess.Popen([exe, *args], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=self.err,
                                  start_new_session=True)
        self.url = None
        deadline = time.monotonic() + wait
        buf = b""
        while self.url is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.p.poll() is not None:
                break
            ready, _, _ = select.select([self.p.stdout], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(self.p.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                m = re.search(rb"listening on (http://[^\s]+)", buf)
                if m:
                    self.url = m.group(1).decode().rstrip("/")
        if self.url is None:
            self.stop()
            return
        # keep draining its stdout so that it never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        try:
            while os.read(self.p.stdout.fileno(), 65536):
                pass
        except OSError:
            pass

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()


def cpu_times():
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # total, idle + iowait


def cpu_busy(seconds=0.3):
    """The fraction of all CPUs busy over a short sample (the bench itself is idle then)."""
    t0, i0 = cpu_times()
    time.sleep(seconds)
    t1, i1 = cpu_times()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


WAITED = [0.0]  # seconds spent waiting for a quiet machine


def wait_quiet(limit_s, threshold=0.15):
    """Samples CPU use by other processes; waits (up to limit_s) while it is above threshold.
    Returns the last sample."""
    start = time.monotonic()
    try:
        return _wait_quiet(limit_s, threshold)
    finally:
        WAITED[0] += time.monotonic() - start


def _wait_quiet(limit_s, threshold):
    busy = cpu_busy()
    deadline = time.monotonic() + limit_s
    warned = False
    while busy > threshold and time.monotonic() < deadline:
        if not warned:
            log(f"the machine is busy ({busy:.0%} CPU used by other processes): waiting "
                f"up to {limit_s:.0f} s for it to quieten")
            warned = True
        time.sleep(1)
        busy = cpu_busy()
    return busy


def git_rev():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def ram_gib():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except (OSError, ValueError):
        pass
    return None


def os_name():
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def fmt_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M items/s"
    if x >= 1e4:
        return f"{x / 1e3:,.0f} k items/s"
    return f"{x:,.0f} items/s"


def fmt_n(n):
    """1000000 -> 1M, 3000 -> 3k, 25 -> 25"""
    for unit, size in (("M", 1_000_000), ("k", 1000)):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{unit}"
    return f"{n:,}"


def fmt_x(x):
    return f"{x:.2f}×" if x < 100 else f"{x:,.0f}×"


