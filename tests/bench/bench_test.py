#!/usr/bin/env python3
"""The bench's own logic, without timing anything: the README table shows only fair peers
and resolves ditto marks; targets not met are named; the ProcessPoolExecutor peer's outputs
are what the bench compares them with (raw: the results verbatim; jsonl: fanmap's records,
byte for byte); pipe_direct.sh joins its parts' outputs in order.

    tests/bench/bench_test.py
"""
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from bench import table  # noqa: E402
from bench.lib import PEERS, expected_records  # noqa: E402


def row(workload, peer, speedup=None, met=None, fair=True, ratio=None, target="—",
        peer_figure="1 s"):
    return {"workload": workload, "fanmap": "1 s", "peer": peer, "peer_figure": peer_figure,
            "speedup": speedup, "target": target, "met": met, "plot": None, "miss": None,
            "fair": fair, "ratio": ratio}


class TableTest(unittest.TestCase):
    rows = [
        row("1M × echo, raw", "PPE(2) cs 1000", 2.2, False, target="≥ 2.5×"),
        row("″", "PPE(2) cs 1", 200.0, fair=False),
        row("″", "parallel", 900.0),
        row("peak RSS, 1M", "—", None, True, ratio="14.2 MB (no peer)", target="≤ 16 MB"),
        row("pipe", "for scale: alone", None, None, fair=False),
        row("HTTP", "wrk", 0.9, False, target="≥ 0.95 of wrk"),
        row("″", "node", None, None, peer_figure="cannot run: node is not installed"),
    ]

    def test_readme_table_shows_fair_peers_only_as_ratios(self):
        text = table.ratio_table(self.rows)
        self.assertNotIn("PPE(2) cs 1 ", text)
        self.assertNotIn("200", text)
        self.assertNotIn("for scale", text)
        self.assertIn("| 1M × echo, raw | PPE(2) cs 1000 | 2.20× | ≥ 2.5× | **not met** |", text)
        # the ditto of an excluded row's successor still means the same workload
        self.assertIn("| ″ | parallel | 900× | — | — |", text)
        self.assertIn("| peak RSS, 1M | — | 14.2 MB (no peer) | ≤ 16 MB | met |", text)
        # a peer that cannot run is shown, with the reason
        self.assertIn("| ″ | node | cannot run: node is not installed | — | — |", text)

    def test_targets_not_met_name_workload_and_peer(self):
        self.assertEqual(table.not_met(self.rows),
                         ["1M × echo, raw vs PPE(2) cs 1000: ≥ 2.5×",
                          "HTTP vs wrk: ≥ 0.95 of wrk"])

    def test_full_table_keeps_every_row(self):
        self.assertEqual(len(table.table(self.rows).splitlines()), 2 + len(self.rows))


class PeerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="fanmap-bench-test-")
        self.src = os.path.join(self.tmp.name, "in")
        self.items = ["a", "B c", 'q"uote\\', "ünï"]
        with open(self.src, "w") as fh:
            fh.writelines(f"{i}\n" for i in self.items)

    def tearDown(self):
        self.tmp.cleanup()

    def pool(self, fmt, kind, *extra):
        dst = os.path.join(self.tmp.name, "out")
        subprocess.run([sys.executable, os.path.join(PEERS, "pool.py"), self.src, dst, "2",
                        "2", fmt, kind, *extra], check=True)
        with open(dst, "rb") as fh:
            return fh.read()

    def test_raw_is_each_result_on_its_line(self):
        want = "".join(f"{i.upper()}\n" for i in self.items).encode()
        self.assertEqual(self.pool("raw", "upper"), want)

    def test_jsonl_is_fanmaps_records_byte_for_byte(self):
        self.assertEqual(self.pool("jsonl", "echo"), expected_records(self.items))

    def test_sha256_rounds(self):
        import hashlib
        d = hashlib.sha256(b"a").digest()
        for _ in range(2):
            d = hashlib.sha256(d).digest()
        self.assertEqual(self.pool("raw", "sha256", "3").splitlines()[0], d.hex().encode())

    def test_pipe_direct_joins_parts_in_order(self):
        parts = []
        for k, chunk in enumerate((self.items[:1], self.items[1:])):
            parts.append(os.path.join(self.tmp.name, f"part{k}"))
            with open(parts[-1], "w") as fh:
                fh.writelines(f"{i}\n" for i in chunk)
        out = os.path.join(self.tmp.name, "direct")
        subprocess.run([os.path.join(PEERS, "pipe_direct.sh"), "sed s/^/x/", out, *parts],
                       check=True)
        with open(out) as fh:
            self.assertEqual(fh.read(), "".join(f"x{i}\n" for i in self.items))


if __name__ == "__main__":
    unittest.main()
