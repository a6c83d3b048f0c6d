"""The co-process side of `fanmap --pipe`: calls a Python function per line.

    fanmap -j 4 -i names.txt --pipe 'python3 -m fanmap.serve mymodule:f'

Each item line becomes one call and gets exactly one answer line, written and
flushed as soon as it is made (the line protocol of `fanmap --pipe`: one line
out per line in, in order). The answer is JSON (see fanmap.codec):
{"ok":true,"value":...} or, when the function raises, {"ok":false,"type":...,
"message":...,"traceback":...}: an exception never ends the co-process and
never costs the line protocol its sync. Neither does output of the function:
its stdout (print(), a C library, a child process) goes to stderr, as the
answers use a private copy of the original stdout.

--items says what a line is:
  text (default with a function): f(line)
  json: f(value) where the line is one JSON value
  call (default without a function): a call line from fanmap.Executor,
        {"f":"module:qualname","a":[...],"k":{...}} ("f" optional with a function)
--pickle: call lines may carry pickled arguments, and answers are pickled.
Only for a coordinator this co-process trusts: unpickling runs code.

--pipe-answers says what an answer is:
  lines: the JSON answer above, which fanmap takes as the item's result text
        (what fanmap.Executor decodes)
  json: fanmap's own answer object (`fanmap --pipe-answers json`), so that an
        exception fails its item: {"ok":true,"result":VALUE}, or
        {"ok":false,"error":"ValueError: ...","traceback":"Traceback ..."}
  By default, the format fanmap names in $FANMAP_PIPE_ANSWERS (its workers set
  it for every co-process), else lines.
"""
import argparse
import json
import os
import sys
import time
import traceback

from . import codec, funcref

MODES = ("text", "json", "call")
# What an answer line is; fanmap's workers name the format they read here.
ANSWERS = ("lines", "json")
ANSWERS_ENV = "FANMAP_PIPE_ANSWERS"


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python3 -m fanmap.serve",
        description="Answer `fanmap --pipe` item lines by calling a Python function.")
    p.add_argument("function", nargs="?", help="module:qualname of the function to call")
    p.add_argument("--items", choices=MODES, help="what an item line is (see above)")
    p.add_argument("--pickle", action="store_true",
                   help="accept pickled arguments and pickle answers (trusted coordinators only)")
    p.add_argument("--pipe-answers", choices=ANSWERS,
                   help="lines: a JSON answer as the result text; json: fanmap's answer "
                        "object, so that an exception fails its item (default: "
                        f"${ANSWERS_ENV}, which fanmap sets, else lines)")
    args = p.parse_args(argv)
    if args.pipe_answers is None:
        named = os.environ.get(ANSWERS_ENV) or "lines"
        if named not in ANSWERS:
            p.error(f"${ANSWERS_ENV} is {named!r}: this fanmap.serve answers only "
                    f"{' or '.join(ANSWERS)} (a newer fanmap?)")
        args.pipe_answers = named
    if args.pickle and args.pipe_answers == "json":
        p.error("--pickle needs --pipe-answers lines: fanmap's answer objects carry JSON")
    if args.items is None:
        args.items = "text" if args.function else "call"
    if args.items != "call" and not args.function:
        p.error(f"--items {args.items} needs a function (module:qualname)")
    return args


class Server:
    """Turns item lines into answer lines; one call at a time."""

    def __init__(self, mode, fixed=None, allow_pickle=False, answers="lines"):
        self.mode = mode
        self.fixed = fixed
        self.allow_pickle = allow_pickle
        self.serializer = "pickle" if allow_pickle else "json"
        self.functions = {}
        # fanmap's answer objects (--pipe-answers json), or this package's
        # own answers (lines: fanmap passes them on as result text).
        self.records = answers == "json"

    def _function(self, ref):
        fn = self.functions.get(ref)
        if fn is None:
            fn = self.functions[ref] = funcref.load(ref)
        return fn

    def answer(self, line):
        """The answer line (str, no "\\n") for one item line (bytes, no "\\n")."""
        try:
            if line.endswith(b"\r"):
                line = line[:-1]
            text = line.decode("utf-8")
            kwargs = {}
            if self.mode == "call":
                ref, calls, chunked = codec.decode_call(text, self.allow_pickle)
                if ref is None and self.fixed is None:
                    raise ValueError("the call names no function (\"f\") and serve was "
                                     "started without one")
                fn = self.fixed if ref is None else self._function(ref)
                if chunked and self.records:  # one item: all the values, or the first error
                    return codec.encode_result([fn(*a, **k) for a, k in calls])
                if chunked:
                    return self._answer_chunk(fn, calls)
                args, kwargs = calls[0]
            elif self.mode == "json":
                args, fn = (json.loads(text),), self.fixed
            else:
                args, fn = (text,), self.fixed
            if self.records:
                return codec.encode_result(fn(*args, **kwargs))
            return codec.encode_value(fn(*args, **kwargs), self.serializer)
        except (Exception, SystemExit) as e:
            if self.records:
                return codec.encode_failure(e, _traceback(e))
            return codec.encode_error(e, _traceback(e), self.serializer)

    def _answer_chunk(self, fn, calls):
        """Calls fn for each call of a chunk, up to the first that raises."""
        values = []
        start = time.perf_counter()
        for args, kwargs in calls:
            try:
                values.append(fn(*args, **kwargs))
            except (Exception, SystemExit) as e:
                error = codec.encode_error(e, _traceback(e), self.serializer)
                return self._chunk_answer(values, error, start)
        return self._chunk_answer(values, None, start)

    def _chunk_answer(self, values, error, start):
        micros = int((time.perf_counter() - start) * 1e6)
        try:
            return codec.encode_chunk_answer(values, error, self.serializer, micros)
        except Exception:
            # A value that cannot travel is the error of its call.
            for i, value in enumerate(values):
                try:
                    codec.encode_value(value, self.serializer)
                except Exception as e:
                    return codec.encode_chunk_answer(
                        values[:i], codec.encode_error(e, _traceback(e), self.serializer),
                        self.serializer, micros)
            raise


def _traceback(e):
    # The frame that caught it (Server's own) is not the user's business.
    return "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def run(server, in_fd, out_fd):
    """Answers every line read from `in_fd` on `out_fd` until end of input.
    Each answer is written as soon as it is made: a slow next item never
    holds back the answer to a cheap one."""
    pending = b""
    while True:
        chunk = os.read(in_fd, 1 << 16)
        if not chunk:
            break
        pending += chunk
        if b"\n" not in chunk:
            continue
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            _write_all(out_fd, (server.answer(line) + "\n").encode("ascii"))
    if pending:  # a last line without "\n" (fanmap always sends one; a shell user may not)
        _write_all(out_fd, (server.answer(pending) + "\n").encode("ascii"))


def main(argv=None):
    args = _parse(sys.argv[1:] if argv is None else argv)
    # Answers go to a private copy of stdout; file descriptor 1 becomes
    # stderr, so that whatever the function prints cannot pass for an answer.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    fixed = None
    if args.function:
        try:
            fixed = funcref.load(args.function)
        except Exception as e:
            print(f"fanmap.serve: cannot load {args.function}: {type(e).__name__}: {e}",
                  file=sys.stderr)
            return 2
        if not callable(fixed):
            print(f"fanmap.serve: {args.function} is not callable", file=sys.stderr)
            return 2
    server = Server(args.items, fixed, args.pickle, args.pipe_answers)
    try:
        run(server, 0, out_fd)
    except BrokenPipeError:  # fanmap went away: nobody wants the answers
        return 0
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
