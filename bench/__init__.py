"""fanmap's benchmark against its peers, driven by scripts/bench.

    lib.py        running, timing and checking commands; the mock server; machine facts
    context.py    the state of one run (options, scratch folder, rows, results)
    workloads/    one module per workload (measure(b)), in the order of WORKLOADS
    peers/        the peers, each a program runnable by hand (see its header)
    table.py      the Markdown table
    plots.py      the gnuplot plots
    report.py     the README's Performance section
    package.json  the Node.js peer's npm package, pinned (package-lock.json)
"""
