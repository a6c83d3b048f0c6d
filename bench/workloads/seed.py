"""seed: 25 items of 1 s: `-j 5 --builtin sleep:1000` vs ThreadPoolExecutor(5).map,
`parallel -j 5 -k`, `xargs -P 5`; and `-j 1 --slots 25` vs ThreadPoolExecutor(25)."""

import os
import sys

from bench.lib import PEERS, BenchError, median, run, seq_file


def measure(b):
    items = b.path("seed.in")
    seq_file(items, 0, 24)
    expected = "".join(f"{i}\n" for i in range(25)).encode()
    peer_py = os.path.join(PEERS, "seed_threads.py")
    sh_item = 'sleep 1; echo "$1"'
    runs = {
        "fanmap -j 5": (b.fm("-j", "5", "--builtin", "sleep:1000", "--output-format",
                                "raw"), True),
        "ThreadPoolExecutor(5)": ([sys.executable, peer_py, "5"], True),
        "parallel -j 5 -k": (["parallel", "--will-cite", "-j", "5", "-k",
                              "sleep 1; echo {}"], True),
        "xargs -P 5": (["xargs", "-P", "5", "-n", "1", "sh", "-c", sh_item, "sh"], False),
        "fanmap -j 1 --slots 25": (b.fm("-j", "1", "--slots", "25", "--builtin",
                                           "sleep:1000", "--output-format", "raw"), True),
        "ThreadPoolExecutor(25)": ([sys.executable, peer_py, "25"], True),
    }
    times = {k: [] for k in runs}

    def body(r):
        for label, (cmd, ordered) in runs.items():
            t, out, _ = run(cmd, stdin=items, what=label)
            got = out if ordered else b"".join(sorted(out.splitlines(True),
                                                      key=lambda l: int(l)))
            if got != expected:
                raise BenchError(f"{label}: output is not 0..24"
                                 f"{' in order' if ordered else ''}: {out[:300]!r}")
            times[label].append(t)

    b.reps("seed: 25 × 1 s", body)
    med = {k: median(v) for k, v in times.items()}
    b.results["seed"] = {"items": 25, "item_s": 1.0, "runs_s": times, "median_s": med}
    f5 = med["fanmap -j 5"]
    for i, peer in enumerate(("ThreadPoolExecutor(5)", "parallel -j 5 -k", "xargs -P 5")):
        first = i == 0
        b.row("seed: 25 × 1 s, 5 workers" if first else "″",
              f"{f5:.2f} s" if first else "″", f"`{peer}`" if "(" not in peer else peer,
              f"{med[peer]:.2f} s", med[peer] / f5,
              "≤ 5.2 s" if first else "—", (f5 <= 5.2) if first else None,
              plot="seed -j5 / " + {"ThreadPoolExecutor(5)": "TPE(5)"}.get(
                  peer, peer.split(" -")[0]))
    f25 = med["fanmap -j 1 --slots 25"]
    p25 = med["ThreadPoolExecutor(25)"]
    b.row("seed: 25 × 1 s, `-j 1 --slots 25`", f"{f25:.2f} s", "ThreadPoolExecutor(25)",
          f"{p25:.2f} s", p25 / f25, "≤ 1.2 s", f25 <= 1.2,
          plot="seed --slots 25 / TPE(25)")
