"""One provider call per distinct input, and bulk reads on Redis (issue 12).

Three measurements, printed after run.py's table:

- A burst: 1,000 async calls over 100 distinct inputs (each 10 times, shuffled),
  launched at once with ``asyncio.gather`` on a cold cache, the function sleeping
  like a provider. For each contender, the provider calls it made and the wall
  time: instructor_cache on memory and Redis and around a real instructor client,
  async-lru, cashews (its default, which dedupes in process, without that, and
  with its lock), and instructor's own ``AutoCache`` through its client. The
  clients' HTTP is answered by an ``httpx.MockTransport`` that calls the same
  sleeping, counting provider. instructor_cache must pay exactly once per input:
  anything else fails the run.
- Batches on Redis: ``map`` of 1,000 cached items against a loop of 1,000 single
  cached calls of the same function, sync; ``amap`` against a loop of awaited
  single calls, async.
- Coalesced lookups: 1,000 concurrent cached ``await extract(x)`` against the
  same 1,000 values read by 1,000 concurrent ``redis.asyncio`` GETs (and
  validated) on a client made with RedisCache's own options, pool size included;
  the raw GETs are held to that pool's size in flight, past which redis-py
  raises ``MaxConnectionsError`` rather than wait.

Each round runs every contender once, in a fresh shuffled (seeded) order, as
run.py does, and a burst starts on a cache of its own (a fresh store, or a fresh
namespace on the shared Redis store); medians over rounds. Every result is
checked; timings are reported, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from _checks import check
from async_lru import alru_cache
from cashews import Cache
from pydantic import BaseModel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from instructor_cache import CacheInfo, MemoryCache, RedisCache, instructor_cache

WIDTH = 52  # of the name columns, as in run.py
WARM_UP = "a warm-up call"  # an input no burst asks for
TTL = 600  # seconds, for the peers that need one; no entry expires during a run


@dataclass(frozen=True)
class Sizes:
    inputs: int  # distinct inputs in the burst
    repeats: int  # calls per input
    delay: float  # seconds the provider takes per request
    burst_rounds: int
    items: int  # cached items in the batch and coalescing runs
    batch_rounds: int


FULL = Sizes(inputs=100, repeats=10, delay=0.05, burst_rounds=3, items=1000, batch_rounds=15)
QUICK = Sizes(inputs=10, repeats=5, delay=0.02, burst_rounds=1, items=200, batch_rounds=1)

MAP_GOAL, COALESCE_GOAL = 20.0, 5.0  # throughput ratios, ours over theirs


class UserDetail(BaseModel):
    name: str
    age: int


def answer(text: str) -> UserDetail:
    """What the provider extracts from ``text``: a different model for each input."""
    return UserDetail(name=text, age=len(text))


def same_answer(result: Any, text: str) -> bool:
    """The right fields for ``text``. instructor returns its own subclass, so not by type."""
    return isinstance(result, UserDetail) and result.model_dump() == answer(text).model_dump()


class Provider:
    """A provider that takes ``delay`` seconds to answer each request, and counts them."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    async def __call__(self, text: str) -> UserDetail:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return answer(text)


AsyncCall = Callable[[str], Awaitable[Any]]
Maker = Callable[[Provider, int], contextlib.AbstractAsyncContextManager[AsyncCall]]


@dataclass
class Burst:
    """A contender of the burst: made cold for each round by ``make(provider, round)``."""

    name: str
    make: Maker
    ours: bool = False  # instructor_cache: must pay exactly once per distinct input
    calls: list[int] = field(default_factory=list)  # provider calls, one per round
    walls: list[float] = field(default_factory=list)  # seconds, one per round


