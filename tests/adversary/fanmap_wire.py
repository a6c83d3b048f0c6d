"""fanmap's wire protocol (version 3), written independently of the C++ code.

common/protocol.h is the reference: every message is ONE ZeroMQ frame holding
ONE msgpack array [version, type, ...body]. This module lets the adversary
tests speak it as a foreign client (python3-zmq + python3-msgpack), and
builds the hostile frames a well-behaved worker would never send.
"""

import os

import msgpack

VERSION = 3

HELLO = 1
RESULTS = 2
HEARTBEAT = 3
JOB = 4
TASKS = 5
STOP = 6
REFUSE = 7
BYE = 8
RESET = 9

TYPE_NAMES = {
    HELLO: "HELLO", RESULTS: "RESULTS", HEARTBEAT: "HEARTBEAT", JOB: "JOB",
    TASKS: "TASKS", STOP: "STOP", REFUSE: "REFUSE", BYE: "BYE", RESET: "RESET",
}


def pack(message):
    return msgpack.packb(message, use_bin_type=True)


def hello(slots, name, host="adversary", pid=None):
    return pack([VERSION, HELLO, slots, name, host, os.getpid() if pid is None else pid])


def heartbeat():
    return pack([VERSION, HEARTBEAT])


def bye(reason):
    return pack([VERSION, BYE, reason])


# A result entry has one shape under protocol version 3: twelve fields. The
# tuple keeps forge.py's loop over shapes; an older shape would be rejected as
# malformed and test the frame checks, not whether results are bound to
# attempts.
RESULT_SHAPES = (12,)


def result(index, attempt, value, ok=True, extra=None):
    """One entry of a RESULTS frame: [index, attempt, ok, value, value_is_json,
    elapsed_us, retryable, retry_after_ms, extra, fatal, cause, limits]."""
    return [index, attempt, ok, value, False, 1000, False, 0, extra or {}, False, 0, None]


def results(run_id, entries, fields=RESULT_SHAPES[0]):
    """A RESULTS frame whose entries keep their first `fields` fields."""
    return pack([VERSION, RESULTS, run_id, [entry[:fields] for entry in entries]])


def random_run_id():
    return os.urandom(16).hex()


def decode(frame):
    """The message as a list, or None if the frame is not a msgpack array of
    at least [version, type]."""
    try:
        message = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception:  # any garbage: the caller only wants to know it is not ours
        return None
    if not isinstance(message, list) or len(message) < 2:
        return None
    return message


def type_name(message):
    return TYPE_NAMES.get(message[1], str(message[1])) if message else "garbage"


# --- hostile frames -------------------------------------------------------------------
# Built from bytes, not with msgpack.packb: the point is frames whose declared
# sizes and shapes are what a decoder must not trust.

def array32_header(count):
    return b"\xdd" + count.to_bytes(4, "big")


def nils_array(count):
    """One msgpack array of `count` nils: count + 5 bytes."""
    return array32_header(count) + b"\xc0" * count


def empty_arrays_array(count):
    """One msgpack array of `count` empty arrays: count + 5 bytes."""
    return array32_header(count) + b"\x90" * count


def nested_arrays(depth):
    """[[[...[nil]...]]] nested `depth` deep: depth + 1 bytes."""
    return b"\x91" * depth + b"\xc0"


def results_header(run_id):
    """The start of a RESULTS frame, [2, 2, run_id, ...: the results array
    header and body are left to the caller."""
    return b"\x94" + pack(VERSION) + pack(RESULTS) + pack(run_id)


def results_declaring(run_id, count):
    """A RESULTS frame whose results array declares `count` entries and holds none."""
    return results_header(run_id) + array32_header(count)


def results_of_nils(run_id, count):
    """A RESULTS frame whose results array really holds `count` nils (not results)."""
    return results_header(run_id) + nils_array(count)
