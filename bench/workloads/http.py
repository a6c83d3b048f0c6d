"""http: 10,000 chat requests against mock-llm (100 ms latency), 1,000 in flight:
`fanmap -j 2 --slots 500 --http URL --chat mock-model` vs
  wrk -c 1000 (POSTing a chat body; the ceiling the server allows)
  the official OpenAI Node.js SDK with a pool of 1,000 async loops (bench/peers/http_openai.js)
  `curl --parallel --parallel-max 1000` (bench/peers/http_curl.sh)
  ThreadPoolExecutor(1000) with one keep-alive http.client connection per thread
    (bench/peers/http_threads.py)
Every client's answers are checked ("echo: PROMPT" for each prompt, in order); a peer that
cannot run (no node, no npm package, an old curl) gets a row saying why.
A note breaks fanmap's time down beyond the 1.00 s floor, from two more fanmap runs in each rep:
one item (the fixed cost of starting and stopping), and the same 10,000 with `--rate 1000000/s`
(no slow start), with the median answer time from `--summary`.
"pending" unless fanmap --http and mock-llm work."""

import json
import os
import random
import re
import shutil
import subprocess
import sys

from bench.lib import (PEERS, ROOT, BenchError, Server, find_mock_llm, log, median,
                       read_records, run, tail_of, write_lines)

WRK_TARGET = 0.95  # fanmap's requests/s over wrk's
OPENAI_TARGET = 4.0  # fanmap's requests/s over the Node openai SDK's
MODEL = "mock-model"


def measure(b):
    n, threads = b.a.http_items, 1000
    wl = f"HTTP chat: {n:,} requests, 100 ms latency, `-j 2 --slots 500`"
    target = f"≥ {WRK_TARGET} of wrk"
    mock = find_mock_llm(b.a.bin)
    if mock is None:
        b.results["http"] = {"pending": "mock-llm is not built"}
        log("http: pending (no build/bin/mock-llm or scripts/mock-llm)")
        b.pending(wl, "pending: mock-llm is not in this build", target)
        return
    server = Server(mock, ["--port", "0", "--latency-ms", "100"], b.path("mock.err"))
    if server.url is None:
        why = f"{os.path.relpath(mock, ROOT)} printed no `listening on URL`"
        b.results["http"] = {"pending": why}
        log(f"http: pending ({why})\n  " + tail_of(b.path("mock.err")))
        b.pending(wl, f"pending: {why}", target)
        return
    try:
        url = server.url + "/v1/chat/completions"
        fm_args = ["--http", url, "--chat", "mock-model"]
        p = subprocess.run(b.fm("-j", "1", *fm_args), input=b"hi\n",
                           capture_output=True, timeout=30, cwd=ROOT)
        if p.returncode != 0 or b'"ok":true' not in p.stdout:
            why = (p.stderr.decode(errors="replace").strip().splitlines()
                   or [p.stdout[:200].decode(errors="replace")])[0]
            b.results["http"] = {"pending": why}
            log(f"http: pending (`fanmap --http --chat`: {why})")
            b.pending(wl, f"pending: `fanmap --http` does not work in this build "
                          f"({why})", target)
            return
        _measure(b, server, url, fm_args, n, threads, wl)
    finally:
        server.stop()

def _node_why_not():
    if not shutil.which("node"):
        return "node is not installed (scripts/deps bench)"
    if not os.path.isfile(os.path.join(ROOT, "bench", "node_modules", "openai", "package.json")):
        return "the openai npm package is not installed (scripts/deps bench runs npm ci)"
    return None


def _curl_why_not():
    if not shutil.which("curl"):
        return "curl is not installed (scripts/deps bench)"
    p = subprocess.run(["curl", "--help", "all"], capture_output=True, text=True)
    if "--parallel-max" not in p.stdout:
        return "this curl has no --parallel (curl 7.66 or later)"
    return None


def _check(results, prompts, what):
    for i, (got, prompt) in enumerate(zip(results, prompts)):
        if got != "echo: " + prompt:
            raise BenchError(f"{what}: answer {i} is {got!r}, expected {'echo: ' + prompt!r}")


def _curl_results(outdir, n):
    results = []
    for i in range(n):
        path = os.path.join(outdir, f"{i}.json")
        try:
            with open(path, "rb") as fh:
                results.append(json.loads(fh.read())["choices"][0]["message"]["content"])
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise BenchError(f"curl --parallel: response {i} ({path}) is missing or not a chat "
                             f"completion: {e}")
    return results


