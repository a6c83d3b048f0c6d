"""filters: 1,000,000 lines through block-buffered filters (sed, tr, awk, unflushed
python3) with `-j 2 --pipe CMD --output-format raw`: output identical to the filter's own,
vs `parallel --pipe --block 1M -k -j 2 CMD`."""

import shutil

from bench.lib import BenchError, fmt_n, fmt_rate, median, run, write_lines

# Block-buffered filters (python3 without -u or flush).
FILTER_CMDS = ["sed s/1/x/", "tr 0-9 a-j", "awk '{print $1 \"x\"}'",
               "env -u PYTHONUNBUFFERED python3 -c 'import sys; "
               "sys.stdout.writelines(l.rstrip() + \"x\\n\" for l in sys.stdin)'"]


def measure(b):
    """Block-buffered line filters through --pipe (fanmap closes a co-process's input
    to make it flush): each must give exactly the filter's own output."""
    n = b.a.pipe_items
    target = "≥ 500k items/s, output identical to the filter's"
    items = b.path("filters.in")
    write_lines(items, (str(i) for i in range(1, n + 1)))
    have_parallel = shutil.which("parallel") is not None
    for cmd in FILTER_CMDS:
        wl = f"filter: {fmt_n(n)} lines, `-j 2 --pipe '{cmd}' --output-format raw`"
        want, got = b.path("filters.want"), b.path("filters.out")
        t_alone, _, _ = run(["sh", "-c", cmd], stdin=items, stdout=want, what=f"{cmd} alone")
        with open(want, "rb") as f:
            expected = f.read()
        t_fm, t_par = [], []

        def body(r):
            tt, _, _ = run(b.fm("-j", "2", "--pipe", cmd, "--output-format", "raw",
                                   "-i", items, "-o", got), what=f"fanmap --pipe '{cmd}'")
            with open(got, "rb") as f:
                if f.read() != expected:
                    raise BenchError(f"fanmap --pipe '{cmd}' output differs from {cmd}'s")
            t_fm.append(tt)
            if have_parallel:
                # GNU parallel's own way to stream a file through a filter, in order.
                tp, _, _ = run(["parallel", "--pipe", "--block", "1M", "-k", "-j", "2", cmd],
                               stdin=items, stdout=got, what=f"parallel --pipe '{cmd}'")
                with open(got, "rb") as f:
                    if f.read() != expected:
                        raise BenchError(f"parallel --pipe '{cmd}' output differs")
                t_par.append(tp)

        b.reps(f"filter '{cmd}': {n:,} lines", body)
        fr = n / median(t_fm)
        b.results.setdefault("filters", {})[cmd] = {
            "items": n, "fanmap_s": t_fm, "fanmap_items_per_s": fr,
            "parallel_pipe_s": t_par, "alone_s": t_alone}
        if have_parallel:
            pr = n / median(t_par)
            b.row(wl, fmt_rate(fr), "`parallel --pipe --block 1M -k -j 2`",
                  fmt_rate(pr), fr / pr, target, checks=[
                      (f"{fmt_rate(fr)} ≥ 500k items/s", fr >= 500_000)])
        else:
            b.row(wl, fmt_rate(fr), "GNU parallel is not installed", "—", None, target,
                  checks=[(f"{fmt_rate(fr)} ≥ 500k items/s", fr >= 500_000)])
        b.row("″", "″", f"for scale: `{cmd}` alone, one process, no fanmap",
              fmt_rate(n / t_alone), None, "—", None, fair=False)
