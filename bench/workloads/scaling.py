"""scaling: sha256:ROUNDS items on 1 and 2 workers (enough items for --sha-seconds of CPU
per -j 1 run, at least 5 s; the CPU time each run took is recorded) vs
ProcessPoolExecutor(1|2) with hashlib doing the same rounds on the first quarter of the
items (it is several times slower; compared by items/s), whose digests must be fanmap's.
Medians of at least 5 runs."""

import os
import resource
import subprocess
import time

from bench.lib import ROOT, BenchError, fmt_rate, log, median, read_records, run, seq_file

TARGET = 1.95  # -j 2 over -j 1


def measure(b):
    rounds = b.a.sha_rounds
    items = b.path("sha.in")
    out = b.path("sha.out")
    pout = b.path("sha.peer.out")
    n = b.a.sha_items

    def cpu_s():
        u = resource.getrusage(resource.RUSAGE_CHILDREN)
        return u.ru_utime + u.ru_stime

    sized = n is None
    if sized:  # size the run so that -j 1 takes at least --sha-seconds of CPU
        # per item: the difference between two sizes, so that a run's fixed cost (start-up)
        # does not count; 20% over, as the machine's speed drifts between probe and runs
        costs = {}
        for probe in (100, 500):
            seq_file(items, 1, probe)
            runs = []
            for _ in range(3):
                c0 = cpu_s()
                run(b.fm("-j", "1", "--builtin", f"sha256:{rounds}", "-i", items, "-o", out),
                    what="fanmap")
                runs.append(cpu_s() - c0)
            costs[probe] = min(runs)
        per = max(costs[500] - costs[100], costs[500] / 2) / 400
        n = max(20, int(1.2 * b.a.sha_seconds / per) // 2 * 2)
        log(f"scaling: {per * 1e3:.2f} ms of CPU per item: {n} items")
    seq_file(items, 1, n)
    np_ = max(10, n // 4 // 2 * 2)
    pitems = b.path("sha_p.in")
    seq_file(pitems, 1, np_)
    # the machine's own ceiling for two CPU-bound processes: two `fanmap -j 1` at once, each
    # on half the items, no coordination between them
    halves = [b.path("sha_h0.in"), b.path("sha_h1.in")]
    seq_file(halves[0], 1, n // 2)
    seq_file(halves[1], n // 2 + 1, n)
    t = {"fanmap -j 1": [], "fanmap -j 2": [], "ProcessPoolExecutor(1)": [],
         "ProcessPoolExecutor(2)": [], "two fanmap -j 1": []}
    cpu = {"fanmap -j 1": [], "fanmap -j 2": []}

    def two_halves(fm_results):
        outs = [b.path("sha_h0.out"), b.path("sha_h1.out")]
        start = time.perf_counter()
        procs = [subprocess.Popen(b.fm("-j", "1", "--builtin", f"sha256:{rounds}", "-i", h,
                                       "-o", o), stdin=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, cwd=ROOT)
                 for h, o in zip(halves, outs)]
        codes = [p.wait() for p in procs]
        took = time.perf_counter() - start
        if any(codes):
            raise BenchError(f"two fanmap -j 1 at once: exit statuses {codes}")
        got = read_records(outs[0], n // 2, "fanmap -j 1 (first half)") + read_records(
            outs[1], n - n // 2, "fanmap -j 1 (second half)")
        if got != fm_results:
            raise BenchError("two fanmap -j 1 at once: digests differ from one run's")
        return took

    def body(r):
        for j in (1, 2):
            c0 = cpu_s()
            tt, _, _ = run(b.fm("-j", str(j), "--builtin", f"sha256:{rounds}", "-i",
                                items, "-o", out), what=f"fanmap -j {j}")
            cpu[f"fanmap -j {j}"].append(cpu_s() - c0)
            fm_results = read_records(out, n, f"fanmap -j {j}")
            t[f"fanmap -j {j}"].append(tt)
            t[f"ProcessPoolExecutor({j})"].append(
                b.pool(pitems, pout, j, 1, "sha256", rounds))
            if j == 1:
                t["two fanmap -j 1"].append(two_halves(fm_results))
            peer_results = read_records(pout, np_, f"ProcessPoolExecutor({j})")
            if fm_results[:np_] != peer_results:
                bad = next(i for i in range(np_) if fm_results[i] != peer_results[i])
                raise BenchError(f"sha256:{rounds}: fanmap and hashlib differ at item "
                                 f"{bad}: {fm_results[bad]!r} vs {peer_results[bad]!r}")

    # two processes on two CPUs are the most sensitive to other load: at least 5 runs
    b.reps(f"scaling: {n} × sha256:{rounds}", body, max(b.a.reps, 5))
    m = {k: median(v) for k, v in t.items()}
    f_sp = m["fanmap -j 1"] / m["fanmap -j 2"]
    p_sp = m["ProcessPoolExecutor(1)"] / m["ProcessPoolExecutor(2)"]
    cpu_m = {k: median(v) for k, v in cpu.items()}
    b.results["cpu_scaling"] = {
        "items": n, "rounds": rounds, "cpus": os.cpu_count(), "runs_s": t, "median_s": m,
        "cpu_s": cpu, "median_cpu_s": cpu_m, "peer_items": np_,
        "fanmap_speedup": f_sp, "fanmap_efficiency": f_sp / 2, "peer_speedup": p_sp,
        "peer_efficiency": p_sp / 2, "identical_results": True}
    pr = {j: np_ / m[f"ProcessPoolExecutor({j})"] for j in (1, 2)}
    b.plots["scaling"] = [(j, n / m[f"fanmap -j {j}"], pr[j]) for j in (1, 2)]
    b.row(f"CPU scaling: {n} × sha256:{rounds} ({cpu_m['fanmap -j 1']:.1f} s of CPU), "
          "1 → 2 workers",
          f"{m['fanmap -j 1']:.2f} → {m['fanmap -j 2']:.2f} s: {f_sp:.2f}× "
          f"(efficiency {f_sp / 2:.0%})", f"ProcessPoolExecutor(1) → (2), hashlib ({np_} items)",
          f"{m['ProcessPoolExecutor(1)']:.2f} → {m['ProcessPoolExecutor(2)']:.2f} s: "
          f"{p_sp:.2f}×", None, f"≥ {TARGET}×", f_sp >= TARGET,
          ratio=f"fanmap {f_sp:.2f}×, ProcessPoolExecutor {p_sp:.2f}× (-j 2 over -j 1)")
    # what -j 2 got of the two CPUs: below 100%, other processes took the rest (or the
    # coordinator left them idle); its CPU time against -j 1's is fanmap's own overhead
    used = cpu_m["fanmap -j 2"] / (2 * m["fanmap -j 2"])
    overhead = cpu_m["fanmap -j 2"] / cpu_m["fanmap -j 1"] - 1
    b.results["cpu_scaling"].update({"j2_cpu_share": used, "j2_extra_cpu": overhead})
    b.notes.append(
        f"CPU scaling: `-j 2` used {cpu_m['fanmap -j 2']:.2f} s of CPU in "
        f"{m['fanmap -j 2']:.2f} s, {used:.0%} of the two CPUs ({overhead:+.1%} CPU time "
        f"against `-j 1`'s {cpu_m['fanmap -j 1']:.2f} s): the rest of the two CPUs went "
        "to other processes or sat idle.")
    if sized and cpu_m["fanmap -j 1"] < b.a.sha_seconds:
        # the probe overestimated the cost per item (a large fixed cost, or a machine that
        # sped up): say so rather than let the row's "(N s of CPU)" pass unremarked
        short = (f"CPU scaling: `-j 1` used {cpu_m['fanmap -j 1']:.1f} s of CPU, below the "
                 f"{b.a.sha_seconds:g} s asked for (--sha-seconds): rerun with --sha-items")
        log("scaling: warning: " + short)
        b.notes.append(short + ".")
    ceiling = m["fanmap -j 1"] / m["two fanmap -j 1"]
    b.results["cpu_scaling"]["two_processes_speedup"] = ceiling
    b.row("″", "″", "machine ceiling: two `fanmap -j 1` at once, half the items each",
          f"{m['two fanmap -j 1']:.2f} s: {ceiling:.2f}× of one", f_sp / ceiling, "—", None,
          plot="sha256 -j2 / two -j1 (ceiling)")
    fr2 = n / m["fanmap -j 2"]
    b.row(f"CPU: {n} × sha256:{rounds}, 2 workers (identical digests)", fmt_rate(fr2),
          f"ProcessPoolExecutor(2), hashlib ({np_} items)", fmt_rate(pr[2]), fr2 / pr[2], "—",
          None, plot="sha256 -j2 / PPE(2) hashlib")
