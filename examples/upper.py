#!/usr/bin/env python3
"""A co-process for `fanmap --pipe`: one line in, one line out.

    fanmap -j 2 -i names.txt --pipe 'python3 examples/upper.py'

Each input line is one item (without its newline); print exactly one line per
item, in order. Put your work in f().

flush=True is required, not a detail: fanmap writes a window of items ahead
and then waits for their answers. Answers left in Python's output buffer
(block-buffered whenever stdout is a pipe) mean both sides wait, until
--timeout cancels the item. `python3 -u` works too. Flushing each line costs
about 1 us per item; upper_fast.py flushes once per read instead.

Print diagnostics to stderr: an extra line on stdout would be taken as the
answer to the next item.
"""
import sys


def f(item):
    return item.upper()


if __name__ == "__main__":
    for line in sys.stdin:
        print(f(line.rstrip("\n")), flush=True)
