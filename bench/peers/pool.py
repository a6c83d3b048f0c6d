#!/usr/bin/env python3
"""ProcessPoolExecutor(N).map over the lines of a file, written as a competent user would.

    bench/peers/pool.py SRC DST PROCESSES CHUNKSIZE FORMAT KIND [ARG]

FORMAT raw:   each result on its own line, verbatim (fanmap's peer: --output-format raw).
FORMAT jsonl: fanmap's record for each result, byte for byte:
              {"index":I,"ok":true,"result":R}, R formatted by one cached JSONEncoder
              (fanmap's peer: its default JSONL records).
KIND: echo | upper | sha256 (ARG: rounds of sha256 over the item, hex digest) |
      straggler (ARG: a shell command run per item with the item as $1; the first process
      to start gets FANMAP_SLOW=1 in its environment, the others FANMAP_SLOW=0).
"""
import functools
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor


def echo(item):
    return item


def upper(item):
    return item.upper()


def sha256(rounds, item):
    d = hashlib.sha256(item.encode()).digest()
    for _ in range(rounds - 1):
        d = hashlib.sha256(d).digest()
    return d.hex()


_env = None


def init_straggler(counter):
    # the first process to start is the slow one
    global _env
    with counter.get_lock():
        i = counter.value
        counter.value += 1
    _env = dict(os.environ, FANMAP_SLOW="1" if i == 0 else "0")


def run_cmd(cmd, item):
    p = subprocess.run(["sh", "-c", cmd, "sh", item], env=_env, stdout=subprocess.PIPE,
                       check=True)
    return p.stdout.decode().rstrip("\n")


def main():
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    src, dst, procs, chunksize, fmt, kind = sys.argv[1:7]
    procs, chunksize = int(procs), int(chunksize)
    kw = {}
    if kind == "echo":
        f = echo
    elif kind == "upper":
        f = upper
    elif kind == "sha256":
        f = functools.partial(sha256, int(sys.argv[7]))
    elif kind == "straggler":
        f = functools.partial(run_cmd, sys.argv[7])
        kw = {"initializer": init_straggler, "initargs": (multiprocessing.Value("i", 0),)}
    else:
        sys.exit(f"pool.py: unknown kind {kind!r}")
    if fmt not in ("raw", "jsonl"):
        sys.exit(f"pool.py: unknown format {fmt!r}")
    encode = json.JSONEncoder(ensure_ascii=False).encode
    with open(src) as fh, open(dst, "w") as out:
        items = (line.rstrip("\n") for line in fh)
        with ProcessPoolExecutor(procs, **kw) as ex:
            results = ex.map(f, items, chunksize=chunksize)
            if fmt == "raw":
                out.writelines(r + "\n" for r in results)
            else:
                out.writelines('{"index":%d,"ok":true,"result":%s}\n' % (i, encode(r))
                               for i, r in enumerate(results))


if __name__ == "__main__":
    main()
