"""Finding and starting the fanmap binary."""
import os
import shutil
import subprocess
import sys
import threading

from .errors import FanmapError

# Options the Python side sets itself: passing them would break the stream.
RESERVED = {"input", "output", "input_format", "output_format", "pipe", "http", "builtin",
            "unordered", "resume", "resume_failed", "keep_order", "i", "o", "j", "k"}


def find(fanmap_bin=None):
    """The fanmap executable: `fanmap_bin`, else $FANMAP_BIN, else `fanmap`
    on PATH. A directory stands for the fanmap inside it."""
    candidate = fanmap_bin or os.environ.get("FANMAP_BIN") or shutil.which("fanmap")
    if not candidate:
        raise FanmapError("fanmap binary not found: put it on PATH, set FANMAP_BIN, "
                          "or pass fanmap_bin=")
    if os.path.isdir(candidate):
        candidate = os.path.join(candidate, "fanmap")
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise FanmapError(f"fanmap binary {candidate!r} is not an executable file")
    return candidate


def option_flags(options):
    """--flag value arguments for keyword options: curve_secret="k" gives
    ["--curve-secret", "k"]; True gives the flag alone; False and None are
    left out; a list or tuple repeats the flag."""
    argv = []
    for key, value in options.items():
        if key in RESERVED:
            raise ValueError(f"fanmap option {key!r} is set by the Python side and cannot "
                             "be passed")
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None or v is False:
                continue
            if v is True:
                argv.append(flag)
            else:
                argv += [flag, str(v)]
    return argv


class Process:
    """A running fanmap: stdin and stdout are pipes owned by the caller; its
    stderr is copied to sys.stderr as it comes, and its tail kept for error
    messages."""

    TAIL = 4000

    def __init__(self, argv, env=None):
        self.argv = argv
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, bufsize=0)
        except OSError as e:
            raise FanmapError(f"cannot start {argv[0]}: {e}") from None
        self.stderr_tail = ""
        self._stderr_thread = threading.Thread(target=self._copy_stderr, daemon=True,
                                               name="fanmap-stderr")
        self._stderr_thread.start()

    def _copy_stderr(self):
        for raw in iter(lambda: self.proc.stderr.readline(), b""):
            text = raw.decode("utf-8", "replace")
            self.stderr_tail = (self.stderr_tail + text)[-self.TAIL:]
            try:
                sys.stderr.write(text)
                sys.stderr.flush()
            except Exception:  # a closed or replaced sys.stderr: the tail is kept anyway
                pass

    def wait(self):
        code = self.proc.wait()
        self._stderr_thread.join()
        return code

    def describe_exit(self, code):
        tail = self.stderr_tail.strip()
        return f"fanmap exited with status {code}" + (f": {tail}" if tail else "")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
