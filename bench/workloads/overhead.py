"""overhead: 1,000,000 trivial items file to file, `-j 2 --builtin echo`, in both output
formats, each against ProcessPoolExecutor(2).map written as a competent user would
(bench/peers/pool.py, chunksize 1000, the same items):
  raw    `--output-format raw` vs the executor writing each result verbatim: both outputs
         must be the input, byte for byte
  JSONL  fanmap's records (on stdout, redirected to the file) vs the executor formatting
         the same records with one cached JSONEncoder: both outputs must be the same bytes
and, for scale, ProcessPoolExecutor(2) chunksize 1, `parallel -j 2 -k echo` and
`xargs -P 2 -n 1 echo` (fewer items, compared by items/s)."""

import filecmp
import os

from bench.lib import BenchError, check_lines, fmt_n, fmt_rate, median, run, seq_file

TARGET = 2.5  # fanmap's items/s over the fair executor's, in each format


def _same_file(got, want, what):
    if not filecmp.cmp(got, want, shallow=False):
        raise BenchError(f"{what}: output is not the input, byte for byte")


def _exact(path, expected, what):
    with open(path, "rb") as fh:
        if fh.read() != expected:
            raise BenchError(f"{what}: output differs from fanmap's records")


def measure(b):
    n = b.a.lines
    items = b.path("lines.in")
    seq_file(items, 1, n)
    expected = b.echo_expected(n)
    out = b.path("lines.out")
    small = {}
    for key, count in (("pool1", b.a.pool1_items), ("parallel", b.a.parallel_items),
                       ("xargs", b.a.xargs_items)):
        small[key] = b.path(f"lines_{key}.in")
        seq_file(small[key], 1, count)
    t = {k: [] for k in ("fm_raw", "fm_jsonl", "pool_raw", "pool_jsonl", "pool1", "parallel",
                         "xargs")}

    def body(r):
        # fanmap writes to stdout (redirected to the file): records on stdout carry no "fp"
        # (that is for --resume, in -o files), so its JSONL is the executor's, byte for byte
        tt, _, _ = run(b.fm("-j", "2", "--builtin", "echo", "--output-format", "raw",
                            "-i", items), stdout=out, what="fanmap --output-format raw")
        _same_file(out, items, "fanmap --output-format raw")
        t["fm_raw"].append(tt)
        tt, _, _ = run(b.fm("-j", "2", "--builtin", "echo", "-i", items), stdout=out,
                       what="fanmap")
        _exact(out, expected, "fanmap")
        t["fm_jsonl"].append(tt)
        t["pool_raw"].append(b.pool(items, out, 2, 1000, "echo", fmt="raw"))
        _same_file(out, items, "ProcessPoolExecutor(2) raw")
        t["pool_jsonl"].append(b.pool(items, out, 2, 1000, "echo", fmt="jsonl"))
        _exact(out, expected, "ProcessPoolExecutor(2) JSONL")
        t["pool1"].append(b.pool(small["pool1"], out, 2, 1, "echo", fmt="jsonl"))
        _exact(out, b.echo_expected(b.a.pool1_items), "ProcessPoolExecutor(2) chunksize 1")
        tt, _, _ = run(["parallel", "--will-cite", "-j", "2", "-k", "echo"],
                       stdin=small["parallel"], stdout=out, what="parallel")
        _same_file(out, small["parallel"], "parallel -j 2 -k echo")
        t["parallel"].append(tt)
        tt, _, _ = run(["xargs", "-P", "2", "-n", "1", "echo"], stdin=small["xargs"],
                       stdout=out, what="xargs")
        check_lines(out, b.a.xargs_items, "xargs -P 2 -n 1 echo")
        t["xargs"].append(tt)
        os.unlink(out)

    b.reps(f"overhead: {n:,} × echo", body)
    b.echo_expected(n)  # keep the big one cached for the other workloads
    rate = {k: (n if k in ("fm_raw", "fm_jsonl", "pool_raw", "pool_jsonl")
                else getattr(b.a, f"{k}_items")) / median(v) for k, v in t.items()}
    res = {"items": n, "runs_s": t, "items_per_s": rate,
           "speedup_raw": rate["fm_raw"] / rate["pool_raw"],
           "speedup_jsonl": rate["fm_jsonl"] / rate["pool_jsonl"]}
    b.results["overhead_echo"] = res
    for fmt, fm_key, pool_key, how in (
            ("raw", "fm_raw", "pool_raw", "results written verbatim"),
            ("JSONL", "fm_jsonl", "pool_jsonl", "byte-identical records, one cached encoder")):
        sp = rate[fm_key] / rate[pool_key]
        b.row(f"{fmt_n(n)} × echo, 2 workers, file to file, {fmt}", fmt_rate(rate[fm_key]),
              f"ProcessPoolExecutor(2), chunksize 1000, {how}", fmt_rate(rate[pool_key]), sp,
              f"≥ {TARGET}×", sp >= TARGET, plot=f"echo {fmt} / PPE(2) cs 1000")
    fr = rate["fm_jsonl"]
    for key, label, plot in (
            ("pool1", "ProcessPoolExecutor(2), chunksize 1", "echo / PPE(2) cs 1"),
            ("parallel", "`parallel -j 2 -k echo`", "echo / parallel -j 2 -k"),
            ("xargs", "`xargs -P 2 -n 1 echo` (order not kept)", "echo / xargs -P 2")):
        count = getattr(b.a, f"{key}_items")
        b.row("″", "″", f"{label} ({count:,} items)", fmt_rate(rate[key]),
              fr / rate[key], "—", None, plot=None, fair=False)
    os.unlink(items)
