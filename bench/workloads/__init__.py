"""The bench's workloads, in the order they run. Each module's measure(b) runs one workload
against its peers (b: bench.context.Bench), checks every output and adds rows to the table;
its docstring says what it compares."""

import importlib

WORKLOADS = ["seed", "overhead", "memory", "scaling", "exec", "pipe", "filters", "http",
             "straggler"]


def module(name):
    return importlib.import_module(f"bench.workloads.{name}")
