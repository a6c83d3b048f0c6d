"""The Markdown tables of a bench run's rows: every figure (table.md, stdout), and the
README's, which shows only ratios against fair peers."""

from bench.lib import fmt_x

DITTO = "″"


def _met(r):
    if r.get("pending"):
        return "pending"
    return "—" if r["met"] is None else ("met" if r["met"] else "**not met**")


def table(rows):
    """Every row, with the absolute figures."""
    lines = ["| workload | fanmap | peer | peer figure | speed-up | target | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        sp = fmt_x(r["speedup"]) if r["speedup"] is not None else "—"
        lines.append("| " + " | ".join([r["workload"], r["fanmap"], r["peer"],
                                        r["peer_figure"], sp, r["target"], _met(r)]) + " |")
    return "\n".join(lines)


def _named(rows):
    """(workload, row) with each ditto mark replaced by the workload it repeats."""
    workload = ""
    for r in rows:
        w = r["workload"]
        if w.startswith(DITTO):
            w = workload + w[len(DITTO):]
        else:
            workload = w
        yield w, r


def not_met(rows):
    """One line per target not met: the workload, the peer if any, and the target."""
    out = []
    for w, r in _named(rows):
        if r["met"] is False:
            peer = f" vs {r['peer']}" if r["peer"] not in ("—", "") else ""
            out.append(f"{w}{peer}: {r['miss'] or r['target']}")
    return out


def ratio_table(rows):
    """The rows against fair peers (and those without a peer, e.g. peak RSS), as ratios:
    fanmap's speed over the peer's. A peer that could not run says why."""
    lines = ["| workload | fair peer | fanmap ÷ peer (speed) | target | met |",
             "| --- | --- | --- | --- | --- |"]
    shown = None
    for w, r in _named(rows):
        if not r.get("fair", True):
            continue
        if r.get("pending"):
            figure = r["peer"]
        elif r["speedup"] is not None:
            figure = fmt_x(r["speedup"])
        elif r.get("ratio"):
            figure = r["ratio"]
        elif r["peer_figure"].startswith("cannot run"):
            figure = r["peer_figure"]
        else:
            continue  # a figure for scale, not a comparison
        label = DITTO if w == shown else w
        shown = w
        peer = "—" if r.get("pending") else r["peer"]
        lines.append("| " + " | ".join([label, peer, figure, r["target"], _met(r)]) + " |")
    return "\n".join(lines)
