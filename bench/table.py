"""The Markdown table of a bench run's rows."""

from bench.lib import fmt_x


def table(rows):
    lines = ["| workload | fanmap | peer | peer figure | speed-up | target | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        sp = fmt_x(r["speedup"]) if r["speedup"] is not None else "—"
        met = "—" if r["met"] is None else ("met" if r["met"] else "**not met**")
        if r.get("pending"):
            met = "pending"
        lines.append("| " + " | ".join([r["workload"], r["fanmap"], r["peer"],
                                        r["peer_figure"], sp, r["target"], met]) + " |")
    return "\n".join(lines)


