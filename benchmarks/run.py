"""Cache-hit latency of ``@instructor_cache`` against the obvious alternatives.

For a small model and a ~2 KB one it times a warm hit of ``extract(text)`` through
``functools.lru_cache`` and cachetools (same object back), cachetools holding JSON and
validating it per hit (the work any fresh instance costs), raw diskcache + validation,
and instructor_cache on memory (sync and async) and disk; also key building alone and
``Signature.bind`` for scale. On Redis (a redis-server started for the run on a free
loopback port, or ``REDIS_URL``) it times instructor_cache hits, sync and async, against
redis-py's own ``get`` + validation on a client with the same options; for the small
model also a ``TieredCache(MemoryCache(), RedisCache(url))`` hit served from L1 against
a plain memory hit, and a call while Redis is down and the circuit breaker open against
the uncached call. It also times ``import instructor_cache`` against ``from pydantic
import BaseModel, TypeAdapter``, each in fresh interpreters, interleaved. Then
flights.py: provider calls under a burst of concurrent calls against async-lru, cashews
and instructor's own cache, and bulk and coalesced reads on Redis. It prints our
target ratios with PASS/MISS.

Interleaved because timing A for ten seconds and then B lets clock boost, heat and
noisy neighbours differ between them, a drift often larger than what we measure.
Each round times one batch of every contender, so all share the machine's noise, in
a fresh shuffled (seeded) order: a contender that always followed the same one would
inherit what that one left behind (with Redis, a server idle for a while answers the
next calls slower: a fixed order moved a ratio by 0.1x). Each batch starts with one
untimed call for the same reason. The median over rounds drops the outliers.

Run ``python benchmarks/run.py`` (~2 min) or with ``--quick`` (~10 s). Exit status 1
means a correctness check failed (a wrong value, an instructor_cache call that missed,
a tiered hit not served by L1, a call that reached the dead Redis, or an instructor_cache
burst that did not pay exactly once per distinct input); timings are reported, never
asserted.
"""

import argparse
import asyncio
import collections
import contextlib
import functools
import importlib.metadata
import inspect
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diskcache
import flights
import redis
import redis.asyncio
import redis.utils
from _checks import CheckFailedError, check
from cachetools import LRUCache, cached
from pydantic import BaseModel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from instructor_cache import (
    CacheEvent,
    CacheInfo,
    CircuitBreaker,
    DiskCache,
    MemoryCache,
    RedisCache,
    TieredCache,
    instructor_cache,
)

TEXT = "some text"
MEMORY, ASYNC = "instructor_cache memory hit", "instructor_cache async memory hit"
HOOKED = "instructor_cache memory hit, on_event hook"
DISK, KEY = "instructor_cache disk hit", "key: extract.cache_key(str)"
CT_VALIDATE, RAW_DISK = "cachetools JSON + validate_json", "diskcache get + validate_json"
REDIS, RAW_REDIS = "instructor_cache redis hit", "redis-py get + validate_json"
AREDIS, RAW_AREDIS = "instructor_cache async redis hit", "redis.asyncio get + validate_json"
TIERED = "instructor_cache tiered hit (memory + redis)"
# The decorated functions below are closures that return a captured model: the
# answer a real extract(text) would compute, not an input. Left out of the key,
# they time the hit of a plain module-level ``extract(text)``.
ANSWER = ("model",)
DOWN, UNCACHED = "instructor_cache redis down, breaker open", "uncached call (builds the model)"
# (what, numerator, denominator, goal): the ratio of two contenders' medians, for each
# model both were measured on (the tiered and Redis-down ones run on the small model only)
TARGETS = (
    ("memory hit / cachetools + validate", MEMORY, CT_VALIDATE, 1.5),
    ("disk hit / diskcache + validate", DISK, RAW_DISK, 1.2),
    ("redis hit / redis-py + validate", REDIS, RAW_REDIS, 1.25),
    ("async redis hit / redis.asyncio + validate", AREDIS, RAW_AREDIS, 1.25),
    ("tiered hit from L1 / memory hit", TIERED, MEMORY, 1.1),
    ("redis down, breaker open / uncached call", DOWN, UNCACHED, 2.0),
)
WIDTH = 52  # of the name columns
# Import time: each statement timed inside a fresh interpreter (so interpreter start-up,
# the same for both, does not dilute the ratio); the target is ours over pydantic's.
IMPORT_OURS, IMPORT_PYDANTIC = (
    "import instructor_cache",
    "from pydantic import BaseModel, TypeAdapter",
)
IMPORT_GOAL = 1.3
HEAVY = ("redis", "hiredis", "diskcache")  # what a memory-only user should not pay for
TIMED_IMPORT = """\
import sys, time
start = time.perf_counter_ns()
{statement}
elapsed = time.perf_counter_ns() - start
print(elapsed, *[name for name in {heavy!r} if name in sys.modules])
"""


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


