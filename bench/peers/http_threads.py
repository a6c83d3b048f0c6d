#!/usr/bin/env python3
"""ThreadPoolExecutor(N) sending one chat request per line of SRC, standard library only:
one keep-alive http.client connection per thread; writes fanmap's JSONL records in order.

    bench/peers/http_threads.py SRC DST URL MODEL THREADS

URL is the chat completions endpoint, e.g. http://127.0.0.1:8080/v1/chat/completions.
"""
import http.client
import json
import sys
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    src, dst, url, model, threads = sys.argv[1:6]
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        sys.exit("http_threads.py: only http:// URLs")
    path = u.path or "/"
    headers = {"Content-Type": "application/json"}
    encode = json.JSONEncoder(ensure_ascii=False).encode
    local = threading.local()

    def post(body):
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(u.hostname, u.port or 80,
                                                           timeout=120)
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
        return data

    def f(prompt):
        body = encode({"model": model,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
        try:
            data = post(body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            local.conn.close()  # the server closed an idle keep-alive connection: once more
            local.conn = None
            data = post(body)
        return json.loads(data)["choices"][0]["message"]["content"]

    with open(src) as fh:
        prompts = [line.rstrip("\n") for line in fh]
    with ThreadPoolExecutor(int(threads)) as ex, open(dst, "w") as out:
        out.writelines('{"index":%d,"ok":true,"result":%s}\n' % (i, encode(r))
                       for i, r in enumerate(ex.map(f, prompts)))


if __name__ == "__main__":
    main()
