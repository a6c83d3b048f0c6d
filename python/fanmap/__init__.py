"""fanmap from Python: a concurrent.futures executor and an LLM chat helper
that run on the fanmap worker farm (the `fanmap` binary: on PATH, in
$FANMAP_BIN, or passed as fanmap_bin=).

    import fanmap
    with fanmap.Executor(workers=4) as ex:
        for result in ex.map(crunch, items):
            ...
    for record in fanmap.chat(prompts, "http://127.0.0.1:8000/v1/chat/completions", "gpt-4o"):
        print(record["result"])
"""
from .chat import chat
from .errors import BrokenExecutor, FanmapError, RemoteError, RemoteTraceback, TaskError
from .executor import Executor

__all__ = ["Executor", "chat", "FanmapError", "BrokenExecutor", "TaskError", "RemoteError",
           "RemoteTraceback"]
__version__ = "0.1.0"
