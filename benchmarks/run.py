"""Cache-hit latency of ``@instructor_cache`` against the obvious alternatives.

For a small model and a ~2 KB one it times a warm hit of ``extract(text)`` through
``functools.lru_cache`` and cachetools (same object back), cachetools holding JSON and
validating it per hit (the work any fresh instance costs), raw diskcache + validation,
and instructor_cache on memory (sync and async) and disk; also key building alone and
``Signature.bind`` for scale. It prints our target ratios with PASS/MISS.

Interleaved because timing A for ten seconds and then B lets clock boost, heat and
noisy neighbours differ between them, a drift often larger than what we measure.
Each round times one batch of every contender (rotating who goes first), so all
share the machine's noise; the median over rounds drops the outliers.

Run ``python benchmarks/run.py`` (~30 s) or with ``--quick`` (~3 s). Exit status 1
means a correctness check failed (a wrong value, or an instructor_cache call that
missed); timings are reported, never asserted.
"""

import argparse
import asyncio
import functools
import importlib.metadata
import inspect
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import diskcache
from cachetools import LRUCache, cached
from pydantic import BaseModel

from instructor_cache import DiskCache, MemoryCache, instructor_cache

TEXT = "some text"
MEMORY, ASYNC = "instructor_cache memory hit", "instructor_cache async memory hit"
DISK, KEY = "instructor_cache disk hit", "key: extract.cache_key(str)"
CT_VALIDATE, RAW_DISK = "cachetools JSON + validate_json", "diskcache get + validate_json"
# (what, numerator, denominator, goal): the ratio of two contenders' medians, per model
TARGETS = (
    ("memory hit / cachetools + validate", MEMORY, CT_VALIDATE, 1.5),
    ("disk hit / diskcache + validate", DISK, RAW_DISK, 1.2),
)


class UserDetail(BaseModel):
    name: str
    age: int


class Job(BaseModel):
    title: str
    company: str
    years: list[int]
    summary: str


class Profile(BaseModel):
    name: str
    email: str
    bio: str
    tags: list[str]
    jobs: list[Job]


def make_profile() -> Profile:
    """About 2 KB of JSON: nested lists of sub-models, mostly strings."""
    summary = "Built and ran a pipeline that extracts structured records from free text. " * 2
    return Profile(
        name="Jason Liu",
        email="jason@example.com",
        bio="Writes tools that turn language model output into typed records. " * 2,
        tags=["python", "pydantic", "llm", "caching", "extraction", "benchmarks"],
        jobs=[
            Job(title=f"Engineer {i}", company=f"Firm {i} Ltd", years=[2000 + i], summary=summary)
            for i in range(8)
        ],
    )


