"""Exceptions raised by the fanmap package."""
import concurrent.futures


class FanmapError(Exception):
    """fanmap itself failed: it could not start, or it exited with an error."""


class BrokenExecutor(concurrent.futures.BrokenExecutor, FanmapError):
    """The fanmap run behind an Executor ended before answering every item."""


class TaskError(FanmapError):
    """fanmap gave up on an item without an answer from the function: the
    co-process died while holding it (every retry), the attempt timed out
    (--timeout), or its worker was lost once too often. `record` is fanmap's
    error record (a dict with "error" and, when known, "exit_code", "signal",
    "stderr", "attempts")."""

    def __init__(self, message, record=None):
        super().__init__(message)
        self.record = record or {}


class RemoteError(Exception):
    """The function raised on a worker and its exception could not be
    rebuilt as the same type: `type_name` is its qualified type name,
    `message` its str() and `remote_traceback` the traceback text."""

    def __init__(self, type_name, message, remote_traceback):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self):
        return f"{self.type_name}: {self.message}"


class RemoteTraceback(Exception):
    """Set as __cause__ of an exception rebuilt from a worker, as
    ProcessPoolExecutor does: printing the exception shows where it was
    raised on the worker."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb
