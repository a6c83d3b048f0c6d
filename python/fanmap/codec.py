"""What travels through a `fanmap --pipe` line, both ways.

A call (caller -> fanmap.serve) is one line of JSON:
    {"f":"module:qualname","a":[args...],"k":{kwargs}}      serializer "json"
    {"f":"module:qualname","p":"<base64 pickle of (args, kwargs)>"}   "pickle"
("f" is left out when serve was started with the function), or a chunk of
calls (Executor.map with chunksize > 1):
    {"f":"module:qualname","c":[[args...],[args...],...]}     serializer "json"
    {"f":"module:qualname","pc":"<base64 pickle of [args, ...]>"}     "pickle"
An answer
(serve -> caller) is one line of JSON:
    {"ok":true,"value":V}  or  {"ok":true,"pickle":"<base64>"}
    {"ok":false,"type":"builtins.ValueError","message":"...","traceback":"...",
     "pickle":"<base64 of the exception, serializer pickle only>"}
The answer to a chunk holds the values of its calls up to the first that
raised, and that call's error answer:
    {"ok":true,"values":[V,...],"us":N} or {"ok":true,"pickles":"<base64>","us":N}
    (N: microseconds the calls took), with ,"error":{...an error answer...}
    when a call raised.
json.dumps escapes every control character, so a line never holds a raw
"\n" or "\r": a value with line breaks cannot break the framing.

Under `fanmap --pipe-answers json` (serve answers for fanmap itself, not for
a Python caller), an answer is fanmap's own answer object instead, which
fanmap turns into the item's record:
    {"ok":true,"result":V}
    {"ok":false,"error":"ValueError: bad input","traceback":"Traceback ..."}
"""
import base64
import builtins
import json
import pickle
import traceback

from .errors import RemoteError, RemoteTraceback

SERIALIZERS = ("json", "pickle")



def _no_default(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


# Every item costs an encode and two decodes in the caller: the C encoder and
# scanner are called directly, without json's Python-level wrappers (4x and
# 1.5x faster for small values). No circular-reference check: a circular
# argument ends in RecursionError, which encode_call reports as TypeError.
_c_encoder = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _no_default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
if _c_encoder is not None:
    def _encode(value):
        return "".join(_c_encoder(value, 0))
else:  # no _json C module (another Python implementation)
    _encode = json.JSONEncoder(separators=(",", ":")).encode

_scan = json.JSONDecoder().scan_once


def decode_json(text):
    """json.loads for one JSON text without leading whitespace (what fanmap
    and serve write), faster; raises ValueError for anything else."""
    try:
        value, end = _scan(text, 0)
    except StopIteration as e:
        raise ValueError(f"not JSON (at character {e.value})") from None
    if end != len(text) and text[end:].strip():
        raise ValueError(f"extra data after the JSON value (at character {end})")
    return value


_decode = decode_json


def call_prefix(ref):
    """The constant start of every call line for the function `ref`."""
    return '{"f":' + _encode(ref) + ","


def encode_call(prefix, serializer, args, kwargs=None):
    """One call line (without "\\n"). Raises TypeError if the arguments cannot
    travel with this serializer."""
    if serializer == "json":
        try:
            if kwargs:
                return prefix + '"a":' + _encode(args) + ',"k":' + _encode(kwargs) + "}"
            return prefix + '"a":' + _encode(args) + "}"
        except (TypeError, ValueError, RecursionError) as e:
            raise TypeError(f"fanmap: arguments are not JSON-serializable ({e}); "
                            "pass serializer='pickle' to send any picklable object") from None
    blob = base64.b64encode(pickle.dumps((tuple(args), kwargs or {}), pickle.HIGHEST_PROTOCOL))
    return prefix + '"p":"' + blob.decode("ascii") + '"}'


def encode_chunk(prefix, serializer, calls):
    """One line for a chunk of calls (a list of argument tuples). Raises
    TypeError if one of them cannot travel with this serializer."""
    if serializer == "json":
        try:
            return prefix + '"c":' + _encode(calls) + "}"
        except (TypeError, ValueError, RecursionError) as e:
            raise TypeError(f"fanmap: arguments are not JSON-serializable ({e})") from None
    blob = base64.b64encode(pickle.dumps([tuple(a) for a in calls], pickle.HIGHEST_PROTOCOL))
    return prefix + '"pc":"' + blob.decode("ascii") + '"}'


def decode_call(line, allow_pickle):
    """(ref or None, calls, chunked) from a call line: calls is a list of
    (args, kwargs); chunked is True for a chunk line. Raises ValueError for a
    line that is not a call."""
    call = json.loads(line) if line[:1].isspace() else _decode(line)
    if not isinstance(call, dict):
        raise ValueError("a call line must be a JSON object with \"a\" (arguments)")
    ref = call.get("f")
    if ref is not None and not isinstance(ref, str):
        raise ValueError("\"f\" must be a string module:qualname")
    if "c" in call or "pc" in call:
        if "pc" in call:
            if not allow_pickle:
                raise ValueError("pickled arguments refused: serve was not started with --pickle")
            calls = pickle.loads(base64.b64decode(call["pc"], validate=True))
        else:
            calls = call["c"]
        if not isinstance(calls, list) or not all(isinstance(a, (list, tuple)) for a in calls):
            raise ValueError("a chunk (\"c\") must be an array of argument arrays")
        return ref, [(a, {}) for a in calls], True
    ref, args, kwargs = _decode_one(call, ref, allow_pickle)
    return ref, [(args, kwargs)], False


def _decode_one(call, ref, allow_pickle):
    if "p" in call:
        if not allow_pickle:
            raise ValueError("pickled arguments refused: serve was not started with --pickle")
        args, kwargs = pickle.loads(base64.b64decode(call["p"], validate=True))
        return ref, tuple(args), dict(kwargs)
    args = call.get("a", [])
    kwargs = call.get("k", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("\"a\" must be a JSON array and \"k\" a JSON object")
    return ref, args, kwargs


def encode_value(value, serializer):
    if serializer == "pickle":
        blob = base64.b64encode(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)).decode("ascii")
        return '{"ok":true,"pickle":"' + blob + '"}'
    return '{"ok":true,"value":' + _encode(value) + "}"


def encode_error(exc, tb_text, serializer):
    t = type(exc)
    out = {"ok": False, "type": f"{t.__module__}.{t.__qualname__}",
           "message": _safe_str(exc), "traceback": tb_text}
    try:  # a builtin type is rebuilt from its arguments when they are JSON
        _encode(exc.args)
        out["args"] = list(exc.args)
    except Exception:
        pass
    if serializer == "pickle":
        try:
            out["pickle"] = base64.b64encode(
                pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)).decode("ascii")
            pickle.loads(base64.b64decode(out["pickle"]))  # it must come back too
        except Exception:  # an exception that does not pickle: its text still travels
            out.pop("pickle", None)
    return _encode(out)


