"""scaling: sha256:ROUNDS items on 1 and 2 workers (enough items for --sha-seconds of CPU
per -j 1 run, at least 5 s) vs ProcessPoolExecutor(1|2) with hashlib doing the same rounds;
both must give identical digests. Medians of at least 5 runs."""

import os

from bench.lib import BenchError, log, median, read_records, run, seq_file

TARGET = 1.95  # -j 2 over -j 1


def measure(b):
    rounds = b.a.sha_rounds
    items = b.path("sha.in")
    out = b.path("sha.out")
    pout = b.path("sha.peer.out")
    n = b.a.sha_items
    if n is None:  # size the run so that -j 1 takes about --sha-seconds
        probe = 40
        seq_file(items, 1, probe)
        per = min(run(b.fm("-j", "1", "--builtin", f"sha256:{rounds}", "-i", items,
                              "-o", out), what="fanmap")[0] for _ in range(3)) / probe
        n = max(20, int(b.a.sha_seconds / per) // 2 * 2)
        log(f"scaling: {per * 1e3:.2f} ms per item: {n} items")
    seq_file(items, 1, n)
    t = {"fanmap -j 1": [], "fanmap -j 2": [], "ProcessPoolExecutor(1)": [],
         "ProcessPoolExecutor(2)": []}

    def body(r):
        for j in (1, 2):
            tt, _, _ = run(b.fm("-j", str(j), "--builtin", f"sha256:{rounds}", "-i",
                                   items, "-o", out), what=f"fanmap -j {j}")
            fm_results = read_records(out, n, f"fanmap -j {j}")
            t[f"fanmap -j {j}"].append(tt)
            t[f"ProcessPoolExecutor({j})"].append(
                b.pool(items, pout, j, 1, "sha256", rounds))
            peer_results = read_records(pout, n, f"ProcessPoolExecutor({j})")
            if fm_results != peer_results:
                bad = next(i for i in range(n) if fm_results[i] != peer_results[i])
                raise BenchError(f"sha256:{rounds}: fanmap and hashlib differ at item "
                                 f"{bad}: {fm_results[bad]!r} vs {peer_results[bad]!r}")

    # two processes on two CPUs are the most sensitive to other load: at least 5 runs
    b.reps(f"scaling: {n} × sha256:{rounds}", body, max(b.a.reps, 5))
    m = {k: median(v) for k, v in t.items()}
    f_sp = m["fanmap -j 1"] / m["fanmap -j 2"]
    p_sp = m["ProcessPoolExecutor(1)"] / m["ProcessPoolExecutor(2)"]
    b.results["cpu_scaling"] = {
        "items": n, "rounds": rounds, "cpus": os.cpu_count(), "runs_s": t, "median_s": m,
        "fanmap_speedup": f_sp, "fanmap_efficiency": f_sp / 2, "peer_speedup": p_sp,
        "peer_efficiency": p_sp / 2, "identical_results": True}
    b.plots["scaling"] = [(j, n / m[f"fanmap -j {j}"], n / m[f"ProcessPoolExecutor({j})"])
                          for j in (1, 2)]
    b.row(f"CPU scaling: {n} × sha256:{rounds}, 1 → 2 workers",
          f"{m['fanmap -j 1']:.2f} → {m['fanmap -j 2']:.2f} s: {f_sp:.2f}× "
          f"(efficiency {f_sp / 2:.0%})", "ProcessPoolExecutor(1) → (2), hashlib",
          f"{m['ProcessPoolExecutor(1)']:.2f} → {m['ProcessPoolExecutor(2)']:.2f} s: "
          f"{p_sp:.2f}×", None, f"≥ {TARGET}×", f_sp >= TARGET,
          ratio=f"fanmap {f_sp:.2f}×, ProcessPoolExecutor {p_sp:.2f}× (-j 2 over -j 1)")
    b.row("″ 2 workers (identical digests)", f"{m['fanmap -j 2']:.2f} s",
          "ProcessPoolExecutor(2), hashlib", f"{m['ProcessPoolExecutor(2)']:.2f} s",
          m["ProcessPoolExecutor(2)"] / m["fanmap -j 2"], "—", None,
          plot="sha256 -j2 / PPE(2) hashlib")
