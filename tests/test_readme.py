"""The README's Python examples run as written, and its quick start is what CI runs."""

from __future__ import annotations

import asyncio
import gc
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)


def test_readme_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Every ```python block runs, in order, in one namespace, and the calls behave as shown."""
    monkeypatch.chdir(tmp_path)  # the examples create cache directories
    blocks = python_blocks()
    assert len(blocks) >= 4
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:
        # The examples name Redis's default address; run them against the test server.
        block = block.replace("redis://localhost:6379/0", redis_url)  # noqa: PLW2901
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102  (our own README)
    extract = namespace["extract"]
    info = extract.cache_info()  # type: ignore[attr-defined]
    assert (info.hits, info.misses) == (1, 1)
    assert [call.outcome for call in namespace["calls"]] == ["miss", "hit"]  # type: ignore[attr-defined]
    extract_async = namespace["extract_async"]
    first = asyncio.run(extract_async("Ann is 3"))  # type: ignore[operator]
    assert asyncio.run(extract_async("Ann is 3")) == first  # type: ignore[operator]
    assert extract_async.cache_info().hits == 1  # type: ignore[attr-defined]
    with_usage = namespace["extract_with_usage"]
    assert namespace["hit"]._raw_response.usage.total_tokens == 14  # type: ignore[attr-defined]
    assert with_usage.cache_info().tokens_saved == 14  # type: ignore[attr-defined]
    tiered = namespace["extract_tiered"]
    assert tiered.cache_info().tiers[0].hits == 1  # type: ignore[attr-defined]
    tiered.cache_clear()  # type: ignore[attr-defined]
    namespace["extract_shared"].cache_clear()  # type: ignore[attr-defined]
    calls = namespace["CALLS"].collect()[0].samples  # type: ignore[attr-defined]
    assert sum(sample.value for sample in calls if sample.name.endswith("_total")) > 0
    layered = namespace["extract_layered"]
    layered("Bo is 4")  # type: ignore[operator]
    assert (tmp_path / "cache").is_dir()
    (recorded,) = (tmp_path / "tests" / "llm_fixtures").rglob("*.json")
    assert b"sk-..." not in recorded.read_bytes()  # the ignored api_key is never written
    # Like a user's script, the examples never close their caches: let them go
    # here, where an unclosed SQLite connection is expected, not a test failure.
    namespace.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_quick_start_test_command_is_what_ci_runs() -> None:
    """.ci/run runs the README's quick-start test command, word for word."""
    quick_start = re.search(r"## Quick start\n+```bash\n(.*?)```", README, flags=re.DOTALL)
    assert quick_start is not None
    lines = [line for line in quick_start.group(1).splitlines() if line.strip()]
    assert len(lines) == 2
    demo, tests = lines
    assert "python -m instructor_cache" in demo
    assert tests in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_demo_calls_the_llm_once_per_distinct_text_then_serves_from_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quick start's first command: 5 distinct texts of 12 are paid once; a rerun pays none."""
    from instructor_cache._demo import main

    directory = str(tmp_path / "demo")
    assert main(["--dir", directory, "--latency", "0"]) == 0
    first = capsys.readouterr().out
    assert "LLM calls: 5 of 12" in first
    assert "memory: hits=7 misses=5" in first  # the repeats are served by the memory layer
    assert main(["--dir", directory, "--latency", "0"]) == 0
    second = capsys.readouterr().out
    assert "LLM calls: 0 of 12" in second
    assert "Served from disk" in second


def test_the_demo_reports_the_tokens_and_cost_of_every_call_it_avoided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's savings are what the avoided calls reported: the repeats, then all 12."""
    from instructor_cache import pricing
    from instructor_cache._demo import MODEL, TEXTS, main, simulated_usage

    def saved(texts: list[str]) -> tuple[int, str]:
        counts = [simulated_usage(text) for text in texts]
        cost = sum(pricing.cost(MODEL, given, produced) for given, produced in counts)
        return sum(given + produced for given, produced in counts), f"${cost:.6f}"

    repeats = [text for i, text in enumerate(TEXTS) if text in TEXTS[:i]]
    directory = str(tmp_path / "demo")
    for avoided in (repeats, TEXTS):
        assert main(["--dir", directory, "--latency", "0"]) == 0
        tokens, cost = saved(avoided)
        assert f"Saved {tokens} tokens, {cost} at {MODEL}" in capsys.readouterr().out
    with warnings.catch_warnings():  # the demo never closes its DiskCache
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    with warnings.catch_warnings():  # the demo never closes its DiskCache, as a user's script
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
