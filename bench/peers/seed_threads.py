#!/usr/bin/env python3
"""ThreadPoolExecutor(N).map of a 1 s sleep over stdin's lines; prints each item, in order.

    seq 0 24 | bench/peers/seed_threads.py 5
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def f(item):
    time.sleep(1.0)
    return item


def main():
    items = [line.rstrip("\n") for line in sys.stdin]
    with ThreadPoolExecutor(int(sys.argv[1])) as ex:
        for r in ex.map(f, items):
            print(r)


if __name__ == "__main__":
    main()