def instructor_client(provider: Provider) -> tuple[Any, Any]:
    """A real async instructor + openai client whose requests the provider answers; its HTTP."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed
    import instructor
    import openai

    from tests._openai import httpx, tool_call_completion

    async def respond(request: Any) -> Any:
        body = json.loads(request.content)
        detail = await provider(body["messages"][-1]["content"])
        return tool_call_completion(body["model"], "UserDetail", detail.model_dump_json())

    http = httpx.AsyncClient(transport=httpx.MockTransport(respond))
    client = instructor.from_openai(openai.AsyncOpenAI(api_key="benchmark", http_client=http))
    return client, http


async def create(client: Any, text: str, **options: Any) -> UserDetail:
    """The extraction call through an instructor client, as an application makes it."""
    result: UserDetail = await client.chat.completions.create(
        model="gpt-4o-mini",
        response_model=UserDetail,
        messages=[{"role": "user", "content": text}],
        **options,
    )
    return result


LOCK_ONLY = {"protected": False, "lock": True}  # cashews' lock alone, its in-process dedupe off


def burst_contenders(redis_store: RedisCache) -> list[Burst]:
    """Every way to make 1,000 calls over 100 inputs; each a context that makes it cold."""

    @contextlib.asynccontextmanager
    async def uncached(provider: Provider, _: int) -> AsyncIterator[AsyncCall]:
        yield provider

    @contextlib.asynccontextmanager
    async def ours_memory(provider: Provider, _: int) -> AsyncIterator[AsyncCall]:
        @instructor_cache(MemoryCache(), ignore=("provider",))
        async def extract(text: str) -> UserDetail:
            return await provider(text)

        yield extract

    @contextlib.asynccontextmanager
    async def ours_redis(provider: Provider, round_: int) -> AsyncIterator[AsyncCall]:
        # One store for every round (its connections warm), a namespace of its own per round.
        @instructor_cache(redis_store, namespace=f"burst-{round_}", ignore=("provider",))
        async def extract(text: str) -> UserDetail:
            return await provider(text)

        yield extract

    @contextlib.asynccontextmanager
    async def ours_client(provider: Provider, _: int) -> AsyncIterator[AsyncCall]:
        client, http = instructor_client(provider)

        @instructor_cache(MemoryCache(), ignore=("client",))
        async def extract(text: str) -> UserDetail:
            return await create(client, text)

        yield extract
        await http.aclose()

    @contextlib.asynccontextmanager
    async def async_lru(provider: Provider, _: int) -> AsyncIterator[AsyncCall]:
        @alru_cache(maxsize=None)
        async def extract(text: str) -> UserDetail:
            return await provider(text)

        yield extract

    def cashews(**options: Any) -> Maker:
        @contextlib.asynccontextmanager
        async def make(provider: Provider, _: int) -> AsyncIterator[AsyncCall]:
            cache = Cache()
            cache.setup("mem://")

            @cache(ttl=TTL, **options)
            async def extract(text: str) -> UserDetail:
                return await provider(text)

            yield extract
            await cache.close()

        return make

    @contextlib.asynccontextmanager
    async def auto_cache(provider: Provider, _: int) -> AsyncIterator[AsyncCall]:
        from instructor.cache import AutoCache

        client, http = instructor_client(provider)
        cache = AutoCache(maxsize=10_000)
        yield lambda text: create(client, text, cache=cache)
        await http.aclose()

    return [
        Burst("no cache (each call pays; for scale)", uncached),
        Burst("instructor_cache, MemoryCache", ours_memory, ours=True),
        Burst("instructor_cache, RedisCache", ours_redis, ours=True),
        Burst("instructor_cache around an instructor client", ours_client, ours=True),
        Burst("async-lru alru_cache", async_lru),
        Burst("cashews @cache(ttl), mem:// (protected: default)", cashews()),
        Burst("cashews @cache(ttl, protected=False)", cashews(protected=False)),
        Burst("cashews @cache(ttl, protected=False, lock=True)", cashews(**LOCK_ONLY)),
        Burst("instructor AutoCache, cache= on its client", auto_cache),
    ]


async def run_bursts(bursts: list[Burst], sizes: Sizes) -> None:
    """Each round, every contender on a cold cache, in a fresh shuffled order.

    Each burst follows one untimed call with an input of its own: what a
    function pays once in a process (imports, its code's fingerprint, a first
    connection) is not what a burst costs; the burst's inputs are still cold.
    """
    texts = [f"{i} is a person" for i in range(sizes.inputs)] * sizes.repeats
    shuffle = random.Random(0).shuffle
    order = list(bursts)
    for round_ in range(sizes.burst_rounds):
        shuffle(order)
        for burst in order:
            shuffle(texts)
            provider = Provider(sizes.delay)
            async with burst.make(provider, round_) as extract:
                check(same_answer(await extract(WARM_UP), WARM_UP), f"burst: {burst.name}: warm-up")
                provider.calls = 0
                start = time.perf_counter()
                results = await asyncio.gather(*map(extract, texts), return_exceptions=True)
                burst.walls.append(time.perf_counter() - start)
            burst.calls.append(provider.calls)
            failed = [r for r in results if isinstance(r, Exception)]
            check(not failed, f"burst: {burst.name}: {len(failed)} failed, first {failed[:1]}")
            wrong = sum(not same_answer(r, t) for r, t in zip(results, texts, strict=True))
            check(wrong == 0, f"burst: {burst.name}: {wrong} wrong results")
            if burst.ours:
                paid = f"{provider.calls} provider calls for {sizes.inputs} inputs"
                check(provider.calls == sizes.inputs, f"burst: {burst.name}: {paid}")


@dataclass
class Timed:
    """One way to get the cached items' values: timed whole, once per round."""

    name: str
    run: Callable[[], Awaitable[list[Any]]]
    info: Callable[[], CacheInfo] | None = None  # instructor_cache's, to prove all hits
    samples: list[float] = field(default_factory=list)  # seconds, one per round


