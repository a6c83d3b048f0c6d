"""python3 -m fanmap.serve: the line protocol of `fanmap --pipe`, alone
(unit: Server and run() over pipes) and under a real fanmap (shell usage)."""
import json
import os
import subprocess
import sys

import pytest

from fanmap import codec, serve

DEADLINE = 120


def _answers(server, data):
    """Runs serve.run() over real pipes; returns the answer lines."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, data)
    os.close(in_w)
    serve.run(server, in_r, out_w)
    os.close(in_r)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        return f.read().decode("ascii").split("\n")


def test_one_answer_per_line_whatever_happens():
    import fanmap_testfns as fns
    server = serve.Server("call")
    prefix = codec.call_prefix("fanmap_testfns:inverse")
    lines = [codec.encode_call(prefix, "json", [2]),
             codec.encode_call(prefix, "json", [0]),  # raises
             "not json",                              # a bad line
             '{"a":[1]}',                             # names no function
             '{"f":"no_such_module:f","a":[1]}',      # cannot import
             '{"f":"fanmap_testfns:inverse","p":"AAAA"}',  # pickle refused
             codec.encode_call(codec.call_prefix("fanmap_testfns:multiline"), "json", [1])]
    data = ("\n".join(lines) + "\n").encode() + b"\xff\xfe\n" + b"last-without-newline"
    out = _answers(server, data)
    assert out[-1] == ""  # every answer ends with "\n"
    answers = [json.loads(a) for a in out[:-1]]
    assert len(answers) == len(lines) + 2
    assert answers[0] == {"ok": True, "value": 0.5}
    assert answers[1]["type"] == "builtins.ZeroDivisionError"
    assert "in inverse" in answers[1]["traceback"]
    assert answers[2]["ok"] is False and "not JSON" in answers[2]["message"]
    assert "names no function" in answers[3]["message"]
    assert answers[4]["type"] == "builtins.ModuleNotFoundError"
    assert "refused" in answers[5]["message"]
    assert answers[6]["value"] == fns.multiline(1)
    assert answers[7]["type"] == "builtins.UnicodeDecodeError"
    assert answers[8]["ok"] is False and "not JSON" in answers[8]["message"]


def test_text_and_json_items():
    import fanmap_testfns as fns
    out = _answers(serve.Server("text", fns.upper), b"abc\r\nd e\n")
    assert [json.loads(a)["value"] for a in out[:-1]] == ["ABC", "D E"]
    out = _answers(serve.Server("json", fns.square), b"3\n1.5\n")
    assert [json.loads(a)["value"] for a in out[:-1]] == [9, 2.25]


def test_unserializable_result_is_that_items_error():
    import fanmap_testfns as fns
    out = _answers(serve.Server("json", fns.roundtrip), b'1\n{"a":2}\n')
    assert json.loads(out[0]) == {"ok": True, "value": 1}
    server = serve.Server("text", lambda s: {1, 2} if s == "set" else s)
    out = _answers(server, b"set\nok\n")
    assert json.loads(out[0])["type"] == "builtins.TypeError"
    assert json.loads(out[1])["value"] == "ok"


def test_error_rebuilt_in_the_caller():
    answer = json.loads(codec.encode_error(KeyError("k"), "tb", "json"))
    exc = codec.rebuild_error(answer, allow_pickle=False)
    assert type(exc) is KeyError and exc.args == ("k",)
    assert str(exc.__cause__) == "tb"
    answer = json.loads(codec.encode_error(OSError(2, "gone"), "tb", "json"))
    exc = codec.rebuild_error(answer, allow_pickle=False)
    assert isinstance(exc, FileNotFoundError) and exc.errno == 2
    # SystemExit raised by the function is reported, never re-raised as such.
    answer = json.loads(codec.encode_error(SystemExit(3), "tb", "json"))
    assert type(codec.rebuild_error(answer, allow_pickle=False)).__name__ == "RemoteError"
    # A pickled answer is refused unless pickle was asked for.
    with pytest.raises(Exception, match="refused"):
        codec.decode_answer(codec.encode_value(1, "pickle"), allow_pickle=False)


def _serve_env():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(root, "python"),
                                         os.path.dirname(os.path.abspath(__file__))])
    return env


def test_unflushed_stdout_and_prints_do_not_matter_under_fanmap(fanmap_bin):
    # Shell usage: fanmap --pipe 'python3 -m fanmap.serve module:function'.
    env = _serve_env()
    env.pop("PYTHONUNBUFFERED", None)
    items = "".join(f"{i}\n" for i in range(300))
    cmd = [fanmap_bin, "-j", "2", "--pipe",
           f"{sys.executable} -m fanmap.serve --items json fanmap_testfns:noisy"]
    out = subprocess.run(cmd, input=items, capture_output=True, text=True, env=env,
                         timeout=DEADLINE)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["index"] for r in records] == list(range(300))
    assert [json.loads(r["result"]) for r in records] == [
        {"ok": True, "value": i} for i in range(300)]


def test_an_exception_is_its_items_record_under_fanmap(fanmap_bin):
    cmd = [fanmap_bin, "-j", "1", "--output-format", "raw", "--pipe",
           f"{sys.executable} -m fanmap.serve --items json fanmap_testfns:inverse"]
    out = subprocess.run(cmd, input="4\n0\n2\n", capture_output=True, text=True,
                         env=_serve_env(), timeout=DEADLINE)
    assert out.returncode == 0, out.stderr
    a, b, c = (json.loads(line) for line in out.stdout.splitlines())
    assert a == {"ok": True, "value": 0.25} and c == {"ok": True, "value": 0.5}
    assert b["ok"] is False and b["type"] == "builtins.ZeroDivisionError"
    assert "Traceback" in b["traceback"]


def test_a_function_that_cannot_load_is_named(fanmap_bin):
    out = subprocess.run([sys.executable, "-m", "fanmap.serve", "no_such_module:f"],
                         input="1\n", capture_output=True, text=True, env=_serve_env(),
                         timeout=DEADLINE)
    assert out.returncode == 2
    assert "cannot load no_such_module:f" in out.stderr


def test_json_answers_are_fanmaps_answer_objects(monkeypatch):
    # --pipe-answers json: an exception fails its item (error and traceback),
    # a value is the record's result; one answer per line whatever happens.
    import fanmap_testfns as fns
    out = _answers(serve.Server("json", fns.inverse, answers="json"),
                   b"4\n0\nnot json\n1e400\n")
    assert out[-1] == ""
    a, b, c, d = (json.loads(line) for line in out[:-1])
    assert a == {"ok": True, "result": 0.25}
    assert set(b) == {"ok", "error", "traceback"} and b["ok"] is False
    assert b["error"] == "ZeroDivisionError: division by zero"
    assert b["traceback"].startswith("Traceback (most recent call last):")
    assert "in inverse" in b["traceback"]
    assert c["ok"] is False and c["error"].startswith("json.decoder.JSONDecodeError")
    # 1 / inf is 0.0; the value itself must be JSON fanmap accepts
    assert d == {"ok": True, "result": 0.0}
    # NaN is not JSON: it fails its item in serve rather than in fanmap; a
    # line break in a result travels escaped, in the one answer line.
    fn = lambda s: float("nan") if s == "nan" else s.replace("|", "\n")  # noqa: E731
    out = _answers(serve.Server("text", fn, answers="json"), b"nan\nline|break\n")
    assert len(out) == 3
    nan, text = (json.loads(line) for line in out[:-1])
    assert nan["ok"] is False and nan["error"].startswith("ValueError: Out of range float")
    assert text == {"ok": True, "result": "line\nbreak"}


def test_answer_format_comes_from_fanmaps_environment(monkeypatch):
    monkeypatch.setenv("FANMAP_PIPE_ANSWERS", "json")
    assert serve._parse(["m:f"]).pipe_answers == "json"
    assert serve._parse(["m:f", "--pipe-answers", "lines"]).pipe_answers == "lines"
    monkeypatch.setenv("FANMAP_PIPE_ANSWERS", "lines")
    assert serve._parse(["m:f"]).pipe_answers == "lines"
    monkeypatch.delenv("FANMAP_PIPE_ANSWERS")
    assert serve._parse(["m:f"]).pipe_answers == "lines"
    monkeypatch.setenv("FANMAP_PIPE_ANSWERS", "xml")
    with pytest.raises(SystemExit):
        serve._parse(["m:f"])
    with pytest.raises(SystemExit):  # pickles cannot travel in fanmap's records
        serve._parse(["--pickle", "--pipe-answers", "json"])


def test_exceptions_are_error_records_with_json_answers_under_fanmap(fanmap_bin):
    # Shell usage: fanmap --pipe-answers json --pipe 'python3 -m fanmap.serve m:f'.
    # serve learns the format from fanmap (nothing to add to its command);
    # every item whose call raises is an error record with the traceback.
    items = [0 if i % 7 == 3 else i for i in range(1, 301)]
    cmd = [fanmap_bin, "-j", "2", "--pipe-answers", "json", "--pipe",
           f"{sys.executable} -m fanmap.serve --items json fanmap_testfns:inverse"]
    out = subprocess.run(cmd, input="".join(f"{x}\n" for x in items), capture_output=True,
                         text=True, env=_serve_env(), timeout=DEADLINE)
    assert out.returncode == 1, out.stderr  # some items failed
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["index"] for r in records] == list(range(len(items)))
    for x, r in zip(items, records):
        if x == 0:
            assert r["ok"] is False, r
            assert r["error"] == "ZeroDivisionError: division by zero"
            assert r["traceback"].startswith("Traceback (most recent call last):")
            assert "in inverse" in r["traceback"] and "return 1 / x" in r["traceback"]
            assert "attempts" not in r  # the function's verdict: not tried again
        else:
            assert r == {"index": r["index"], "ok": True, "result": 1 / x}
    assert f"{items.count(0)} of {len(items)} item(s) failed" in out.stderr


def test_executor_ignores_a_json_answer_format_around_it(monkeypatch, fanmap_bin):
    # The Executor decodes serve's own answers: a FANMAP_PIPE_ANSWERS set
    # around it (say, inside a function served with json answers) must not
    # change what its co-processes write.
    import fanmap
    import fanmap_testfns as fns
    monkeypatch.setenv("FANMAP_PIPE_ANSWERS", "json")
    with fanmap.Executor(workers=1, fanmap_bin=fanmap_bin) as ex:
        assert list(ex.map(fns.square, range(5))) == [0, 1, 4, 9, 16]
        with pytest.raises(ZeroDivisionError):
            ex.submit(fns.inverse, 0).result(timeout=DEADLINE)
