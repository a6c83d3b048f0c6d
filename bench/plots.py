"""The bench's plots, drawn by gnuplot from the rows and points a run collected:
bench.png (speed-ups), scaling.png, memory.png, straggler.png."""

import os
import shutil
import subprocess

from bench.lib import BenchError
from bench.workloads.memory import LIMIT_MB


def gnuplot_terminal():
    p = subprocess.run(["gnuplot", "-e", "print GPVAL_TERMINALS"], capture_output=True,
                       text=True)
    terms = (p.stdout + p.stderr).split()
    return "pngcairo" if "pngcairo" in terms else "png"


def gp_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def draw_plots(b, outdir):
    """Writes the .dat files and a .gp script per plot into outdir, runs gnuplot.
    Returns the PNG paths."""
    if not shutil.which("gnuplot"):
        raise BenchError("gnuplot is missing: run scripts/deps bench")
    term = gnuplot_terminal()
    font = 'font "DejaVu Sans,10"' if term == "pngcairo" else ""
    head = f"set terminal {term} size 1200,700 {font}\nset encoding utf8\n"
    made = []

    def draw(name, script):
        gp = os.path.join(outdir, name + ".gp")
        with open(gp, "w") as fh:
            fh.write(head + f"set output {gp_str(os.path.join(outdir, name + '.png'))}\n"
                     + script)
        p = subprocess.run(["gnuplot", gp], capture_output=True, text=True, cwd=outdir)
        png = os.path.join(outdir, name + ".png")
        if p.returncode != 0 or not os.path.getsize(png):
            raise BenchError(f"gnuplot failed on {gp}:\n{p.stderr}")
        made.append(png)

    bars = [(r["plot"], r["speedup"]) for r in b.rows
            if r["plot"] and r["speedup"] and r.get("fair", True)]
    if bars:
        dat = os.path.join(outdir, "speedup.dat")
        with open(dat, "w") as fh:
            fh.write("# label\tspeed-up (peer time / fanmap time)\tcolour\n")
            for label, v in bars:
                fh.write(f"{label}\t{v:.4f}\t{0x2F6DB5 if v >= 1 else 0xD9822B}\n")
        top = max(v for _, v in bars)
        low = min(v for _, v in bars)
        draw("bench", f"""
set datafile separator "\\t"
set title "fanmap vs fair peers, same machine, same run (higher is better for fanmap)"
set ylabel "fanmap speed / peer speed (log scale)"
set xlabel "workload / peer"
set logscale y
set yrange [{min(0.5, low / 1.5)}:{top * 3}]
set style fill solid 0.85 border -1
set boxwidth 0.7
set grid ytics
set xtics rotate by 30 right
set bmargin 9
set lmargin 14
set key top left
plot {gp_str(dat)} using 0:2:3:xtic(1) with boxes lc rgb variable notitle, \\
     NaN with boxes lc rgb "#2f6db5" title "fanmap faster", \\
     NaN with boxes lc rgb "#d9822b" title "peer faster", \\
     1 with lines dt 2 lw 2 lc rgb "#c03030" title "parity (1x)", \\
     {gp_str(dat)} using 0:2:($2 >= 100 ? sprintf("%.0fx", $2) : sprintf("%.2fx", $2)) \\
         with labels offset 0,0.8 notitle
""")
    if "scaling" in b.plots:
        dat = os.path.join(outdir, "scaling.dat")
        pts = b.plots["scaling"]
        with open(dat, "w") as fh:
            fh.write("# workers\tfanmap items/s\tProcessPoolExecutor items/s\tideal\n")
            for j, f, p in pts:
                fh.write(f"{j}\t{f:.3f}\t{p:.3f}\t{pts[0][1] * j:.3f}\n")
        r = b.results["cpu_scaling"]
        draw("scaling", f"""
set datafile separator "\\t"
set title "CPU scaling: {r['items']} items of sha256 x {r['rounds']} rounds ({os.cpu_count()} CPUs)"
set xlabel "workers (processes)"
set ylabel "items/s"
set xrange [0.8:2.2]
set xtics 1
set yrange [0:*]
set grid
set key top left
plot {gp_str(dat)} using 1:2 with linespoints lw 2 pt 7 title "fanmap --builtin sha256", \\
     {gp_str(dat)} using 1:3 with linespoints lw 2 pt 5 title "ProcessPoolExecutor + hashlib", \\
     {gp_str(dat)} using 1:4 with lines dt 2 title "fanmap, ideal linear"
""")
    if "memory" in b.plots:
        dat = os.path.join(outdir, "memory.dat")
        with open(dat, "w") as fh:
            fh.write("# items (millions)\tcoordinator peak RSS (MB)\n")
            for x, y in b.plots["memory"]:
                fh.write(f"{x:g}\t{y:.2f}\n")
        top = max(y for _, y in b.plots["memory"])
        draw("memory", f"""
set datafile separator "\\t"
set title "fanmap coordinator peak RSS vs input length (--builtin echo, 2 workers)"
set xlabel "items (millions)"
set ylabel "peak RSS (MB)"
set xrange [0:{max(x for x, _ in b.plots["memory"]) * 1.15}]
set yrange [0:{max(LIMIT_MB * 1.5, top * 1.3)}]
set grid
set key top left
plot {gp_str(dat)} using 1:2 with linespoints lw 2 pt 7 title "coordinator peak RSS", \\
     {gp_str(dat)} using 1:2:(sprintf("%.1f MB", $2)) with labels offset 0,1 notitle, \\
     {LIMIT_MB} with lines dt 2 lc rgb "#c03030" title "target: {LIMIT_MB} MB"
""")
    if "straggler" in b.plots:
        dat = os.path.join(outdir, "straggler.dat")
        with open(dat, "w") as fh:
            fh.write("# run\tseconds\n")
            for label, v in b.plots["straggler"]:
                fh.write(f"{label}\t{v:.4f}\n")
        r = b.results["straggler"]
        draw("straggler", f"""
set datafile separator "\\t"
set title "Straggler: {r['items']} items on 3 workers, one 10x slower (FANMAP_SLOW=1)"
set xlabel "run"
set ylabel "time (s), lower is better"
set yrange [0:*]
set style fill solid 0.85 border -1
set boxwidth 0.6
set grid ytics
set xtics rotate by 15 right
plot {gp_str(dat)} using 0:2:xtic(1) with boxes lc rgb "#2f6db5" notitle, \\
     {gp_str(dat)} using 0:2:(sprintf("%.2f s", $2)) with labels offset 0,0.8 notitle
""")
    return made