SYNC_LOOP, SYNC_MAP = "sync: a loop of single calls", "sync: extract.map(items)"
ASYNC_LOOP, ASYNC_MAP = "async: a loop of awaited single calls", "async: await extract.amap(items)"
COALESCED = "async: gather of single calls (coalesced)"
RAW_GATHER = "async: gather of redis.asyncio GET + validate_json"
# (what, slower, faster, goal): the throughput of ``faster`` over that of ``slower``
RATIOS = (
    ("map / loop of single calls, sync", SYNC_LOOP, SYNC_MAP, MAP_GOAL),
    ("amap / loop of awaited single calls, async", ASYNC_LOOP, ASYNC_MAP, MAP_GOAL),
    ("coalesced gather / raw redis.asyncio gather", RAW_GATHER, COALESCED, COALESCE_GOAL),
)


def pool_options(client: Any) -> dict[str, Any]:
    """What makes two redis-py clients alike, the pool's size included."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    names = ("host", "port", "db", "username", "password", "decode_responses")
    return {
        **{name: kwargs.get(name) for name in names},
        "socket_timeout": kwargs.get("socket_timeout"),
        "socket_connect_timeout": kwargs.get("socket_connect_timeout"),
        "retries": kwargs["retry"].get_retries(),
        "max_connections": pool.max_connections,
    }


async def fill(pool: Any) -> None:
    """Open all of a pool's connections, a few at a time, untimed.

    A burst would open them all at once: on a busy machine some connects
    then outlast RedisCache's 0.25 s connect timeout, which fails a raw GET
    and turns one of ours into a miss. A burst is timed on open connections.
    """
    connections = []
    while len(connections) < pool.max_connections:
        few = min(8, pool.max_connections - len(connections))
        connections += await asyncio.gather(*(pool.get_connection() for _ in range(few)))
    for connection in connections:
        await pool.release(connection)


async def batch_contenders(
    store: RedisCache, url: str, prefix: str, items: list[str], stack: contextlib.AsyncExitStack
) -> list[Timed]:
    """The same cached items read in bulk, one by one, coalesced, and by raw GETs.

    Called in the running loop: redis.asyncio clients belong to the loop that made them.
    """
    unexpected = Provider(0)  # every item is cached before timing: nothing may reach it

    @instructor_cache(store, ignore=("unexpected",))
    def extract(text: str) -> UserDetail:
        unexpected.calls += 1
        return answer(text)

    @instructor_cache(store, ignore=("unexpected",))
    async def aextract(text: str) -> UserDetail:
        return await unexpected(text)

    counts = extract.warm(items), await aextract.awarm(items)
    check(all(c == (0, len(items), 0) for c in counts), f"batches: warming counted {counts}")
    unexpected.calls = 0

    ours = await store.aclient()
    options = {k: v for k, v in ours.connection_pool.connection_kwargs.items() if k != "retry"}
    raw = redis.asyncio.Redis.from_url(
        url,
        retry=AsyncRetry(NoBackoff(), 0),
        max_connections=ours.connection_pool.max_connections,
        **{k: options[k] for k in ("socket_timeout", "socket_connect_timeout", "decode_responses")},
    )
    stack.push_async_callback(raw.aclose)
    same = pool_options(ours) == pool_options(raw)
    check(same, f"batches: raw client made unlike RedisCache's: {pool_options(ours)}")
    for client in (ours, raw):
        await fill(client.connection_pool)
    raw_keys = [f"{prefix}raw:{item}" for item in items]
    values = [answer(item).model_dump_json() for item in items]
    await raw.mset(dict(zip(raw_keys, values, strict=True)))
    in_flight = asyncio.Semaphore(ours.connection_pool.max_connections)

    async def raw_get(key: str) -> UserDetail:
        async with in_flight:
            value = await raw.get(key)
        return UserDetail.model_validate_json(value)

    async def sync_loop() -> list[Any]:
        return [extract(item) for item in items]

    async def sync_map() -> list[Any]:
        return list(extract.map(items))

    async def async_loop() -> list[Any]:
        return [await aextract(item) for item in items]

    async def async_map() -> list[Any]:
        return list(await aextract.amap(items))

    async def coalesced() -> list[Any]:
        return list(await asyncio.gather(*(aextract(item) for item in items)))

    async def raw_gather() -> list[Any]:
        return list(await asyncio.gather(*map(raw_get, raw_keys), return_exceptions=True))

    def untouched(fn: Any) -> Callable[[], CacheInfo]:
        """``fn.cache_info()``, once the function is seen never to have run."""

        def info() -> CacheInfo:
            check(unexpected.calls == 0, f"batches: the function ran {unexpected.calls} times")
            info: CacheInfo = fn.cache_info()
            return info

        return info

    return [
        Timed(SYNC_LOOP, sync_loop, untouched(extract)),
        Timed(SYNC_MAP, sync_map, untouched(extract)),
        Timed(ASYNC_LOOP, async_loop, untouched(aextract)),
        Timed(ASYNC_MAP, async_map, untouched(aextract)),
        Timed(COALESCED, coalesced, untouched(aextract)),
        Timed(RAW_GATHER, raw_gather),
    ]


async def run_timed(timed: list[Timed], items: list[str], rounds: int, wake: Any) -> None:
    """One untimed pass of each (first calls warm), then rounds in a fresh shuffled order.

    Each run starts with one untimed PING, so that none pays for waking a server
    left idle by the contender before it (see run.py).
    """
    expected = [answer(item) for item in items]
    order, shuffle = list(timed), random.Random(1).shuffle
    for pass_ in range(rounds + 1):
        shuffle(order)
        for t in order:
            before = t.info() if t.info else None
            await wake.ping()
            start = time.perf_counter()
            results = await t.run()
            elapsed = time.perf_counter() - start
            if pass_:
                t.samples.append(elapsed)
            failed = [r for r in results if isinstance(r, Exception)]
            check(not failed, f"batches: {t.name}: {len(failed)} failed, first {failed[:1]}")
            check(results == expected, f"batches: {t.name}: wrong results")
            if t.info and before is not None:
                after = t.info()
                hits, misses = after.hits - before.hits, after.misses - before.misses
                check(misses == 0 and after.errors == 0, f"batches: {t.name}: {after}")
                check(hits == len(items), f"batches: {t.name}: {hits} hits for {len(items)}")


@dataclass
class Flights:
    sizes: Sizes
    bursts: list[Burst]
    timed: list[Timed]


async def run(url: str, quick: bool) -> Flights:
    """Build every contender in the loop that runs them, run them, close what they opened."""
    sizes = QUICK if quick else FULL
    prefix = f"instructor_cache_bench:{uuid.uuid4().hex}:flights:"  # REDIS_URL may be shared
    items = [f"{i} is a cached person" for i in range(sizes.items)]
    async with contextlib.AsyncExitStack() as stack:
        store = RedisCache(url, prefix=prefix)
        stack.callback(store.close)
        stack.callback(store.clear)  # runs last but one: REDIS_URL may be shared
        wake = redis.asyncio.Redis.from_url(url)
        stack.push_async_callback(wake.aclose)
        stack.push_async_callback(store.aclose)
        bursts = burst_contenders(store)
        await run_bursts(bursts, sizes)
        timed = await batch_contenders(store, url, prefix, items, stack)
        await run_timed(timed, items, sizes.batch_rounds, wake)
    return Flights(sizes, bursts, timed)


def medians(rounds: int) -> str:
    return f"medians of {rounds} rounds" if rounds > 1 else "one round (rough)"


def report(flights: Flights) -> None:
    sizes, calls = flights.sizes, flights.sizes.inputs * flights.sizes.repeats
    print(
        f"\nburst: {calls:,} concurrent async calls over {sizes.inputs} inputs (each "
        f"{sizes.repeats} times, shuffled), cold cache, provider {sizes.delay * 1000:g} ms; "
        f"{medians(sizes.burst_rounds)}"
    )
    print(f"{'contender':<{WIDTH}} {'provider calls':>14} {'wall ms':>8}")
    for b in flights.bursts:
        low, high = min(b.calls), max(b.calls)
        paid = f"{low}" if low == high else f"{low}-{high}"
        print(f"{b.name:<{WIDTH}} {paid:>14} {statistics.median(b.walls) * 1000:>8.0f}")

    median = {t.name: statistics.median(t.samples) for t in flights.timed}
    rounds = sizes.batch_rounds
    print(f"\nRedis, {sizes.items:,} cached items, all hits; {medians(rounds)}")
    print(f"{'contender':<{WIDTH}} {'median ms':>14} {'IQR ms':>8} {'items/s':>10}")
    for t in flights.timed:
        q1, _, q3 = statistics.quantiles(t.samples, n=4) if len(t.samples) > 1 else (0, 0, 0)
        rate = sizes.items / median[t.name]
        shown = f"{median[t.name] * 1000:>14.2f} {(q3 - q1) * 1000:>8.2f} {rate:>10,.0f}"
        print(f"{t.name:<{WIDTH}} {shown}")

    print(f"\n{'target':<{WIDTH}} {'value':>8} {'goal':>10}  result")
    paid = max(max(b.calls) for b in flights.bursts if b.ours)  # checked: each is exact
    what, exact = "burst: instructor_cache provider calls, each way", f"== {sizes.inputs}"
    print(f"{what:<{WIDTH}} {paid:>8} {exact:>10}  PASS")
    for what, slower, faster, goal in RATIOS:
        ratio = median[slower] / median[faster]
        verdict = "PASS" if ratio >= goal else "MISS"
        print(f"{what:<{WIDTH}} {f'{ratio:.1f}x':>8} {f'>= {goal:g}x':>10}  {verdict}")
