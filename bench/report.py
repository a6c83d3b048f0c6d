"""The README's Performance section from a bench run, and rewriting it in README.md."""

import os
import re
import shutil

from bench.lib import ROOT, BenchError


def reps_note(a):
    return (f"{a.reps} runs (CPU scaling: {max(a.reps, 5)}, peak RSS: "
            f"{3 if a.full else 1})")


def busy_note(meta):
    """What other processes used of the CPUs as each workload started (sampled over 0.3 s)."""
    busy = meta.get("cpu_busy_before_workload") or {}
    if not busy:
        return ""
    loud = {w: b for w, b in busy.items() if b >= 0.05}
    if not loud:
        return (" The machine was otherwise idle as each workload started (other processes: "
                "under 5% of the CPUs).")
    listed = ", ".join(f"{w} {b:.0%}" for w, b in loud.items())
    return (f" Other processes used this share of the CPUs as a workload started: {listed}; "
            "under 5% as the others started.")


def load_note(meta):
    start, end = meta.get("loadavg_at_start"), meta.get("loadavg_at_end")
    if not start or not end:
        return ""
    return (f" Load average (1, 5, 15 min) {' '.join(start)} at the start, {' '.join(end)} "
            "at the end.")


def performance_section(meta, tbl, reps, took, not_met, notes):
    ram = f"{meta['ram_gib']:.0f} GiB RAM" if meta["ram_gib"] else "RAM unknown"
    lines = [
        "## Performance",
        "",
        f"Measured by `scripts/bench` ({meta['mode']} mode, {took:.0f} s) on "
        f"{meta['date'][:10]}: {meta['cpus']} CPUs ({meta['cpu_model']}), {ram}, "
        f"{meta['os']}, kernel {meta['kernel']}, Python {meta['python']}. Every peer ran in "
        f"the same run on the same machine, and every output was checked by content; each "
        f"figure is the median of {reps}. The ratio is fanmap's speed over the peer's for "
        "the same items (above 1, fanmap is faster), against fair peers only: each written "
        "as a competent user would, at its best setting (the peers are in `bench/peers/`)."
        + busy_note(meta) + load_note(meta),
        "",
        "![fanmap speed-up over its peers](docs/bench.png)",
        "",
        tbl,
        "",
    ]
    if not_met:
        lines += ["Targets not met in this run: " + "; ".join(not_met) + ".", ""]
    for note in notes:
        lines += [f"- {note}"]
    if notes:
        lines += [""]
    lines += [
        "Reproduce with `scripts/bench` (`--quick`, the default: 3 runs) or "
        "`scripts/bench --full` (5 runs); every absolute figure, and peers for scale only "
        "(e.g. chunksize 1), go to `bench-out/table.md` and `bench-out/results.json`, plots "
        "to `bench-out/*.png` (CPU scaling, memory, straggler). `scripts/bench --readme` "
        "rewrites this section.",
        "",
    ]
    return "\n".join(lines)


def update_readme(section, bench_png):
    readme = os.path.join(ROOT, "README.md")
    with open(readme) as fh:
        text = fh.read()
    m = re.search(r"^## Performance[ \t]*\n", text, re.M)
    if not m:
        raise BenchError("README.md has no '## Performance' section")
    nxt = re.search(r"^## ", text[m.end():], re.M)
    end = m.end() + nxt.start() if nxt else len(text)
    new = text[:m.start()] + section + ("\n" if nxt else "") + text[end:]
    with open(readme, "w") as fh:
        fh.write(new.rstrip("\n") + "\n")
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    shutil.copyfile(bench_png, os.path.join(ROOT, "docs", "bench.png"))

