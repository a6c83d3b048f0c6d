"""The state one bench run shares across its workloads: options, scratch folder, the
binaries, the rows of the table, the raw results, the data for the plots."""

import os
import re
import subprocess
import sys
import time

from bench.lib import ROOT, PEERS, BenchError, expected_records, log, run, tail_of


class Bench:
    def __init__(self, args, tmp):
        self.a = args
        self.tmp = tmp
        self.fanmap = os.path.join(args.bin, "fanmap")
        self.worker = os.path.join(args.bin, "fanmap-worker")
        self.results = {}
        self.rows = []
        self.plots = {}
        self.farm_count = 0
        self.notes = []  # facts that bound a figure, printed under the table
        self._echo_expected = (None, None)

    def echo_expected(self, n):
        """fanmap's records for `seq 1 n` through --builtin echo (kept for the last n)."""
        if self._echo_expected[0] != n:
            self._echo_expected = (n, expected_records((str(i + 1) for i in range(n)),
                                                       plain=True))
        return self._echo_expected[1]

    def path(self, name):
        return os.path.join(self.tmp, name)

    def fm(self, *args):
        return [self.fanmap, *args]

    def pool(self, src, dst, procs, chunksize, kind, *extra, fmt="jsonl", what=None,
             env=None):
        """Times bench/peers/pool.py: ProcessPoolExecutor(procs).map(kind, chunksize)."""
        t, _, _ = run([sys.executable, os.path.join(PEERS, "pool.py"), src, dst, str(procs),
                       str(chunksize), fmt, kind, *map(str, extra)],
                      what=what or f"ProcessPoolExecutor({procs}) peer", env=env)
        return t

    def cannot_run(self, workload, peer, why, target="—"):
        """A peer that cannot run gets a row that says why (no peer is silently dropped)."""
        log(f"{workload}: {peer} cannot run: {why}")
        self.rows.append({"workload": workload, "fanmap": "″", "peer": peer,
                          "peer_figure": f"cannot run: {why}", "speedup": None,
                          "target": target, "met": None, "plot": None, "fair": True})

    def row(self, workload, fanmap, peer="—", peer_fig="—", speedup=None, target="—",
            met=None, plot=None, checks=None, fair=True, ratio=None):
        """speedup: peer time / fanmap time per item (above 1: fanmap faster).
        plot: the bar's label in bench.png (None: not plotted).
        checks: [(text, ok)] for a target of several parts: met is all of them.
        fair: the peer is what a competent user would run (its best setting); the README
        shows only those rows (the others, e.g. chunksize 1, are for scale in table.md).
        ratio: the README's figure for a row without a speed-up (e.g. peak RSS)."""
        miss = None
        if checks:
            met = all(ok for _, ok in checks)
            miss = "; ".join(f"{text} ({'met' if ok else 'not met'})" for text, ok in checks)
        self.rows.append({"workload": workload, "fanmap": fanmap, "peer": peer,
                          "peer_figure": peer_fig, "speedup": speedup, "target": target,
                          "met": met, "plot": plot, "miss": miss, "fair": fair,
                          "ratio": ratio})

    def pending(self, workload, why, target):
        self.rows.append({"workload": workload, "fanmap": "pending", "peer": why,
                          "peer_figure": "—", "speedup": None, "target": target,
                          "met": None, "plot": None, "pending": True})

    def reps(self, label, body, count=None):
        """Runs body(rep) --reps (or count) times, logging progress."""
        count = count or self.a.reps
        for r in range(count):
            log(f"{label} rep {r + 1}/{count}")
            body(r)

    def farm(self, args, workers, *, stdin=None, rss=False, timeout=600, what="fanmap"):
        """Runs `fanmap -j 0 --listen ipc://...` plus separately started fanmap-worker
        processes (one per env in workers). Returns (elapsed, coordinator peak RSS KB or
        None): /usr/bin/time sees only the coordinator, which has no children."""
        self.farm_count += 1
        endpoint = f"ipc://{self.tmp}/farm{self.farm_count}.sock"
        cmd = self.fm("-j", "0", "--listen", endpoint, *args)
        rss_path = self.path("farm.rss")
        if rss:
            cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_path] + cmd
        err = self.path("farm.err")
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        ferr = open(err, "wb")
        wprocs = []
        try:
            start = time.perf_counter()
            coord = subprocess.Popen(cmd, stdin=fin, stdout=subprocess.DEVNULL, stderr=ferr,
                                     cwd=ROOT)
            for i, env in enumerate(workers):
                werr = open(self.path(f"worker{i}.err"), "wb")
                wprocs.append((subprocess.Popen(
                    [self.worker, "--connect", endpoint, "--connect-timeout", "60", "-q"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=werr,
                    env=env, cwd=ROOT), werr))
            try:
                rc = coord.wait(timeout)
            except subprocess.TimeoutExpired:
                coord.kill()
                coord.wait()
                raise BenchError(f"{what} did not finish in {timeout} s")
            elapsed = time.perf_counter() - start
            if rc != 0:
                raise BenchError(f"{what} failed with exit status {rc}: {' '.join(cmd)}\n  "
                                 + tail_of(err))
            # A worker that joined must have been stopped. One that never joined (on a
            # loaded machine the others can finish every item before it connects) waits
            # for a coordinator that is gone: it is not fanmap's to stop; it is killed.
            with open(err, errors="replace") as fh:
                joined = {int(p) for p in re.findall(r"worker [^\s]*:(\d+) joined", fh.read())}
            for i, (w, _) in enumerate(wprocs):
                if w.pid not in joined and w.poll() is None:
                    log(f"{what}: fanmap-worker {i} never joined (the run ended first)")
                    w.kill()
                    w.wait()
                    continue
                try:
                    wrc = w.wait(15)
                except subprocess.TimeoutExpired:
                    raise BenchError(f"fanmap-worker {i} did not exit after the run ended")
                if wrc != 0:
                    raise BenchError(f"fanmap-worker {i} exited with status {wrc}\n  "
                                     + tail_of(self.path(f"worker{i}.err")))
        finally:
            for w, werr in wprocs:
                if w.poll() is None:
                    w.kill()
                    w.wait()
                werr.close()
            if stdin:
                fin.close()
            ferr.close()
        peak = None
        if rss:
            with open(rss_path) as fh:
                vals = [l for l in fh.read().split() if l.isdigit()]
            if not vals:
                raise BenchError("no peak RSS from /usr/bin/time for the coordinator")
            peak = int(vals[-1])
        return elapsed, peak

    # --- seed ------------------------------------------------------------------------