def _wrk(b, url, threads, seconds=None):
    seconds = seconds or b.a.wrk_seconds
    _, wout, _ = run(["wrk", "-t", "2", "-c", str(threads), "-d", f"{seconds}s",
                      "--timeout", "10s", "-s", os.path.join(PEERS, "wrk_chat.lua"), url],
                     what="wrk")
    text = wout.decode(errors="replace")
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if not m:
        raise BenchError(f"wrk: no Requests/sec in its output:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if non2xx:
        raise BenchError(f"wrk: {non2xx.group(1)} error responses from mock-llm:\n{text}")
    errs = re.search(r"Socket errors:.*", text)
    return float(m.group(1)), (errs.group(0) if errs else None), text


def _measure(b, server, url, fm_args, n, threads, wl):
    items = b.path("prompts.in")
    prompts = [f"prompt {i}: say something" for i in range(n)]
    write_lines(items, prompts)
    out = b.path("http.out")
    curl_dir = b.path("http.curl")
    base_url = url.rsplit("/chat/completions", 1)[0]
    peers = {
        "openai": {"label": f"OpenAI Node.js SDK (openai npm), pool of {threads:,}",
                   "why": _node_why_not(), "s": []},
        "curl": {"label": f"`curl --parallel --parallel-max {threads}`", "why": _curl_why_not(),
                 "s": []},
        "threads": {"label": f"ThreadPoolExecutor({threads}), http.client keep-alive",
                    "why": None, "s": []},
    }
    commands = {
        "openai": ["node", os.path.join(PEERS, "http_openai.js"), items, out, base_url, MODEL,
                   str(threads)],
        "curl": [os.path.join(PEERS, "http_curl.sh"), items, curl_dir, url, MODEL,
                 str(threads)],
        "threads": [sys.executable, os.path.join(PEERS, "http_threads.py"), items, out, url,
                    MODEL, str(threads)],
    }
    t_fm, wrk_rps, wrk_errs, wrk_text = [], [], [], []
    t_one, t_unpaced, p50_ms = [], [], []
    summary = b.path("http.summary.json")
    one = b.path("prompt1.in")
    write_lines(one, prompts[:1])

    def run_fanmap():
        tt, _, _ = run(b.fm("-j", "2", "--slots", "500", *fm_args, "-i", items, "-o", out,
                            "--summary", summary),
                       what="fanmap --http")
        _check(read_records(out, n, "fanmap --http"), prompts, "fanmap --http")
        t_fm.append(tt)
        with open(summary) as fh:
            p50_ms.append(json.load(fh)["latency_ms"]["p50"])

    # Where fanmap's time goes beyond the 1.00 s floor (reported in a note, not a peer):
    # the same run with one item (process start, one request, shutdown) and without slow
    # start (--rate far above what the server can take: the pacing that keeps a
    # rate-limited server from refusing a burst is off).
    def run_fanmap_one():
        tt, _, _ = run(b.fm("-j", "2", "--slots", "500", *fm_args, "-i", one, "-o", out),
                       what="fanmap --http (1 item)")
        _check(read_records(out, 1, "fanmap --http (1 item)"), prompts[:1],
               "fanmap --http (1 item)")
        t_one.append(tt)

    def run_fanmap_unpaced():
        tt, _, _ = run(b.fm("-j", "2", "--slots", "500", "--rate", "1000000/s", *fm_args,
                            "-i", items, "-o", out),
                       what="fanmap --http --rate 1000000/s")
        _check(read_records(out, n, "fanmap --http --rate 1000000/s"), prompts,
               "fanmap --http --rate 1000000/s")
        t_unpaced.append(tt)

    def run_peer(key):
        peer = peers[key]
        if peer["why"]:
            return
        if key == "curl":
            shutil.rmtree(curl_dir, ignore_errors=True)
        try:
            tt, _, _ = run(commands[key], what=peer["label"])
            if key == "curl":
                got = _curl_results(curl_dir, n)
            else:
                got = read_records(out, n, peer["label"])
            _check(got, prompts, peer["label"])
        except BenchError as e:
            # a peer that breaks is reported as such, not dropped and not fatal
            peer["why"] = str(e).splitlines()[0]
            log(f"http: {peer['label']} failed: {e}")
            return
        peer["s"].append(tt)

    def run_wrk():
        rps, errs, text = _wrk(b, url, threads)
        # the same from cold for one second: its 1,000 connections are opened within it, as
        # fanmap's are within its run (the steady figure above leaves that out)
        wrk_cold.append(_wrk(b, url, threads, seconds=1)[0])
        wrk_rps.append(rps)
        wrk_errs.append(errs)
        wrk_text.append(text)

    clients = ([run_fanmap, run_fanmap_one, run_fanmap_unpaced] +
               [lambda key=key: run_peer(key) for key in peers] + [run_wrk])

    def body(r):
        # Each client leaves its 1,000 connections in TIME_WAIT (for 60 s), which slows the
        # connects of those that follow (by up to 15% over a few runs here): the order is
        # shuffled each rep (seeded: the same in every bench run), so that no client always
        # follows the same ones.
        order = list(clients)
        random.Random(r).shuffle(order)
        for client in order:
            # a client that exits 0 without writing must not be checked against another's
            if os.path.exists(out):
                os.remove(out)
            client()

    wrk_cold = []
    b.reps(f"http: {n:,} requests", body)
    shutil.rmtree(curl_dir, ignore_errors=True)
    f = median(t_fm)
    fr = n / f
    w = median(wrk_rps)
    res = {"requests": n, "latency_ms": 100, "in_flight": threads,
           "fanmap": "-j 2 --slots 500", "fanmap_s": t_fm, "fanmap_requests_per_s": fr,
           "wrk_requests_per_s": wrk_rps, "wrk_median_requests_per_s": w,
           "wrk_cold_1s_requests_per_s": wrk_cold,
           "wrk_socket_errors": wrk_errs, "wrk_output_last": wrk_text[-1], "peers": {},
           "fanmap_one_item_s": t_one, "fanmap_rate_1000000_s": t_unpaced,
           "fanmap_latency_p50_ms": p50_ms}
    of_wrk = fr / w
    b.row(wl, f"{f:.2f} s ({fr:,.0f} req/s)", f"ceiling: `wrk -c {threads}` (same server)",
          f"{w:,.0f} req/s ({n / w:.2f} s for {n:,})", of_wrk, f"≥ {WRK_TARGET} of wrk",
          of_wrk >= WRK_TARGET, plot="http / wrk (ceiling)")
    for key, peer in peers.items():
        if peer["why"] and len(peer["s"]) < b.a.reps:
            res["peers"][key] = {"label": peer["label"], "cannot_run": peer["why"],
                                 "s": peer["s"]}
            b.cannot_run("″", peer["label"], peer["why"],
                         f"≥ {OPENAI_TARGET:g}×" if key == "openai" else "—")
            if key == "openai":
                b.rows[-1]["met"] = False
            continue
        p = median(peer["s"])
        res["peers"][key] = {"label": peer["label"], "s": peer["s"], "requests_per_s": n / p,
                             "speedup": p / f}
        need = OPENAI_TARGET if key == "openai" else None
        b.row("″", "″", peer["label"], f"{p:.2f} s ({n / p:,.0f} req/s)", p / f,
              f"≥ {need:g}×" if need else "—", (p / f >= need) if need else None,
              plot={"openai": "http / Node openai", "curl": "http / curl --parallel",
                    "threads": "http / TPE(1000)"}[key])
    b.results["http"] = res
    floor = n * 0.1 / threads
    b.notes.append(
        f"HTTP: with {threads:,} requests in flight and 100 ms latency no client can pass "
        f"{threads / 0.1:,.0f} requests/s (Little's law), so {n:,} requests take at least "
        f"{floor:.2f} s; fanmap took {f:.2f} s, and wrk at the same concurrency on the same "
        f"server measured {w:,.0f} requests/s once its connections were open "
        f"({median(wrk_cold):,.0f} requests/s in a 1 s run from cold, opening them).")
    # The breakdown: fixed cost (a 1-item run less its one request), slow start (the same
    # run unpaced), and the server's answer time above 100 ms in each of the n / threads
    # rounds; what is left is the ramp (opening 1,000 connections) and the last round's
    # spread.
    one_s, unpaced_s, p50 = median(t_one), median(t_unpaced), median(p50_ms)
    fixed = max(0.0, one_s - 0.1)
    rounds = n / threads
    per_round = max(0.0, (p50 - 100) / 1000) * rounds
    rest = unpaced_s - floor - fixed - per_round
    res["breakdown_s"] = {"floor": floor, "fixed": fixed, "slow_start": f - unpaced_s,
                          "server_latency_above_100ms": per_round, "ramp_and_tail": rest}
    b.notes.append(
        f"HTTP: where fanmap's {f:.2f} s go: the {floor:.2f} s floor; {fixed * 1000:.0f} ms "
        f"of fixed cost (a 1-item run took {one_s:.2f} s: starting the coordinator and two "
        f"workers, loading libcurl, then shutting down); {(f - unpaced_s) * 1000:.0f} ms of "
        f"slow start (the same run with `--rate 1000000/s` took {unpaced_s:.2f} s: without "
        f"--rate, fanmap paces its first requests, doubling every 100 ms, so that a server "
        f"that limits its rate without saying so is not met with a burst of 1,000 "
        f"requests; the 429 targets of `scripts/bench-ratelimit` rely on it); "
        f"{per_round * 1000:.0f} ms of the server's answer time above 100 ms (median "
        f"{p50:.0f} ms, over {rounds:.0f} rounds); {rest * 1000:.0f} ms left for opening "
        f"the 1,000 connections and the spread of the last round.")
