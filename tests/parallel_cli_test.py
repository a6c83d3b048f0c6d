#!/usr/bin/python3
"""ParallelCliTest: GNU parallel's options on the real fanmap and fanmap-worker.

    /usr/bin/python3 tests/parallel_cli_test.py BIN_DIR

* --joblog: read back with Python's csv reader (tab-separated) under parallel's header,
  and compared field by field with the joblog GNU parallel writes for the same command
  (Seq, Host, Send, Receive, Exitval, Signal, Command equal; times are numbers).
* --resume with ::: sources and records in a file: the items already written are not run
  again, the output equals an uninterrupted run, and changed sources are refused.
* --bar: the progress display, with the total of the combinations.
* --halt's old forms (2, -1, P%) and done=: the commands parallel runs.
* ::: values holding newlines: one command per piece, empty ones included, as parallel.
* Usage errors: -i together with :::, ":::+", ":::" without values, --tag with --builtin.
No sleeps: every run is waited for; deadlines only bound a broken build.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

BIN = os.path.abspath(sys.argv[1])
FANMAP = os.path.join(BIN, "fanmap")
HEADER = ["Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive", "Exitval", "Signal",
          "Command"]
failures = []


def check(what, ok, detail=""):
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok else " " + detail))
    if not ok:
        failures.append(what)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=120, **kw)


def read_joblog(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def test_joblog(tmp):
    env = dict(os.environ, HOME=tmp)
    os.makedirs(os.path.join(tmp, ".parallel"), exist_ok=True)
    open(os.path.join(tmp, ".parallel", "will-cite"), "w").close()
    command = ["echo {}; exit {}"]
    items = [":::", "0", "3", "0"]
    p = run(["parallel", "-k", "-j1", "--joblog", os.path.join(tmp, "p.log")] + command + items,
            env=dict(env, PARALLEL_SHELL="/bin/sh"))
    f = run([FANMAP, "-j1", "--output-format", "stdout", "--joblog", os.path.join(tmp, "f.log")]
            + command + items, env=env)
    check("joblog: fanmap exits 1 as one command failed", f.returncode == 1, str(f.returncode))
    check("joblog: same stdout as parallel", f.stdout == p.stdout, repr((f.stdout, p.stdout)))
    p_header, p_rows = read_joblog(os.path.join(tmp, "p.log"))
    f_header, f_rows = read_joblog(os.path.join(tmp, "f.log"))
    check("joblog: parallel's header", f_header == HEADER == p_header, repr(f_header))
    check("joblog: one row per command", len(f_rows) == 3, repr(f_rows))
    for p_row, f_row in zip(p_rows, f_rows):
        for key in ("Seq", "Host", "Send", "Receive", "Exitval", "Signal", "Command"):
            check("joblog: row %s %s" % (f_row["Seq"], key), f_row[key] == p_row[key],
                  "fanmap %r, parallel %r" % (f_row[key], p_row[key]))
        start, runtime = float(f_row["Starttime"]), float(f_row["JobRuntime"])
        check("joblog: row %s times are plausible" % f_row["Seq"],
              abs(start - float(p_row["Starttime"])) < 3600 and 0 <= runtime < 120,
              repr(f_row))


def test_resume(tmp):
    ran = os.path.join(tmp, "ran")
    out = os.path.join(tmp, "out.jsonl")
    full = os.path.join(tmp, "full.jsonl")
    command = ["sh", "-c", 'echo "$0$1" >>"$2"; echo "$0$1"', "{1}", "{2}", ran]
    sources = [":::", "a", "b", "c", ":::", "1", "2"]
    first = run([FANMAP, "-j2", "-o", full] + command + sources)
    check("resume: the uninterrupted run succeeds", first.returncode == 0, first.stderr.decode())
    with open(full) as f:
        lines = f.readlines()
    check("resume: six records", len(lines) == 6, repr(lines))
    # A run cut short after three records and half of the fourth.
    with open(out, "w") as f:
        f.write("".join(lines[:3]) + lines[3][:10])
    os.remove(ran)
    second = run([FANMAP, "-j2", "-o", out, "--resume"] + command + sources)
    check("resume: the resumed run succeeds", second.returncode == 0, second.stderr.decode())
    with open(out) as f:
        resumed = f.read()
    check("resume: output equals the uninterrupted run", resumed == "".join(lines),
          repr(resumed))
    with open(ran) as f:
        again = sorted(f.read().split())
    check("resume: only the missing items ran", again == ["b2", "c1", "c2"], repr(again))
    changed = run([FANMAP, "-j2", "-o", out, "--resume"] + command +
                  [":::", "a", "B", "c", ":::", "1", "2"])
    check("resume: changed sources are refused", changed.returncode == 2,
          "%d %s" % (changed.returncode, changed.stderr.decode()))
    records = [json.loads(line) for line in resumed.splitlines()]
    check("resume: results are the combinations in order",
          [r["result"] for r in records] == ["a1", "a2", "b1", "b2", "c1", "c2"], repr(records))


def test_fill_resume_with_other_slots(tmp):
    # -X spread the items over the job slots: a resume with another -j found
    # other tables than the file held and was refused.
    out = os.path.join(tmp, "fill.jsonl")
    command = ["-X", "echo", ":::"] + [str(i) for i in range(1, 9)]
    first = run([FANMAP, "-j4", "-o", out] + command)
    check("-X into a file succeeds", first.returncode == 0, first.stderr.decode())
    with open(out) as f:
        lines = f.readlines()
    with open(out, "w") as f:
        f.write("".join(lines[:-1]))
    second = run([FANMAP, "-j1", "--slots", "3", "-o", out, "--resume"] + command)
    with open(out) as f:
        resumed = f.readlines()
    check("-X: --resume with another -j continues the file",
          second.returncode == 0 and resumed == lines,
          "%d %s %r %r" % (second.returncode, second.stderr.decode(), resumed, lines))


def test_usage_errors(tmp):
    items = os.path.join(tmp, "items")
    with open(items, "w") as f:
        f.write("x\n")
    for args, needle in (
            (["-i", items, "echo", ":::", "a"], "-i and :::"),
            (["echo", ":::+", "a"], "--link"),
            (["echo", ":::"], "not followed"),
            (["--tag", "--builtin", "echo", ":::", "a"], "need a COMMAND"),
            (["--colsep", "(", "echo", ":::", "a"], "--colsep"),
            (["-I", "", "echo", ":::", "a"], "-I"),
            (["--bar", "--progress", "never", "true", ":::", "a"], "--progress never"),
            # A JSON check of an argument table failed every item.
            (["--input-format", "jsonl", "echo", ":::", "1"], "--input-format"),
            (["--input-format", "jsonl", "-n", "2", "-a", items, "echo"], "--input-format"),
            (["--input-format", "jsonl", "-X", "-a", items, "echo"], "--input-format"),
            (["--input-format", "jsonl", "--colsep", ",", "-a", items, "echo"],
             "--input-format"),
            (["--output-format", "stdout", "--builtin", "echo"], "needs a COMMAND")):
        r = run([FANMAP, "-j1"] + args)
        err = r.stderr.decode()
        check("usage error for %s" % " ".join(args), r.returncode == 2 and needle in err,
              "%d %s" % (r.returncode, err))


def test_record_formats():
    raw = run([FANMAP, "-j2", "--output-format", "raw", "echo", "{2}{1}", ":::", "a", "b", ":::",
               "1", "2"])
    check("raw records with two sources", raw.returncode == 0 and
          raw.stdout == b"1a\n2a\n1b\n2b\n", repr(raw.stdout))
    jsonl = run([FANMAP, "-j2", "--colsep", ",", "echo", "{2}", ":::", "a,x y", "b,z"])
    records = [json.loads(line) for line in jsonl.stdout.decode().splitlines()]
    check("jsonl records with columns", jsonl.returncode == 0 and
          [(r["index"], r["result"]) for r in records] == [(0, "x y"), (1, "z")], repr(records))


def test_bar():
    r = run([FANMAP, "-j1", "--bar", "--output-format", "stdout", "true", ":::", "1", "2", "3",
             ":::", "a", "b"])
    err = r.stderr.decode()
    check("--bar shows the progress display with its total", r.returncode == 0 and "6/6" in err,
          "%d %r" % (r.returncode, err))
    check("--bar leaves stdout alone", r.stdout == b"", repr(r.stdout))
    # The total counted newlines under -0: "4/1 100.0%".
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"a\0b\0c\0d\0")
        f.flush()
        r = run([FANMAP, "-j1", "--bar", "-0", "-a", f.name, "true"])
    err = r.stderr.decode()
    check("--bar with -0 counts NUL-ended items", r.returncode == 0 and "4/4" in err and
          "4/1 " not in err, "%d %r" % (r.returncode, err))


def test_colsep_long_records(tmp):
    # std::regex recursed once per character: a long run crashed the coordinator.
    path = os.path.join(tmp, "long")
    with open(path, "w") as f:
        f.write("a" + " " * (1 << 20) + "b\n" + "x" * (1 << 20) + "\n")
    # --dry-run: a 1 MB argument could not be executed (E2BIG).
    r = run([FANMAP, "-j1", "--dry-run", "--colsep", " +", "-a", path, "echo", "{2}{1}"])
    check("--colsep ' +' on a 1 MB run of spaces", r.returncode == 0 and
          r.stdout == b"echo ba\necho " + b"x" * (1 << 20) + b"\n",
          "%d %r" % (r.returncode, r.stderr))
    r = run([FANMAP, "-j1", "--dry-run", "--colsep", ".*,", "-a", path, "echo", "{1}"])
    check("--colsep '.*,' on 1 MB records without a comma", r.returncode == 0 and
          r.stdout.endswith(b"b'\necho " + b"x" * (1 << 20) + b"\n"),
          "%d %r" % (r.returncode, r.stderr))
    # Perl's split, as parallel: captured groups are fields, no empty first field.
    r = run([FANMAP, "-j1", "--output-format", "stdout", "--colsep", "(,)", "echo", "{1}+{2}",
             ":::", "a,b"])
    check("--colsep keeps captured groups", r.stdout == b"a+,\n", repr(r.stdout))
    r = run([FANMAP, "-j1", "--output-format", "stdout", "--colsep", "x*", "echo",
             "{1}+{2}+{3}", ":::", "abc"])
    check("--colsep: no empty first field from an empty match", r.stdout == b"a+b+c\n",
          repr(r.stdout))
    # A pattern that backtracks without end: a usage error naming it, no crash.
    r = run([FANMAP, "-j1", "--colsep", "(a|aa)*[bc]", "echo", ":::", "a" * 60])
    err = r.stderr.decode()
    check("--colsep beyond the match limit is a usage error", r.returncode == 2 and
          "record 1" in err and "limit" in err, "%d %s" % (r.returncode, err))


def test_fill_measures_the_expanded_command(tmp):
    # -X counted raw item bytes: the quoting in the one `sh -c` argument
    # (128 KiB at most) and a context word repeated per item made E2BIG.
    spaced = os.path.join(tmp, "spaced")
    with open(spaced, "w") as f:
        f.write("".join("%d x\n" % i for i in range(1, 40001)))
    r = run([FANMAP, "-j1", "--output-format", "stdout", "-X", "-a", spaced,
             "echo {} | wc -w"])
    counts = [int(n) for n in r.stdout.split()]
    check("-X in the shell: quoted items fit one argument", r.returncode == 0 and
          sum(counts) == 80000 and len(counts) > 1, "%d %r %r" % (r.returncode, counts, r.stderr))
    many = os.path.join(tmp, "many")
    with open(many, "w") as f:
        f.write("a\n" * 100000)
    word = "x" * 30
    r = run([FANMAP, "-j1", "--output-format", "stdout", "-X", "-a", many, "echo",
             word + "{}"])
    words = r.stdout.split()
    check("-X: a context word repeated per item counts each time", r.returncode == 0 and
          len(words) == 100000 and set(words) == {(word + "a").encode()},
          "%d %d %r" % (r.returncode, len(words), r.stderr[:300]))


def test_empty_sources():
    # parallel: an empty source among several is one empty value; alone, no job.
    for opts, args, want in (([], [":::", "a", "b", "::::", "/dev/null"], b"a \nb \n"),
                             ([], ["::::", "/dev/null", ":::", "a", "b"], b" a\n b\n"),
                             (["--link"], [":::", "a", "b", "::::", "/dev/null"], b"a \nb \n"),
                             ([], ["::::", "/dev/null"], b""),
                             (["-a", "/dev/null"], [], b"")):
        r = run([FANMAP, "-j1", "--output-format", "stdout"] + opts + ["echo"] + args,
                stdin=subprocess.DEVNULL)
        check("empty source: %s" % " ".join(opts + ["echo"] + args),
              r.returncode == 0 and r.stdout == want,
              "%d %r %r" % (r.returncode, r.stdout, r.stderr))


def test_values_with_newlines(tmp):
    # parallel splits a ::: value at each newline and keeps every piece: 'a\n' is "a" and
    # "" (the empty one was dropped, as if the value were a file whose last newline ends it).
    env = dict(os.environ, HOME=tmp)
    os.makedirs(os.path.join(tmp, ".parallel"), exist_ok=True)
    open(os.path.join(tmp, ".parallel", "will-cite"), "w").close()
    for opts, values, want in (
            ([], ["a\n"], b"XaX\nXX\n"), ([], ["a\n\nb", "c"], b"XaX\nXX\nXbX\nXcX\n"),
            ([], ["\n"], b"XX\nXX\n"),
            # With -0 or -d, the delimiter splits them, not the newline.
            (["-0"], ["a\nb", "c"], b"Xa\nbX\nXcX\n"),
            (["-d", ","], ["a,b\nc"], b"XaX\nXb\ncX\n")):
        args = opts + ["echo", "X{}X", ":::"] + values
        p = run(["parallel", "-k", "-j1"] + args, env=env)
        f = run([FANMAP, "-j1", "--output-format", "stdout"] + args)
        check("%s ::: %r: one command per piece, as parallel runs" % (opts, values),
              f.returncode == 0 and f.stdout == want == p.stdout,
              "%d %r parallel %r %r" % (f.returncode, f.stdout, p.stdout, f.stderr))


def test_halt_forms(tmp):
    # --halt's old numeric forms and done= were usage errors; parallel takes them. The same
    # commands run (stdout equal to parallel's); the exit status is fanmap's: 3 when a fail=
    # count stopped the run, 0 for success=, and for done= as any run ends (1: some failed).
    env = dict(os.environ, HOME=tmp)
    os.makedirs(os.path.join(tmp, ".parallel"), exist_ok=True)
    open(os.path.join(tmp, ".parallel", "will-cite"), "w").close()
    for halt, status in (("2", 3), ("1", 3), ("-1", 0), ("-2", 0), ("soon,done=2", 1),
                         ("now,done=1", 0), ("0", 1)):
        items = [":::", "0", "3", "0", "0"]
        p = run(["parallel", "-j1", "--halt", halt, "echo {}; exit {}"] + items, env=env)
        f = run([FANMAP, "-j1", "--output-format", "stdout", "--halt", halt, "sh", "-c",
                 "echo $0; exit $0"] + items)
        check("--halt %s: the commands parallel runs, exit %d" % (halt, status),
              f.returncode == status and f.stdout == p.stdout and p.stdout != b"",
              "%d %r parallel %r %r" % (f.returncode, f.stdout, p.stdout, f.stderr[-300:]))


with tempfile.TemporaryDirectory() as tmp:
    test_halt_forms(tmp)
    test_values_with_newlines(tmp)
    test_empty_sources()
    test_fill_measures_the_expanded_command(tmp)
    test_colsep_long_records(tmp)
    test_record_formats()
    test_bar()
    test_joblog(tmp)
    test_resume(tmp)
    test_fill_resume_with_other_slots(tmp)
    test_usage_errors(tmp)
print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
