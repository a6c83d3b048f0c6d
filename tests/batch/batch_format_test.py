#!/usr/bin/python3
"""BatchFormatTest: fanmap --input-format openai-batch against the real
mock-llm, checked against curl sending the same lines.

    /usr/bin/python3 tests/batch/batch_format_test.py BIN_DIR

A Batch file of 1,000 lines: most are chat requests, some ask for errors from
the server (a body without "messages": 400; an unknown path: 404), and some
are not valid Batch lines (method GET, no custom_id, a body that is not an
object, a url that is not a path), which are never sent.

1. Against a mock that answers 20% of chat requests with 500, with --retries 0:
   1,000 output lines in input order, each with its line's custom_id, some
   of them 500s carrying the server's reply.
2. Against a mock without faults: every sendable line is also sent with
   `curl --parallel`; fanmap's status_code and body agree with curl's for
   every line (the completion's id and creation time aside).
3. --resume of a Batch output file cut after 500 lines and a torn one keeps
   those 500 lines as they were and completes the other 500, in order.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

N = 1000


def line_for(i):
    """(the Batch line, what it should give: 'ok', 400, 404 or 'invalid')."""
    chat = {"model": "mock-model", "messages": [{"role": "user", "content": f"prompt {i}"}]}
    base = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat}
    if i % 50 == 11:
        return dict(base, method="GET"), "invalid"
    if i % 50 == 21:
        return {k: v for k, v in base.items() if k != "custom_id"}, "invalid"
    if i % 50 == 31:
        return dict(base, body=["not", "an", "object"]), "invalid"
    if i % 50 == 41:
        return dict(base, url="v1/chat/completions"), "invalid"
    if i % 10 == 3:
        return dict(base, body={"model": "mock-model"}), 400
    if i % 10 == 7:
        return dict(base, url="/v1/no-such-endpoint"), 404
    return base, "ok"


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def start_mock(bin_dir, args, tmp, name):
    out = open(os.path.join(tmp, name + ".out"), "w+")
    proc = subprocess.Popen([os.path.join(bin_dir, "mock-llm"), "--port", "0"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline()
    m = re.match(r"listening on (http://127\.0\.0\.1:\d+)$", first.strip())
    if not m:
        proc.kill()
        fail(f"mock-llm said {first!r}")
    return proc, m.group(1)


def run_fanmap(bin_dir, base, path, extra):
    r = subprocess.run([os.path.join(bin_dir, "fanmap"), "-j", "2", "--slots", "50",
                        "--input-format", "openai-batch", "-i", path, "--http", base,
                        "--progress", "never"] + extra,
                       capture_output=True, text=True, timeout=300)
    return r


def check_shape(out, expected, want_500):
    lines = out.splitlines()
    if len(lines) != N:
        fail(f"{len(lines)} output lines for {N} input lines")
    seen_500 = 0
    for i, text in enumerate(lines):
        rec = json.loads(text)
        line, kind = expected[i]
        if rec["index"] != i or rec["id"] != f"batch_req_{i}":
            fail(f"line {i} out of order: {text}")
        if rec["custom_id"] != line.get("custom_id"):
            fail(f"line {i}: custom_id {rec['custom_id']!r}, input had {line.get('custom_id')!r}")
        if set(rec) - {"index", "ok", "fp", "id", "custom_id", "response", "error"}:
            fail(f"line {i}: unexpected fields: {text}")
        if kind == "invalid":
            if rec["ok"] or rec["response"] is not None or "Batch line" not in rec["error"]["message"]:
                fail(f"line {i} should be refused before sending: {text}")
            continue
        status = rec["response"]["status_code"]
        if not str(rec["response"]["request_id"]).startswith("req_"):
            fail(f"line {i}: no request_id: {text}")
        if status == 500:
            seen_500 += 1
            if rec["ok"] or rec["error"]["code"] != "http_500":
                fail(f"line {i}: a 500 must be a failed record: {text}")
            continue
        want = 200 if kind == "ok" else kind
        if status != want or rec["ok"] != (want == 200):
            fail(f"line {i}: status {status}, expected {want}: {text}")
        if rec["ok"] and rec["error"] is not None:
            fail(f"line {i}: ok with an error: {text}")
    if want_500 and seen_500 == 0:
        fail("no 500 reached the output although the mock answered 20% of requests with one")
    return seen_500


def comparable(body):
    """A reply without what differs between two requests (id, created)."""
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k not in ("id", "created")}
    return body


def main():
    bin_dir = sys.argv[1]
    os.environ["no_proxy"] = "*"
    os.environ.pop("OPENAI_API_KEY", None)
    with tempfile.TemporaryDirectory() as tmp:
        expected = [line_for(i) for i in range(N)]
        path = os.path.join(tmp, "batch.jsonl")
        with open(path, "w") as f:
            for line, _ in expected:
                f.write(json.dumps(line) + "\n")

        faulty, faulty_url = start_mock(bin_dir, ["--latency-ms", "5", "--p500", "0.2",
                                                  "--seed", "3"], tmp, "faulty")
        try:
            r = run_fanmap(bin_dir, faulty_url, path, ["--retries", "0"])
        finally:
            faulty.terminate()
            faulty.wait()
        if r.returncode != 1:
            fail(f"exit {r.returncode} (expected 1: some items failed): {r.stderr}")
        n500 = check_shape(r.stdout, expected, want_500=True)

        clean, url = start_mock(bin_dir, ["--latency-ms", "5"], tmp, "clean")
        try:
            r = run_fanmap(bin_dir, url + "/v1", path, [])
            if r.returncode != 1:
                fail(f"exit {r.returncode} (expected 1: the error lines failed): {r.stderr}")
            check_shape(r.stdout, expected, want_500=False)
            records = [json.loads(t) for t in r.stdout.splitlines()]
            # The same lines through curl.
            config = []
            sent = []
            for i, (line, kind) in enumerate(expected):
                if kind == "invalid":
                    continue
                body = os.path.join(tmp, f"body{i}.json")
                with open(body, "w") as f:
                    json.dump(line["body"], f)
                config += [f'url = "{url}{line["url"]}"', 'header = "Content-Type: application/json"',
                           f'data-binary = "@{body}"', f'output = "{tmp}/reply{i}.json"',
                           f'write-out = "{i} %{{http_code}}\\n"', "next"]
                sent.append(i)
            with open(os.path.join(tmp, "curl.cfg"), "w") as f:
                f.write("\n".join(config[:-1]) + "\n")
            c = subprocess.run(["curl", "-sS", "--parallel", "--parallel-max", "50", "-K",
                                os.path.join(tmp, "curl.cfg")],
                               capture_output=True, text=True, timeout=300)
            if c.returncode != 0:
                fail(f"curl exited {c.returncode}: {c.stderr}")
            # 3. Resume a Batch output file cut short.
            out = os.path.join(tmp, "out.jsonl")
            with open(out, "w") as f:
                f.write(r.stdout)
            r = run_fanmap(bin_dir, url, path, ["-o", out])
            full = open(out).read().splitlines(keepends=True)
            with open(out, "w") as f:
                f.write("".join(full[:500]) + full[500][:40])
            r = run_fanmap(bin_dir, url, path, ["-o", out, "--resume"])
            if r.returncode != 1 or "resuming: 500 record(s) found" not in r.stderr:
                fail(f"--resume: exit {r.returncode}: {r.stderr}")
            resumed = open(out).read().splitlines(keepends=True)
            if resumed[:500] != full[:500]:
                fail("--resume changed the records it kept")
            check_shape("".join(resumed), expected, want_500=False)
        finally:
            clean.terminate()
            clean.wait()
        codes = dict(tuple(map(int, l.split())) for l in c.stdout.splitlines())
        if sorted(codes) != sent:
            fail(f"curl reported {len(codes)} of {len(sent)} requests")
        for i in sent:
            with open(os.path.join(tmp, f"reply{i}.json")) as f:
                reply = json.load(f)
            response = records[i]["response"]
            if response["status_code"] != codes[i]:
                fail(f"line {i}: fanmap saw {response['status_code']}, curl {codes[i]}")
            if comparable(response["body"]) != comparable(reply):
                fail(f"line {i}: fanmap's body {response['body']} differs from curl's {reply}")
        print(f"ok: {N} lines in order with their custom_ids ({n500} 500s with --retries 0); "
              f"{len(sent)} replies agree with curl's; --resume completed a cut file")


if __name__ == "__main__":
    main()