def all_hits(name: str, start: CacheInfo, end: CacheInfo, timed: int) -> None:
    """Every one of the ``timed`` calls between the two ``cache_info()`` was a hit."""
    check(end.misses == start.misses, f"{name}: {end.misses - start.misses} misses")
    check(end.errors == 0, f"{name}: {end.errors} backend errors")
    check(end.hits - start.hits == timed, f"{name}: {end.hits - start.hits} hits")


def all_hits_in_l1(name: str, start: CacheInfo, end: CacheInfo, timed: int) -> None:
    """All hits, each served by the first tier: the second was not even asked."""
    all_hits(name, start, end, timed)
    (l1_start, l2_start), (l1_end, l2_end) = start.tiers, end.tiers
    check(l1_end.hits - l1_start.hits == timed, f"{name}: {l1_end.hits - l1_start.hits} L1 hits")
    asked = l2_end.hits + l2_end.misses - l2_start.hits - l2_start.misses
    check(asked == 0, f"{name}: L2 (Redis) was read {asked} times")


def all_skipped(breaker: CircuitBreaker) -> Callable[[str, CacheInfo, CacheInfo, int], None]:
    """Every call missed, called the function, and went straight past the open breaker."""
    failures = breaker.consecutive  # a call that reached Redis would change it: +1 or reset

    def verify(name: str, start: CacheInfo, end: CacheInfo, timed: int) -> None:
        check(breaker.is_open, f"{name}: the breaker closed")
        check(breaker.consecutive == failures, f"{name}: a call reached Redis")
        check(end.hits == start.hits, f"{name}: {end.hits - start.hits} hits from a dead Redis")
        check(end.misses - start.misses == timed, f"{name}: {end.misses - start.misses} misses")
        skipped = end.errors - start.errors  # one error for each call made straight through
        check(skipped == timed, f"{name}: {skipped} skipped calls for {timed} calls")

    return verify


@dataclass
class Contender:
    name: str
    fn: Callable[[str], Any]  # called as fn(TEXT), awaited if is_async
    expected: Any
    is_async: bool = False
    info: Callable[[], Any] | None = None  # instructor_cache's cache_info(), to prove hits
    verify: Callable[[str, CacheInfo, CacheInfo, int], None] = all_hits  # what info must show
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
        """Nanoseconds for n back-to-back calls, through the same loop for every contender.

        One untimed call first, so that the contender timed before does not bill this one
        for waking what it left cold: a Redis server idle since our last batch, say.
        """
        fn, arg, iterations = self.fn, TEXT, range(n)
        if self.is_async:
            await fn(arg)
            start = time.perf_counter_ns()
            for _ in iterations:
                await fn(arg)
        else:
            fn(arg)
            start = time.perf_counter_ns()
            for _ in iterations:
                fn(arg)
        elapsed = time.perf_counter_ns() - start
        self.calls += n + 1
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

    @instructor_cache(MemoryCache(maxsize=1024), ignore=ANSWER)
    def mem(text: str) -> cls:
        return model

    last_event: collections.deque[CacheEvent] = collections.deque(maxlen=1)  # a cheap hook

    @instructor_cache(MemoryCache(maxsize=1024), ignore=ANSWER, on_event=last_event.append)
    def hooked(text: str) -> cls:
        return model

    @instructor_cache(MemoryCache(maxsize=1024), ignore=ANSWER)
    async def amem(text: str) -> cls:
        return model

    @instructor_cache(disk_backend, ignore=ANSWER)
    def disk(text: str) -> cls:
        return model

    def c(name: str, fn: Callable[[str], Any], **kw: Any) -> Contender:
        return Contender(f"{label}: {name}", fn, model, **kw)

    contenders = [
        c("lru_cache (same object)", lru),
        c("cachetools + lock (same object)", ct_same),
        c(CT_VALIDATE, lambda text: cls.model_validate_json(ct_json(text))),
        c(MEMORY, mem, info=mem.cache_info),
        c(HOOKED, hooked, info=hooked.cache_info),
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


def like_redis_cache(url: str, asyncio_client: bool = False) -> Any:
    """A redis-py client made as RedisCache makes its own from a URL: its default timeouts,
    no retries, str replies. So the raw contenders differ from ours only by our work."""
    options = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25, "decode_responses": True}
    if asyncio_client:
        return redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **options)
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)


