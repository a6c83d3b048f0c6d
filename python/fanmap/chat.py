"""fanmap.chat: prompts to an OpenAI-compatible chat API, records back in order."""
import json
import threading

from . import binary
from .errors import FanmapError


def chat(prompts, url, model, *, workers=2, slots=64, rate=None, api_key_env="OPENAI_API_KEY",
         fanmap_bin=None, **options):
    """Sends each prompt to `url` (a chat-completions endpoint) with `model`
    through `fanmap --http URL --chat MODEL` and returns an iterator of its
    records, in input order: {"index":0,"ok":true,"result":"<assistant text>",
    "prompt_tokens":...} or {"index":3,"ok":false,"error":"..."}. A prompt is
    a string (the user message) or a dict with "messages" (a whole request).
    The iterator has len() when `prompts` has one, so tqdm(chat(...)) shows a
    bar. Prompts are read lazily, on a thread, as fanmap takes them.

    rate: "50/s" or "600/min" over all workers. The API key is read by fanmap
    from the environment variable `api_key_env`, never from argv. Other
    keyword arguments become fanmap flags (max_tokens=200 -> --max-tokens
    200; system=, temperature=, retries=, timeout=, tokens_per_min=, ...).
    """
    argv = [binary.find(fanmap_bin), "-j", str(workers), "--slots", str(slots),
            "--input-format", "jsonl", "--progress", "never", "--http", url, "--chat", model,
            "--api-key-env", api_key_env]
    if rate is not None:
        argv += ["--rate", str(rate)]
    # A library keeps stderr for errors: no end-of-run summary unless quiet=False.
    options = {"quiet": True, **options}
    argv += binary.option_flags(options)
    return ChatResults(argv, prompts)


class ChatResults:
    """Records of a fanmap --chat run, in input order. Iterate once; close()
    (or leaving a `with` block) stops fanmap early."""

    def __init__(self, argv, prompts):
        try:
            self._len = len(prompts)
        except TypeError:
            self._len = None
        self._prompts = prompts
        self._process = binary.Process(argv)
        self._next = 0
        self._done = False
        self._feed_error = None
        self._writer = threading.Thread(target=self._feed, daemon=True, name="fanmap-chat-feed")
        self._writer.start()

    def __len__(self):
        if self._len is None:
            raise TypeError("the prompts have no len()")
        return self._len

    def __iter__(self):
        return self

    def _feed(self):
        out = self._process.proc.stdin
        encode = json.JSONEncoder(separators=(",", ":")).encode
        batch = []
        try:
            try:
                for prompt in self._prompts:
                    if not isinstance(prompt, (str, dict)):
                        raise TypeError(f"a prompt must be a str or a dict with \"messages\", "
                                        f"not {type(prompt).__name__}")
                    batch.append(encode(prompt))
                    if len(batch) >= 256:
                        out.write(("\n".join(batch) + "\n").encode("utf-8"))
                        batch = []
            except Exception as e:  # raised to the consumer after the prompts before it
                self._feed_error = e
            if batch:
                out.write(("\n".join(batch) + "\n").encode("utf-8"))
        except BrokenPipeError:
            pass
        finally:
            try:
                out.close()
            except OSError:
                pass

    def __next__(self):
        if self._done:
            raise StopIteration
        line = self._process.proc.stdout.readline()
        if not line:
            self._done = True
            code = self._process.wait()
            self._writer.join()
            if self._feed_error is not None:
                raise self._feed_error
            if code not in (0, 1):
                raise FanmapError(self._process.describe_exit(code))
            raise StopIteration
        record = json.loads(line)
        if record.get("index") != self._next:
            self.close()
            raise FanmapError(f"record {record.get('index')} came where {self._next} was due")
        self._next += 1
        return record

    def close(self):
        """Stops fanmap (SIGTERM: it flushes and exits) if it is still running."""
        self._done = True
        proc = self._process.proc
        if proc.poll() is None:
            proc.terminate()
        proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
