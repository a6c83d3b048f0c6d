"""fanmap.chat against the mock LLM server (real fanmap, real HTTP)."""
import os
import re
import subprocess

import pytest

import fanmap

DEADLINE = 120


@pytest.fixture(scope="module")
def mock_llm(bin_dir):
    proc = subprocess.Popen([os.path.join(bin_dir, "mock-llm"), "--port", "0",
                             "--latency-ms", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on (http://\S+)", line)
    assert m, f"mock-llm said {line!r}"
    yield m.group(1) + "/v1/chat/completions"
    proc.terminate()
    proc.wait(DEADLINE)


def test_records_in_input_order_with_len(mock_llm, fanmap_bin):
    prompts = [f"prompt {i}" for i in range(40)] + ["two\nlines", {"messages": [
        {"role": "user", "content": "as a request"}]}]
    results = fanmap.chat(prompts, mock_llm, "mock", workers=2, slots=8, fanmap_bin=fanmap_bin)
    assert len(results) == len(prompts)
    records = list(results)
    assert [r["index"] for r in records] == list(range(len(prompts)))
    assert all(r["ok"] for r in records)
    assert [r["result"] for r in records[:40]] == [f"echo: prompt {i}" for i in range(40)]
    assert records[40]["result"] == "echo: two\nlines"
    assert records[41]["result"] == "echo: as a request"


def test_generator_prompts_and_options(mock_llm, fanmap_bin):
    results = fanmap.chat((f"p{i}" for i in range(5)), mock_llm, "mock", workers=1,
                          rate="1000/s", max_tokens=5, fanmap_bin=fanmap_bin)
    with pytest.raises(TypeError):
        len(results)
    assert [r["result"] for r in results] == [f"echo: p{i}" for i in range(5)]


def test_a_bad_prompt_is_raised_after_the_ones_before(mock_llm, fanmap_bin):
    results = fanmap.chat(["a", "b", 3], mock_llm, "mock", fanmap_bin=fanmap_bin)
    assert [next(results)["result"], next(results)["result"]] == ["echo: a", "echo: b"]
    with pytest.raises(TypeError, match="prompt must be a str"):
        next(results)


def test_fanmap_usage_error_is_raised(mock_llm, fanmap_bin):
    with pytest.raises(fanmap.FanmapError, match="status 2"):
        list(fanmap.chat(["a"], mock_llm, "mock", rate="fast", fanmap_bin=fanmap_bin))