def client_options(client: Any) -> dict[str, Any]:
    kwargs = client.connection_pool.connection_kwargs
    names = ("host", "port", "db", "path", "username", "password", "retry", "decode_responses")
    return {n: kwargs.get(n) for n in (*names, "socket_timeout", "socket_connect_timeout")}


async def redis_contenders(
    label: str, model: BaseModel, url: str, prefix: str, stack: contextlib.AsyncExitStack
) -> list[Contender]:
    """instructor_cache on Redis, sync and async, and redis-py by hand on the same server.

    Called in the running loop: redis.asyncio clients belong to the loop that made them.
    """
    cls, raw_key = type(model), f"{prefix}raw:extract:{TEXT}"
    backend = RedisCache(url, prefix=prefix)  # its async client closes with the loop
    raw, araw = like_redis_cache(url), like_redis_cache(url, asyncio_client=True)
    stack.callback(backend.close)
    stack.callback(raw.close)
    stack.push_async_callback(araw.aclose)
    raw.set(raw_key, model.model_dump_json())
    for ours, theirs in ((backend.client, raw), (await backend.aclient(), araw)):
        same = client_options(ours) == client_options(theirs)
        check(same, f"{label}: redis-py clients made unlike RedisCache's: {client_options(ours)}")

    @instructor_cache(backend, ignore=ANSWER)
    def sync_hit(text: str) -> cls:
        return model

    @instructor_cache(backend, ignore=ANSWER)
    async def async_hit(text: str) -> cls:
        return model

    async def raw_async(text: str) -> BaseModel:
        return cls.model_validate_json(await araw.get(raw_key))

    def c(name: str, fn: Callable[[str], Any], **kw: Any) -> Contender:
        return Contender(f"{label}: {name}", fn, model, **kw)

    return [
        c(RAW_REDIS, lambda text: cls.model_validate_json(raw.get(raw_key))),
        c(REDIS, sync_hit, info=sync_hit.cache_info),
        c(RAW_AREDIS, raw_async, is_async=True),
        c(AREDIS, async_hit, is_async=True, info=async_hit.cache_info),
    ]


def fallback_contenders(
    label: str, model: BaseModel, url: str, dead_url: str, prefix: str
) -> tuple[list[Contender], list[Any]]:
    """A TieredCache hit that L1 serves; and a call while Redis is down, the breaker open."""
    cls = type(model)
    redis_tier = RedisCache(url, prefix=prefix)
    dead = RedisCache(dead_url)
    breaker = CircuitBreaker(failures=3, cooldown=3600)

    @instructor_cache(TieredCache(MemoryCache(maxsize=1024), redis_tier), ignore=ANSWER)
    def tiered(text: str) -> cls:
        return model

    def build(text: str) -> cls:  # the uncached work: a fresh, equal model per call
        return cls(**model.__dict__)

    down = instructor_cache(dead, circuit_breaker=breaker)(build)
    for _ in range(3):  # each fails its GET and SET: the breaker opens
        check(down(TEXT) == model, f"{label}: {DOWN} returned a wrong value")
    check(breaker.is_open, f"{label}: the breaker did not open: {down.cache_info()}")

    def c(name: str, fn: Callable[[str], Any], **kw: Any) -> Contender:
        return Contender(f"{label}: {name}", fn, model, **kw)

    contenders = [
        c(TIERED, tiered, info=tiered.cache_info, verify=all_hits_in_l1),
        c(UNCACHED, build),
        c(DOWN, down, info=down.cache_info, verify=all_skipped(breaker)),
    ]
    return contenders, [redis_tier.close, dead.close]