def encode_result(value):
    """A `--pipe-answers json` success: V becomes the record's "result".
    Raises ValueError for NaN or infinity (not JSON: fanmap would refuse the
    line) and TypeError for what JSON cannot carry."""
    return '{"ok":true,"result":' + json.dumps(value, separators=(",", ":"), allow_nan=False) + "}"


def encode_failure(exc, tb_text):
    """A `--pipe-answers json` failure: the record's "error" is the last line
    Python prints for the exception ("ValueError: bad input"), and its
    "traceback" the whole traceback."""
    try:
        summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except Exception:
        summary = f"{type(exc).__name__}: <str() failed>"
    return _encode({"ok": False, "error": summary, "traceback": tb_text})


def encode_chunk_answer(values, error, serializer, micros=0):
    """The answer to a chunk: `values` of its calls up to the first that
    raised, `error` (an error answer, or None), and the microseconds the
    calls took (the caller sizes its next chunks with it)."""
    tail = (',"us":%d' % micros) + (',"error":' + error + "}" if error else "}")
    if serializer == "pickle":
        blob = base64.b64encode(pickle.dumps(values, pickle.HIGHEST_PROTOCOL)).decode("ascii")
        return '{"ok":true,"pickles":"' + blob + '"' + tail
    return '{"ok":true,"values":' + _encode(values) + tail


def decode_chunk_answer(text, count, allow_pickle):
    """(values, exception or None, microseconds) from the answer to a chunk
    of `count` calls: the values of the calls before the first that raised,
    what it raised, and the time the calls took. Raises the error of an
    answer that failed the whole chunk."""
    try:
        answer = _decode(text)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("ok") is False:
        raise rebuild_error(answer, allow_pickle)
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        raise _protocol_error(text)
    if "pickles" in answer:
        if not allow_pickle:
            raise RemoteError("fanmap.ProtocolError",
                              "a pickled answer was refused (serializer is json)", "")
        values = pickle.loads(base64.b64decode(answer["pickles"]))
    else:
        values = answer.get("values")
    error = answer.get("error")
    if not isinstance(values, list) or not isinstance(error, (dict, type(None))) or \
            len(values) + (error is not None) > count or \
            (error is None and len(values) != count):
        raise _protocol_error(text)
    micros = answer.get("us", 0)
    if type(micros) is not int or micros < 0:
        micros = 0
    return values, None if error is None else rebuild_error(error, allow_pickle), micros


def _protocol_error(text):
    return RemoteError("fanmap.ProtocolError",
                       f"the co-process answered with something that is not an answer: "
                       f"{text[:200]!r}", "")


def _safe_str(exc):
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def decode_answer(text, allow_pickle):
    """The value of an answer line, or raises the function's exception (see
    rebuild_error). Raises RemoteError for a line that is not an answer."""
    try:
        answer = _decode(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "ok" not in answer:
        raise _protocol_error(text)
    if answer["ok"] is True:
        if "pickle" in answer:
            if not allow_pickle:
                raise RemoteError("fanmap.ProtocolError",
                                  "a pickled answer was refused (serializer is json)", "")
            return pickle.loads(base64.b64decode(answer["pickle"]))
        return answer.get("value")
    raise rebuild_error(answer, allow_pickle)


def rebuild_error(answer, allow_pickle):
    """The exception to raise for an error answer: the original (pickle), a
    builtin exception of the same type with the same message, or a
    RemoteError; with the remote traceback as __cause__."""
    type_name = str(answer.get("type", "Exception"))
    message = str(answer.get("message", ""))
    tb = str(answer.get("traceback", ""))
    exc = None
    if allow_pickle and "pickle" in answer:
        try:
            exc = pickle.loads(base64.b64decode(answer["pickle"]))
            if not isinstance(exc, BaseException):
                exc = None
        except Exception:
            exc = None
    if exc is None and type_name.startswith("builtins."):
        t = getattr(builtins, type_name[len("builtins."):], None)
        # Only plain Exception subclasses: rebuilding KeyboardInterrupt or
        # SystemExit in the caller would do what the caller did not ask for.
        if isinstance(t, type) and issubclass(t, Exception):
            args = answer.get("args")
            try:
                exc = t(*args) if isinstance(args, list) else t(message)
            except Exception:  # UnicodeDecodeError and co. take other arguments
                exc = None
    if exc is None:
        exc = RemoteError(type_name, message, tb)
    exc.__cause__ = RemoteTraceback(tb)
    return exc
