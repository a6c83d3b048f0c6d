#!/usr/bin/env python3
"""A co-process for `fanmap --pipe`: one line in, one line out.

    fanmap -j 2 -i names.txt --pipe 'python3 examples/upper.py'

Each input line is one item (without its newline); print exactly one line per
item, in order. Put your work in f().

flush=True sends each answer as soon as it is made (`python3 -u` does the
same). Without it Python block-buffers stdout on a pipe and keeps its last
answers while it waits for more items; fanmap still gets them all: when the
co-process has read all its input and stays silent for a quiet period
(30 ms or as long as the command took to start, up to 1 s; longer for
commands seen to be slow), fanmap closes its stdin, so that it flushes and
exits, and starts a fresh one for the next items. That
is fine for cheap functions, but each restart repeats the start-up (imports,
loading a model) and makes answers wait: flush. Flushing each line costs
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