async def run(
    models: dict[str, BaseModel], tmp: str, urls: tuple[str, str], rounds: int, batch_ns: int
) -> list[Contender]:
    """Build every contender in the loop that times them, time them, close what they opened."""
    url, dead_url = urls
    prefix = f"instructor_cache_bench:{uuid.uuid4().hex}:"  # REDIS_URL may hold other data
    contenders: list[Contender] = []
    async with contextlib.AsyncExitStack() as stack:
        cleaner = RedisCache(url, prefix=prefix)
        stack.callback(cleaner.close)
        stack.callback(cleaner.clear)  # runs last but one: REDIS_URL may be shared
        for label, model in models.items():
            more, closers = model_contenders(label, model, tmp)
            more += await redis_contenders(label, model, url, f"{prefix}{label}:", stack)
            if label == "small":
                fallback, more_closers = fallback_contenders(
                    label, model, url, dead_url, f"{prefix}{label}:tiered:"
                )
                more += fallback
                closers += more_closers
            for close in closers:
                stack.callback(close)
            contenders += more
        extract = next(c.fn for c in contenders if c.name == f"small: {MEMORY}")
        contenders += key_contenders(extract)
        await measure(contenders, rounds, batch_ns)
    return contenders


@contextlib.contextmanager
def redis_urls(tmp: str) -> Iterator[tuple[str, str]]:
    """A live Redis (REDIS_URL, else a redis-server of our own, always stopped) and a dead one."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed
    from tests._redis import free_port, running_server

    with contextlib.ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        if not url:
            url = stack.enter_context(running_server(Path(tmp) / "redis")).url
        dead_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        check(dead_url != url, "the dead port is the live one")
        yield url, dead_url


def redis_version(url: str) -> str:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        server = client.info("server")["redis_version"]
    parser = "hiredis parser" if redis.utils.HIREDIS_AVAILABLE else "Python parser"
    return f"redis-server {server}, redis-py {importlib.metadata.version('redis')} ({parser})"


async def measure(contenders: list[Contender], rounds: int, batch_ns: int) -> None:
    for c in contenders:  # warm up: the first call is each cache's only miss
        await c.call_checked()
        await c.call_checked()
    before = {c.name: c.info() for c in contenders if c.info}
    for c in contenders:  # calibrate: one batch of each takes about batch_ns
        c.batch = max(1, round(batch_ns * 500 / max(await c.time_batch(500), 1)))
    order, shuffle = list(contenders), random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for c in order:
            c.samples.append(await c.time_batch(c.batch) / c.batch)
    for c in contenders:
        await c.call_checked()
        if c.info:  # every call after the two warm-up calls, by the cache's own counts
            c.verify(c.name, before[c.name], c.info(), c.calls - 2)


def import_once(statement: str, env: dict[str, str]) -> tuple[float, list[str]]:
    """Milliseconds ``statement`` takes in a fresh interpreter, and the heavy modules it loaded."""
    code = TIMED_IMPORT.format(statement=statement, heavy=HEAVY)
    # Our own interpreter on our own fixed code: nothing untrusted reaches the command.
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    check(done.returncode == 0, f"{statement!r} failed in a fresh interpreter: {done.stderr}")
    elapsed, *loaded = done.stdout.split()
    return int(elapsed) / 1e6, loaded


def import_times(rounds: int, tmp: str) -> tuple[dict[str, list[float]], list[str]]:
    """Milliseconds per round for each import statement, and what ``import instructor_cache`` loads.

    Interleaved in a fresh shuffled order each round, for the same reason as the hits. The
    children import the very package this process imported (the worktree's, not another
    install). Both read bytecode, as an installed package does: compiling our sources on
    every run (under ``PYTHONDONTWRITEBYTECODE``) while pydantic's wheel came with its
    bytecode once tripled our figure. So the children write and read their bytecode under
    one prefix in ``tmp``, filled by one untimed run of each.
    """
    import instructor_cache as ours

    root = str(Path(ours.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "bytecode")
    statements = [IMPORT_OURS, IMPORT_PYDANTIC]
    samples: dict[str, list[float]] = {statement: [] for statement in statements}
    _, loaded = import_once(IMPORT_OURS, env)
    import_once(IMPORT_PYDANTIC, env)
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(statements)
        for statement in statements:
            samples[statement].append(import_once(statement, env)[0])
    return samples, loaded


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


def report(
    contenders: list[Contender],
    labels: list[str],
    imports: dict[str, list[float]],
    loaded: list[str],
) -> None:
    median = {c.name: statistics.median(c.samples) / 1000 for c in contenders}
    print(f"\n{'contender':<{WIDTH}} {'median µs/call':>14} {'IQR µs':>8} {'batch':>6}")
    for c in contenders:
        q1, _, q3 = statistics.quantiles(c.samples, n=4)
        print(f"{c.name:<{WIDTH}} {median[c.name]:>14.3f} {(q3 - q1) / 1000:>8.3f} {c.batch:>6}")

    header = f"{'import, in a fresh interpreter':<{WIDTH}} {'median ms':>14} {'IQR ms':>8}"
    print(f"\n{header} {'runs':>6}")
    for statement, samples in imports.items():
        q1, _, q3 = statistics.quantiles(samples, n=4)
        shown = f"{statistics.median(samples):>14.1f} {q3 - q1:>8.1f} {len(samples):>6}"
        print(f"{statement:<{WIDTH}} {shown}")
    heavy = ", ".join(loaded) or f"none of {', '.join(HEAVY)}"
    print(f"{'import instructor_cache also loads (info)':<{WIDTH}} {heavy}")

    print(f"\n{'target':<{WIDTH}} {'value':>8} {'goal':>10}  result")
    rows = [
        (f"{label}: {what}", median[f"{label}: {num}"] / median[f"{label}: {den}"], "x", "<=", goal)
        for label in labels
        for what, num, den, goal in TARGETS
        if f"{label}: {num}" in median  # some run on the small model only
    ]
    rows.append(("key building, one str argument", median[KEY], " µs", "<", 1.0))
    ours, theirs = (statistics.median(imports[s]) for s in (IMPORT_OURS, IMPORT_PYDANTIC))
    rows.append(("import instructor_cache / pydantic's", ours / theirs, "x", "<=", IMPORT_GOAL))
    for what, value, unit, op, goal in rows:
        verdict = "PASS" if (value <= goal if op == "<=" else value < goal) else "MISS"
        shown, target = f"{value:.2f}{unit}", f"{op} {goal:g}{unit}"
        print(f"{what:<{WIDTH}} {shown:>8} {target:>10}  {verdict}")
    for label in labels:  # for information, no target
        for what, num, den in (
            ("async / sync memory hit", ASYNC, MEMORY),
            ("async / sync redis hit", AREDIS, REDIS),
            ("memory hit with / without a hook", HOOKED, MEMORY),
        ):
            ratio = median[f"{label}: {num}"] / median[f"{label}: {den}"]
            print(f"{f'{label}: {what} (info)':<{WIDTH}} {f'{ratio:.2f}x':>8}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (~10 s), rougher numbers")
    quick = parser.parse_args().quick
    rounds, batch_ns = (150, 1_000_000) if quick else (600, 3_000_000)
    import_rounds = 5 if quick else 25  # a fresh interpreter each: ~0.1-0.3 s per import

    models = {"small": UserDetail(name="Jason", age=25), "large": make_profile()}
    print(f"machine: {machine()}")
    for label, model in models.items():
        size = len(model.model_dump_json())
        print(f"model {label}: {type(model).__name__}, model_dump_json() is {size} bytes")

    tmp = tempfile.mkdtemp(prefix="instructor_cache_bench_")
    # Redis down: each call logs a rate-limited warning; keep it off the table.
    logging.getLogger("instructor_cache").addHandler(logging.NullHandler())
    try:
        with redis_urls(tmp) as urls:
            where = "REDIS_URL" if os.environ.get("REDIS_URL") else "started for this run"
            print(f"redis: {redis_version(urls[0])} at {urls[0]} ({where})")
            print(f"mode: {'quick' if quick else 'full'}, {rounds} interleaved rounds")
            started = time.perf_counter()
            contenders = asyncio.run(run(models, tmp, urls, rounds, batch_ns))
            flown = asyncio.run(flights.run(urls[0], quick))
            imports, loaded = import_times(import_rounds, tmp)
            elapsed = time.perf_counter() - started
    except CheckFailedError as exc:
        print(f"\nCORRECTNESS CHECK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(contenders, list(models), imports, loaded)
    flights.report(flown)
    print(f"\nall correctness checks passed; timing took {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