class CheckFailedError(Exception):
    """A contender returned a wrong value, or a cache that should hit did not."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailedError(message)


@dataclass
class Contender:
    name: str
    fn: Callable[[str], Any]  # called as fn(TEXT), awaited if is_async
    expected: Any
    is_async: bool = False
    info: Callable[[], Any] | None = None  # instructor_cache's cache_info(), to prove hits
    batch: int = 1
    calls: int = 0
    samples: list[float] = field(default_factory=list)  # ns per call, one per round

    async def call_checked(self) -> None:
        result = self.fn(TEXT)
        result = (await result) if self.is_async else result
        self.calls += 1
        ok = result == self.expected and type(result) is type(self.expected)
        check(ok, f"{self.name}: returned {result!r}")

    async def time_batch(self, n: int) -> int:
        """Nanoseconds for n back-to-back calls, through the same loop for every contender."""
        fn, arg, iterations = self.fn, TEXT, range(n)
        start = time.perf_counter_ns()
        if self.is_async:
            for _ in iterations:
                await fn(arg)
        else:
            for _ in iterations:
                fn(arg)
        elapsed = time.perf_counter_ns() - start
        self.calls += n
        return elapsed


def model_contenders(label: str, model: BaseModel, tmp: str) -> tuple[list[Contender], list[Any]]:
    """Every way we compare to get ``model`` back from a warm cache; and their closers."""
    cls, raw_key = type(model), f"extract:{TEXT}"
    raw = diskcache.Cache(tempfile.mkdtemp(dir=tmp))
    raw.set(raw_key, model.model_dump_json())
    disk_backend = DiskCache(tempfile.mkdtemp(dir=tmp))

    lock = threading.Lock
    lru = functools.lru_cache(maxsize=1024)(lambda text: model)
    ct_same = cached(LRUCache(1024), lock=lock())(lambda text: model)
    ct_json = cached(LRUCache(1024), lock=lock())(lambda text: model.model_dump_json())

    @instructor_cache(MemoryCache(maxsize=1024))
    def mem(text: str) -> cls:
        return model

    @instructor_cache(MemoryCache(maxsize=1024))
    async def amem(text: str) -> cls:
        return model

    @instructor_cache(disk_backend)
    def disk(text: str) -> cls:
        return model

    def c(name: str, fn: Callable[[str], Any], **kw: Any) -> Contender:
        return Contender(f"{label}: {name}", fn, model, **kw)

    contenders = [
        c("lru_cache (same object)", lru),
        c("cachetools + lock (same object)", ct_same),
        c(CT_VALIDATE, lambda text: cls.model_validate_json(ct_json(text))),
        c(MEMORY, mem, info=mem.cache_info),
        c(ASYNC, amem, is_async=True, info=amem.cache_info),
        c(RAW_DISK, lambda text: cls.model_validate_json(raw.get(raw_key))),
        c(DISK, disk, info=disk.cache_info),
    ]
    return contenders, [raw.close, disk_backend.close]


def key_contenders(extract: Any) -> list[Contender]:
    """Key building alone for an instructor_cache function, and ``Signature.bind`` for scale."""
    key = extract.cache_key(TEXT)
    check(key.startswith("instructor_cache:"), f"unexpected key {key!r}")
    signature = inspect.signature(extract.__wrapped__)  # computed once, as KeyBuilder does

    def bind(text: str) -> dict[str, Any]:
        bound = signature.bind(text)
        bound.apply_defaults()
        return bound.arguments

    return [
        Contender(KEY, extract.cache_key, key),
        Contender("key: Signature.bind + apply_defaults", bind, {"text": TEXT}),
    ]


async def measure(contenders: list[Contender], rounds: int, batch_ns: int) -> None:
    for c in contenders:  # warm up: the first call is each cache's only miss
        await c.call_checked()
        await c.call_checked()
    before = {c.name: c.info() for c in contenders if c.info}
    for c in contenders:  # calibrate: one batch of each takes about batch_ns
        c.batch = max(1, round(batch_ns * 500 / max(await c.time_batch(500), 1)))
    for r in range(rounds):
        shift = r % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            c.samples.append(await c.time_batch(c.batch) / c.batch)
    for c in contenders:
        await c.call_checked()
        if c.info:  # every call after the two warm-up calls must have been a hit
            start, end, timed = before[c.name], c.info(), c.calls - 2
            check(end.misses == start.misses, f"{c.name}: {end.misses - start.misses} misses")
            check(end.errors == 0, f"{c.name}: {end.errors} backend errors")
            check(end.hits - start.hits == timed, f"{c.name}: {end.hits - start.hits} hits")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:  # on Linux platform.processor() is often just the architecture
        with open("/proc/cpuinfo", encoding="utf-8") as lines:
            cpu = next(line.split(":")[1].strip() for line in lines if line.startswith("model n"))
    except (OSError, StopIteration):
        pass
    libs = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("pydantic", "cachetools"))
    return (
        f"{cpu} ({platform.machine()}), {os.cpu_count()} CPUs, {platform.system()}; Python "
        f"{platform.python_version()}; {libs}, diskcache {importlib.metadata.version('diskcache')}"
    )


def report(contenders: list[Contender], labels: list[str]) -> None:
    median = {c.name: statistics.median(c.samples) / 1000 for c in contenders}
    print(f"\n{'contender':<48} {'median µs/call':>14} {'IQR µs':>8} {'batch':>6}")
    for c in contenders:
        q1, _, q3 = statistics.quantiles(c.samples, n=4)
        print(f"{c.name:<48} {median[c.name]:>14.3f} {(q3 - q1) / 1000:>8.3f} {c.batch:>6}")

    print(f"\n{'target':<48} {'value':>8} {'goal':>10}  result")
    rows = [
        (f"{label}: {what}", median[f"{label}: {num}"] / median[f"{label}: {den}"], "x", "<=", goal)
        for label in labels
        for what, num, den, goal in TARGETS
    ]
    rows.append(("key building, one str argument", median[KEY], " µs", "<", 1.0))
    for what, value, unit, op, goal in rows:
        verdict = "PASS" if (value <= goal if op == "<=" else value < goal) else "MISS"
        shown, target = f"{value:.2f}{unit}", f"{op} {goal:.1f}{unit}"
        print(f"{what:<48} {shown:>8} {target:>10}  {verdict}")
    for label in labels:  # for information, no target
        ratio = median[f"{label}: {ASYNC}"] / median[f"{label}: {MEMORY}"]
        print(f"{label + ': async / sync memory hit (info)':<48} {f'{ratio:.2f}x':>8}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (~3 s), rougher numbers")
    quick = parser.parse_args().quick
    rounds, batch_ns = (150, 1_000_000) if quick else (600, 3_000_000)

    models = {"small": UserDetail(name="Jason", age=25), "large": make_profile()}
    print(f"machine: {machine()}")
    for label, model in models.items():
        size = len(model.model_dump_json())
        print(f"model {label}: {type(model).__name__}, model_dump_json() is {size} bytes")
    print(f"mode: {'quick' if quick else 'full'}, {rounds} interleaved rounds")

    tmp = tempfile.mkdtemp(prefix="instructor_cache_bench_")
    contenders: list[Contender] = []
    closers: list[Any] = []
    try:
        for label, model in models.items():
            more, close = model_contenders(label, model, tmp)
            contenders += more
            closers += close
        extract = next(c.fn for c in contenders if c.name == f"small: {MEMORY}")
        contenders += key_contenders(extract)
        started = time.perf_counter()
        asyncio.run(measure(contenders, rounds, batch_ns))
        elapsed = time.perf_counter() - started
    except CheckFailedError as exc:
        print(f"\nCORRECTNESS CHECK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for close in closers:
            close()
        shutil.rmtree(tmp, ignore_errors=True)
    report(contenders, list(models))
    print(f"\nall correctness checks passed; timing took {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
