"""straggler: 3 workers, one 10x slower (FANMAP_SLOW=1 in its environment), exec payload:
fanmap (`-j 0 --listen` + 3 fanmap-worker) vs the ideal split by speed, a static split
(ProcessPoolExecutor(3) chunksize n/3) and ProcessPoolExecutor(3) chunksize 1."""

import math
import os
import subprocess
import time

from bench.lib import BenchError, median, read_records, seq_file, write_lines

# The straggler payload: FANMAP_SLOW=1 in a worker's environment makes it 10x slower.
STRAGGLER_CMD = ('if [ "$FANMAP_SLOW" = 1 ]; then sleep 0.1; echo slow; '
                 'else sleep 0.01; echo fast; fi')


def measure(b):
    n = b.a.straggler_items
    items = b.path("strag.in")
    seq_file(items, 1, n)
    out = b.path("strag.out")
    # the speed of each kind of worker, alone (payload only)
    speeds = {}
    for slow, count in (("0", 20), ("1", 5)):
        env = dict(os.environ, FANMAP_SLOW=slow)
        start = time.perf_counter()
        for i in range(count):
            subprocess.run(["sh", "-c", STRAGGLER_CMD, str(i)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        speeds[slow] = (time.perf_counter() - start) / count
    t_fast, t_slow = speeds["0"], speeds["1"]
    ideal = n / (2 / t_fast + 1 / t_slow)
    static_ideal = math.ceil(n / 3) * t_slow
    fast_env = dict(os.environ, FANMAP_SLOW="0")
    slow_env = dict(os.environ, FANMAP_SLOW="1")
    # the method relies on exec children inheriting the worker's environment: check it
    probe = b.path("strag_probe.in")
    write_lines(probe, ["x"])
    b.farm(["-i", probe, "-o", out, "--", "sh", "-c", 'echo "slow=$FANMAP_SLOW"'],
           [slow_env], what="fanmap (environment probe)")
    got = read_records(out, 1, "fanmap (environment probe)")[0]
    if got != "slow=1":
        raise BenchError("straggler: a worker's environment does not reach its exec "
                         f"children (FANMAP_SLOW=1 in the worker, the command saw {got!r})")
    t_fm, slow_items, t_static, t_dyn = [], [], [], []

    def body(r):
        tt, _ = b.farm(["-i", items, "-o", out, "--", "sh", "-c", STRAGGLER_CMD],
                       [fast_env, fast_env, slow_env], what="fanmap (straggler)")
        results = read_records(out, n, "fanmap (straggler)")
        if any(x not in ("fast", "slow") for x in results):
            raise BenchError(f"fanmap (straggler): unexpected results {set(results)}")
        t_fm.append(tt)
        slow_items.append(results.count("slow"))
        t_static.append(b.pool(items, out, 3, math.ceil(n / 3), "straggler",
                                  STRAGGLER_CMD, what="ProcessPoolExecutor static split"))
        if read_records(out, n, "static split").count("slow") == 0:
            raise BenchError("static split: the slow process ran no item")
        t_dyn.append(b.pool(items, out, 3, 1, "straggler", STRAGGLER_CMD,
                               what="ProcessPoolExecutor chunksize 1"))
        read_records(out, n, "ProcessPoolExecutor chunksize 1")

    b.reps(f"straggler: {n} items, 3 workers, one 10× slower", body)
    f, s, d = median(t_fm), median(t_static), median(t_dyn)
    b.results["straggler"] = {
        "items": n, "payload": STRAGGLER_CMD, "fast_item_s": t_fast, "slow_item_s": t_slow,
        "ideal_s": ideal, "static_split_ideal_s": static_ideal, "fanmap_s": t_fm,
        "fanmap_items_on_slow_worker": slow_items,
        "static_split_s": t_static, "chunksize1_s": t_dyn}
    b.plots["straggler"] = [("ideal (split by speed)", ideal), ("fanmap", f),
                            ("PPE(3) chunksize 1", d),
                            (f"PPE(3) chunksize {math.ceil(n / 3)} (static)", s)]
    wl = f"straggler: {n} × exec, 3 workers, one 10× slower"
    b.row(wl, f"{f:.2f} s (slow worker ran {median(slow_items):.0f} items)",
          f"ideal (work split by speed: {t_fast * 1e3:.0f} / {t_slow * 1e3:.0f} ms "
          f"per item)", f"{ideal:.2f} s", ideal / f, "—", None)
    b.row("″", "″", f"static split: ProcessPoolExecutor(3), chunksize {math.ceil(n / 3)}",
          f"{s:.2f} s", s / f, "—", None, plot="straggler / static split")
    b.row("″", "″", "ProcessPoolExecutor(3), chunksize 1", f"{d:.2f} s", d / f, "—",
          None, plot="straggler / PPE(3) cs 1")
