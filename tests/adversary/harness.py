"""What the adversary drivers share: processes that are always cleaned up,
waiting on conditions with deadlines, and a process's peak RSS while it runs."""

import ctypes
import importlib
import os
import re
import signal
import subprocess
import sys
import threading
import time


def require_modules():
    """The tests speak ZeroMQ from Debian's python3-zmq and python3-msgpack
    (scripts/deps installs them): say so clearly when they are missing."""
    try:
        for module in ("msgpack", "zmq"):
            importlib.import_module(module)
    except ImportError as e:
        sys.exit("%s: %s; this test needs python3-zmq and python3-msgpack (scripts/deps), "
                 "run with /usr/bin/python3" % (sys.argv[0], e))


def binaries(bin_dir):
    fanmap = os.path.join(bin_dir, "fanmap")
    worker = os.path.join(bin_dir, "fanmap-worker")
    for path in (fanmap, worker):
        if not os.access(path, os.X_OK):
            sys.exit("%s: no executable %s" % (sys.argv[0], path))
    return fanmap, worker


def _die_with_parent():
    # PR_SET_PDEATHSIG: should the driver itself be killed (a ctest timeout),
    # nothing it started lingers.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


class Processes:
    """Every process a test starts, stopped (TERM, then KILL) by cleanup(), or
    killed by the kernel if the driver dies first."""

    def __init__(self):
        self.procs = []

    def start(self, argv, stdout=None, stderr=None, stdin=subprocess.DEVNULL):
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                                preexec_fn=_die_with_parent)
        self.procs.append(proc)
        return proc

    def cleanup(self):
        for proc in reversed(self.procs):
            if proc.returncode is None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        give_up = time.monotonic() + 3
        for proc in reversed(self.procs):
            if proc.returncode is not None:
                continue
            try:
                proc.wait(max(0.01, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_exit(proc, seconds):
    """Waits up to `seconds` for `proc` to exit; returns its exit status and
    rusage (ru_maxrss: peak RSS in KiB of it and its reaped children), or
    (None, None) if it is still running."""
    deadline = time.monotonic() + seconds
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, rusage
        if time.monotonic() >= deadline:
            return None, None
        time.sleep(0.005)


def wait_for(condition, seconds, step=0.01):
    """Polls condition() until it is true or `seconds` pass; returns its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_for_line(path, pattern, seconds, proc=None):
    """The first match of `pattern` in the file at `path` within `seconds`
    (None if it never comes, or if `proc` exits first)."""
    regex = re.compile(pattern, re.M)

    def found():
        m = regex.search(read(path))
        if m or (proc is not None and proc.poll() is not None):
            return m or "exited"
        return None

    m = wait_for(found, seconds)
    return m if m not in (None, "exited") else None


class PeakRss(threading.Thread):
    """Polls VmHWM (the kernel's high-water mark of the RSS) of a running
    process; `peak_kib` is the last value read before it exited."""

    def __init__(self, pid, every=0.01):
        super().__init__(daemon=True)
        self.pid = pid
        self.every = every
        self.peak_kib = 0
        self.stopped = threading.Event()

    def run(self):
        path = "/proc/%d/status" % self.pid
        while not self.stopped.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                            break
                    else:
                        return  # a zombie: no memory any more
            except (FileNotFoundError, ProcessLookupError, ValueError):
                return
            self.stopped.wait(self.every)

    def stop(self):
        self.stopped.set()
        self.join()


class Checks:
    """Assertions that all run and are all reported."""

    def __init__(self):
        self.failures = []

    def check(self, what, ok, detail=""):
        print("%s: %s%s" % ("ok" if ok else "FAIL", what, (" (%s)" % detail) if detail else ""),
              flush=True)
        if not ok:
            self.failures.append(what)
        return ok

    def exit_status(self):
        if self.failures:
            print("%d check(s) failed: %s" % (len(self.failures), "; ".join(self.failures)))
            return 1
        print("all checks passed")
        return 0
