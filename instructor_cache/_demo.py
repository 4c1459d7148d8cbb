"""``python -m instructor_cache``: a simulated extraction batch on memory over disk.

The "LLM" is a function that sleeps and counts its calls, so the demo needs no
API key and no network; like instructor, it hangs a raw completion with the
model name and token usage on each result, which the cache records, so the
tokens and dollars saved are the cache's own figures. Run it twice: the second
run is served from disk.
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

from pydantic import BaseModel, Field

from instructor_cache import CachedFunction, CacheEvent, disk_cache, memory_cache, track_calls

TEXTS = [
    "Jason is 25 years old",
    "Sarah is 31 years old",
    "Jason is 25 years old",
    "Miguel is 42 years old",
    "Sarah is 31 years old",
    "Aiko is 28 years old",
    "Jason is 25 years old",
    "Miguel is 42 years old",
    "Priya is 36 years old",
    "Aiko is 28 years old",
    "Priya is 36 years old",
    "Jason is 25 years old",
]


MODEL = "gpt-4o-mini-2024-07-18"


class UserDetail(BaseModel):
    name: str = Field(description="The person's first name")
    age: int = Field(description="Age in years")


def simulated_usage(text: str) -> tuple[int, int]:
    """The input and output tokens the simulated call reports: a prompt with the schema, an
    answer of a few tokens (made up, in proportion to the text)."""
    return 150 + 2 * len(text), 12 + len(text.split(maxsplit=1)[0])


def build(
    directory: Path, latency: float
) -> tuple[CachedFunction[[str], UserDetail], CachedFunction[[str], UserDetail], list[str]]:
    """The batch's extract function: a memory layer over a disk layer over the "LLM"."""
    llm_calls: list[str] = []

    def extract(text: str) -> UserDetail:
        llm_calls.append(text)
        time.sleep(latency)  # a real call would take about a second and cost tokens
        match = re.match(r"(\w+) is (\d+)", text)
        if match is None:
            raise ValueError(f"cannot extract a user from {text!r}")
        user = UserDetail(name=match[1], age=int(match[2]))
        given, produced = simulated_usage(text)
        usage = {"prompt_tokens": given, "completion_tokens": produced}
        # As instructor does: the provider's response rides on the result.
        object.__setattr__(user, "_raw_response", {"model": MODEL, "usage": usage})
        return user

    # The same as stacking @memory_cache(maxsize=100) over @disk_cache(directory),
    # spelled out to keep a handle on each layer for its statistics. What the
    # closure captures is part of its key, read at each call: the call log it
    # appends to and the simulated latency change no answer, so they are left out.
    disk_layer = disk_cache(directory, ignore=("llm_calls", "latency"))(extract)  # L2
    memory_layer = memory_cache(maxsize=100)(disk_layer)  # L1: this process
    return memory_layer, disk_layer, llm_calls


def served_by(calls: list[CacheEvent]) -> str:
    """Which layer answered a call of the memory layer, from its events (the disk layer's first)."""
    if calls[-1].outcome == "hit":
        return "memory hit"
    if any(call.outcome == "hit" for call in calls[:-1]):
        return "disk hit"
    return "LLM call"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instructor_cache", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".instructor_cache_demo"))
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per simulated call")
    parser.add_argument("--reset", action="store_true", help="empty the disk cache first")
    args = parser.parse_args(argv)
    if args.reset:
        shutil.rmtree(args.dir, ignore_errors=True)
    had_cache = args.dir.exists()

    extract, disk_layer, llm_calls = build(args.dir, args.latency)
    print(f"Extracting {len(TEXTS)} texts; memory cache over disk cache at {args.dir}/\n")
    started = time.perf_counter()
    for i, text in enumerate(TEXTS, 1):
        t0 = time.perf_counter()
        with track_calls() as calls:
            user = extract(text)
        elapsed = time.perf_counter() - t0
        print(
            f"[{i:2}/{len(TEXTS)}] {text!r:26} -> {user!r:28} {elapsed * 1000:8.2f} ms  "
            f"{served_by(calls)}"
        )
    total = time.perf_counter() - started

    memory_info, disk_info = extract.cache_info(), disk_layer.cache_info()
    saved = memory_info.time_saved + disk_info.time_saved
    tokens = memory_info.tokens_saved + disk_info.tokens_saved
    cost = memory_info.cost_saved + disk_info.cost_saved
    print()
    for name, info in (("memory", memory_info), ("disk", disk_info)):
        print(f"{name:>6}: hits={info.hits} misses={info.misses} errors={info.errors}")
    print(f"LLM calls: {len(llm_calls)} of {len(TEXTS)}; took {total:.2f} s, saved {saved:.2f} s")
    print(f"Saved {tokens} tokens, ${cost:.6f} at {MODEL}'s list price (instructor_cache.pricing)")
    if had_cache and not llm_calls:
        print(f"Served from disk: every result came from {args.dir}/, written by an earlier run.")
    else:
        print("Run it again: the next run is served from disk (--reset starts over).")
    return 0
