"""memory: the coordinator's peak RSS alone (`-j 0 --listen` under /usr/bin/time, two
fanmap-worker processes started separately), --builtin echo, --output-format raw (output
checked: the input, byte for byte), for 300k, 1M and 3M items (--full: 10M)."""

import filecmp
import os

from bench.lib import BenchError, count_lines, fmt_n, log, median, seq_file

LIMIT_MB = 16  # the coordinator's peak RSS target, in MiB, at 1M items and at the largest


def measure(b):
    sizes = [300_000, 1_000_000, b.a.big_lines]  # 300k: one more point for the plot
    items = b.path("mem.in")
    out = b.path("mem.out")
    res = {"method": "fanmap -j 0 --listen + 2 fanmap-worker, --builtin echo, "
                     "--output-format raw (output checked: byte for byte the input); "
                     "/usr/bin/time %M of the coordinator alone", "sizes": {}}
    reps = 1 if not b.a.full else 3  # peak RSS hardly varies between runs
    for size in sizes:
        seq_file(items, 1, size)
        peaks, ts = [], []
        for r in range(reps):
            log(f"memory: {size:,} items rep {r + 1}/{reps}")
            t, peak = b.farm(["--builtin", "echo", "--output-format", "raw", "-i", items,
                              "-o", out], [None, None], rss=True)
            if not filecmp.cmp(items, out, shallow=False):
                raise BenchError(f"fanmap: raw output of {size:,} echo items is not the "
                                 f"input in order ({count_lines(out):,} lines)")
            os.unlink(out)
            peaks.append(peak)
            ts.append(t)
        res["sizes"][str(size)] = {"peak_rss_kb": peaks, "median_kb": median(peaks),
                                   "s": ts}
    os.unlink(items)
    small, big = (res["sizes"][str(s)]["median_kb"] / 1024 for s in sizes[1:])
    ratio = big / small
    res["ratio"] = ratio
    b.results["memory"] = res
    b.plots["memory"] = [(s / 1e6, res["sizes"][str(s)]["median_kb"] / 1024)
                         for s in sizes]
    b.row("coordinator peak RSS, 1M items", f"{small:.1f} MB", "—", "—", None,
          f"≤ {LIMIT_MB} MB", small <= LIMIT_MB, ratio=f"{small:.1f} MB (no peer)")
    b.row(f"coordinator peak RSS, {fmt_n(sizes[2])} items",
          f"{big:.1f} MB ({ratio:.2f}× of 1M)", "—", "—", None,
          f"≤ {LIMIT_MB} MB", big <= LIMIT_MB, ratio=f"{big:.1f} MB (no peer)")
