"""pipe: 1,000,000 items through `-j 2 --pipe 'python3 examples/upper.py'` (fanmap's JSONL
records) vs
  the same command without fanmap: two of them at once, each fed half of the lines
    directly (bench/peers/pipe_direct.sh; output: the upper-cased input, in order)
  ProcessPoolExecutor(2).map(str.upper) with chunksize 1000 (the same items) and 1 (fewer
    items, compared by items/s), writing fanmap's records byte for byte.
"pending" unless `fanmap --pipe` works in this build."""

import os
import subprocess

from bench.lib import (PEERS, ROOT, BenchError, check_records, expected_records, fmt_n,
                       fmt_rate, log, median, run, write_lines)

DEFAULT_PIPE_CMD = "python3 examples/upper.py"
TARGET = 0.6  # fanmap's items/s over two co-processes fed directly


def _probe(b):
    """Why `fanmap --pipe` does not work in this build, or None."""
    try:
        p = subprocess.run(b.fm("-j", "1", "--pipe", "cat", "--output-format", "raw"),
                           input=b"a\n", capture_output=True, timeout=30, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return "probe timed out"
    if p.returncode == 0 and p.stdout == b"a\n":
        return None
    return (p.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]


def _exact(path, expected, what):
    with open(path, "rb") as fh:
        if fh.read() != expected:
            raise BenchError(f"{what}: output differs from the upper-cased items "
                             "(fanmap's records)")


def measure(b):
    n, np_ = b.a.pipe_items, b.a.pipe_pool_items
    cmd = b.a.pipe_cmd
    wl = f"pipe: {fmt_n(n)} items, `-j 2 --pipe '{cmd}'`"
    target = f"≥ {TARGET} of two fed directly"
    why = _probe(b)
    if why is not None:
        log(f"pipe: pending (`echo a | fanmap -j 1 --pipe cat`: {why})")
        b.results["pipe"] = {"pending": why}
        b.pending(wl, f"pending: `fanmap --pipe` does not work in this build ({why})", target)
        return
    upper = os.path.join(ROOT, "examples", "upper.py")
    if cmd == DEFAULT_PIPE_CMD and not os.path.isfile(upper):
        b.results["pipe"] = {"pending": "examples/upper.py is missing"}
        b.pending(wl, "pending: examples/upper.py is missing", target)
        return
    items, pitems = b.path("pipe.in"), b.path("pipe_p.in")
    parts = [b.path("pipe.part0"), b.path("pipe.part1")]
    words = [f"item-{i}-abc" for i in range(n)]
    write_lines(items, words)
    write_lines(pitems, words[:np_])
    write_lines(parts[0], words[:n // 2])
    write_lines(parts[1], words[n // 2:])
    expected = expected_records((w.upper() for w in words), plain=True)
    expected_small = expected_records((w.upper() for w in words[:np_]), plain=True)
    expected_raw = "".join(f"{w.upper()}\n" for w in words).encode()
    out = b.path("pipe.out")
    t = {k: [] for k in ("fanmap", "direct", "pool1000", "pool1")}

    def body(r):
        # on stdout (redirected to the file), records carry no --resume fingerprint: the
        # same bytes as the executor's
        tt, _, _ = run(b.fm("-j", "2", "--pipe", cmd, "-i", items), stdout=out,
                       what="fanmap --pipe")
        check_records(out, n, lambda i: words[i].upper(), expected)
        t["fanmap"].append(tt)
        tt, _, _ = run([os.path.join(PEERS, "pipe_direct.sh"), cmd, out, *parts],
                       what=f"two `{cmd}` fed directly")
        with open(out, "rb") as fh:
            if fh.read() != expected_raw:
                raise BenchError(f"two `{cmd}` fed directly: output is not the upper-cased "
                                 "input in order")
        t["direct"].append(tt)
        t["pool1000"].append(b.pool(items, out, 2, 1000, "upper"))
        _exact(out, expected, "ProcessPoolExecutor(2) chunksize 1000")
        t["pool1"].append(b.pool(pitems, out, 2, 1, "upper"))
        _exact(out, expected_small, "ProcessPoolExecutor(2) chunksize 1")
        os.unlink(out)

    b.reps(f"pipe: {n:,} items", body)
    rate = {k: (np_ if k == "pool1" else n) / median(v) for k, v in t.items()}
    fr = rate["fanmap"]
    b.results["pipe"] = {"items": n, "pool1_items": np_, "command": cmd, "runs_s": t,
                         "items_per_s": rate, "of_direct": fr / rate["direct"],
                         "speedup_pool1000": fr / rate["pool1000"],
                         "speedup_pool1": fr / rate["pool1"]}
    of = fr / rate["direct"]
    b.row(wl, fmt_rate(fr), f"two `{cmd}` fed directly, no fanmap (half the lines each)",
          fmt_rate(rate["direct"]), of, target, of >= TARGET, plot="pipe / 2 fed directly")
    b.row("″", "″", "ProcessPoolExecutor(2).map(str.upper), chunksize 1000",
          fmt_rate(rate["pool1000"]), fr / rate["pool1000"], "reported", None,
          plot="pipe / PPE(2) cs 1000")
    b.row("″", "″", f"ProcessPoolExecutor(2).map(str.upper), chunksize 1 ({np_:,} items)",
          fmt_rate(rate["pool1"]), fr / rate["pool1"], "—", None, fair=False)
