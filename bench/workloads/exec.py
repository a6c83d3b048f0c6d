"""exec: a trivial command per item: `-j 2 -- true` vs `xargs -P 2 -n 1 true`,
`parallel -j 2 true` (fewer items, compared by items/s)."""

from bench.lib import check_records, expected_records, fmt_rate, median, run, seq_file


def measure(b):
    n, nx, npar = b.a.exec_items, b.a.exec_xargs_items, b.a.exec_parallel_items
    items, xitems, pitems = b.path("exec.in"), b.path("exec_x.in"), b.path("exec_p.in")
    seq_file(items, 1, n)
    seq_file(xitems, 1, nx)
    seq_file(pitems, 1, npar)
    out = b.path("exec.out")
    expected = expected_records(("" for _ in range(n)), plain=True)
    t_fm, t_x, t_p = [], [], []

    def body(r):
        tt, _, _ = run(b.fm("-j", "2", "-i", items, "-o", out, "--", "true"),
                       what="fanmap -j 2 -- true")
        check_records(out, n, lambda i: "", expected)
        t_fm.append(tt)
        tt, _, _ = run(["xargs", "-P", "2", "-n", "1", "true"], stdin=xitems, what="xargs")
        t_x.append(tt)
        tt, _, _ = run(["parallel", "--will-cite", "-j", "2", "true"], stdin=pitems,
                       what="parallel")
        t_p.append(tt)

    b.reps(f"exec: {n:,} × true", body)
    fr = n / median(t_fm)
    xr = nx / median(t_x)
    pr = npar / median(t_p)
    b.results["exec_true"] = {
        "items": n, "fanmap_s": t_fm, "fanmap_items_per_s": fr,
        "peers": {"xargs -P 2 -n 1 true": {"items": nx, "s": t_x, "items_per_s": xr},
                  "parallel -j 2 true": {"items": npar, "s": t_p, "items_per_s": pr}}}
    b.row(f"exec `true` per item, 2 workers ({n:,} items)", fmt_rate(fr),
          "`xargs -P 2 -n 1 true`" + ("" if nx == n else f" ({nx:,} items)"),
          fmt_rate(xr), fr / xr, "≥ 0.8×", fr / xr >= 0.8, plot="exec / xargs -P 2")
    b.row("″", "″", f"`parallel -j 2 true` ({npar:,} items)", fmt_rate(pr), fr / pr,
          "—", None, plot="exec / parallel -j 2")
