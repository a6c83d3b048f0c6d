#!/usr/bin/python3
"""BatchUrlEscapeTest: a Batch line's url cannot leave the --http base path,
which the API key is sent to.

    /usr/bin/python3 tests/batch/batch_url_escape_test.py BIN_DIR

Real fanmap and worker processes against a real HTTP server on 127.0.0.1 that
records every request's path and Authorization header. The base URL is
http://127.0.0.1:PORT/openai/v1 with --api-key-env; lines whose url has a
"." or ".." segment (plain or percent-encoded), a backslash or an encoded
"/" or backslash each get an error record naming "url" and are never sent;
the valid lines around them are sent under the base path, with the key.
"""

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

KEY = "sk-test-never-leaves-the-base"
ESCAPES = [
    "/v1/../../admin/secret",
    "/v1/./../../admin/secret",
    "/v1/%2e%2e/%2e%2e/admin/secret",
    "/v1/%2E%2E/%2E%2E/admin/secret",
    "/v1/.%2e/%2E./admin/secret",
    "/v1/..\\..\\admin/secret",
    "/v1/..%2f..%2fadmin/secret",
    "/v1/..%5C..%5Cadmin/secret",
]


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


class Recorder(http.server.BaseHTTPRequestHandler):
    seen = []  # (path, Authorization)
    lock = threading.Lock()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        with self.lock:
            self.seen.append((self.path, self.headers.get("Authorization")))
        body = b'{"object":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    bin_dir = sys.argv[1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/openai/v1"

    lines, escaped = [], set()
    for i, url in enumerate(ESCAPES):
        lines.append({"custom_id": f"ok-{i}", "method": "POST", "url": "/v1/chat/completions",
                      "body": {}})
        lines.append({"custom_id": f"esc-{i}", "method": "POST", "url": url, "body": {}})
        escaped.add(f"esc-{i}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "batch.jsonl")
        with open(path, "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        env = dict(os.environ, MYKEY=KEY)
        r = subprocess.run([os.path.join(bin_dir, "fanmap"), "-j", "2", "--input-format",
                            "openai-batch", "-i", path, "--http", base, "--api-key-env", "MYKEY",
                            "--retries", "0", "--progress", "never"],
                           capture_output=True, text=True, env=env, timeout=300)
    server.shutdown()

    records = [json.loads(t) for t in r.stdout.splitlines()]
    if len(records) != len(lines):
        fail(f"{len(records)} records for {len(lines)} lines (exit {r.returncode}): "
             f"{r.stdout}{r.stderr}")
    for rec, line in zip(records, lines):
        if rec["custom_id"] != line["custom_id"]:
            fail(f"record out of order: {rec}")
        if line["custom_id"] in escaped:
            error = (rec.get("error") or {}).get("message", "")
            if rec["ok"] or rec["response"] is not None or '"url"' not in error:
                fail(f"url {line['url']!r} was not refused by name: {rec}")
        elif not rec["ok"]:
            fail(f"valid line failed: {rec}")
    bad = [p for p, _ in Recorder.seen if p != "/openai/v1/chat/completions"]
    if bad:
        fail(f"the server got paths outside the base path: {bad}")
    if len(Recorder.seen) != len(ESCAPES):
        fail(f"the server got {len(Recorder.seen)} requests, expected {len(ESCAPES)}")
    if any(auth != "Bearer " + KEY for _, auth in Recorder.seen):
        fail(f"the key was not sent to the base path: {Recorder.seen}")
    print(f"ok: {len(ESCAPES)} escaping urls refused, {len(ESCAPES)} valid lines sent")


if __name__ == "__main__":
    main()
