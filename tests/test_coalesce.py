"""Concurrent async cached calls on Redis coalesce their reads: a burst costs a few round trips.

Round trips and key lookups are counted by the real server (``INFO stats``:
``total_reads_processed``, ``keyspace_hits``; ``INFO commandstats``), summed
over the nodes of a cluster, on one connection of the test's own per node.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster

from instructor_cache import CircuitBreaker, MemoryCache, RedisCache, TieredCache, instructor_cache
from instructor_cache._stats import Stats
from instructor_cache.backends._coalesce import MAX_BATCH, Coalescer
from instructor_cache.backends._compose import compose
from instructor_cache.errors import CorruptEntryError
from tests._fakes import FakeLLM, UserDetail
from tests._redis import RedisServer
from tests._stores import AsyncDictStore

ROUND_TRIPS = 50  # what a burst of 1,000 cached calls may cost at most


class Server:
    """Counters of the real server (all primaries of a cluster), read on connections of our own."""

    def __init__(self, url: str, *, cluster: bool = False) -> None:
        if cluster:
            with redis.cluster.RedisCluster.from_url(url) as client:
                urls = [f"redis://{node.host}:{node.port}/0" for node in client.get_primaries()]
        else:
            urls = [url]
        self._clients = [redis.Redis.from_url(node) for node in urls]

    def stat(self, name: str) -> int:
        """An ``INFO stats`` counter, summed, not counting the reads of asking for it."""
        total = sum(int(client.info("stats")[name]) for client in self._clients)
        return total - (len(self._clients) if name == "total_reads_processed" else 0)

    def round_trips(self) -> int:
        return self.stat("total_reads_processed")

    def calls(self, *commands: str) -> int:
        """How many times ``commands`` ran, summed (``INFO commandstats``)."""
        total = 0
        for client in self._clients:
            stats = client.info("commandstats")
            total += sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)
        return total

    def close(self) -> None:
        for client in self._clients:
            client.close()


class Made:
    """The stores and server counters one test made, closed after it."""

    def __init__(self, redis_url: str, request: pytest.FixtureRequest) -> None:
        self._redis_url, self._request = redis_url, request
        self.stores: list[RedisCache] = []
        self.servers: list[Server] = []

    def cache(self, kind: str = "redis", url: str | None = None, **options: Any) -> RedisCache:
        cluster = kind == "cluster"
        if url is None:
            url = self._request.getfixturevalue("redis_cluster_url") if cluster else self._redis_url
        store = RedisCache(url, prefix=f"coalesce:{uuid.uuid4().hex}:", cluster=cluster, **options)
        self.stores.append(store)
        return store

    def server(self, store: RedisCache) -> Server:
        url = self._request.getfixturevalue("redis_cluster_url") if store._cluster else None
        server = Server(url or self._redis_url, cluster=store._cluster)
        self.servers.append(server)
        return server


@pytest.fixture
def made(redis_url: str, request: pytest.FixtureRequest) -> Iterator[Made]:
    made = Made(redis_url, request)
    yield made
    for store in made.stores:
        store.clear()
        store.close()
    for server in made.servers:
        server.close()


def texts(count: int) -> list[str]:
    return [f"P{i} is {i % 90}" for i in range(count)]


def expected(text: str) -> UserDetail:
    name, _, age = text.partition(" is ")
    return UserDetail(name=name, age=int(age))


def decorated(store: Any, llm: FakeLLM, **options: Any) -> Any:
    @instructor_cache(store, ignore=("llm",), **options)
    async def extract(text: str) -> UserDetail:
        return llm(text)

    return extract


async def burst(extract: Any, asked: list[str]) -> list[Any]:
    return list(await asyncio.gather(*(extract(text) for text in asked)))


async def warm(extract: Any, asked: list[str]) -> None:
    """Store the entries one call at a time: what is measured is the reads of a burst."""
    for text in asked:
        await extract(text)


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_a_thousand_concurrent_cached_calls_cost_a_handful_of_round_trips(
    made: Made, llm: FakeLLM, kind: str
) -> None:
    """1,000 concurrent cached calls are served by a few bulk reads, not 1,000 GETs."""
    store = made.cache(kind)
    server = made.server(store)
    extract = decorated(store, llm)
    asked = texts(1000)

    async def scenario() -> int:
        await warm(extract, asked)
        before = server.round_trips()
        assert await burst(extract, asked) == [expected(text) for text in asked]
        return server.round_trips() - before

    round_trips = asyncio.run(scenario())
    assert len(llm.calls) == len(asked)  # the second burst paid nothing
    assert extract.cache_info().hits == len(asked)
    assert round_trips < ROUND_TRIPS


def test_a_burst_behind_an_empty_memory_tier_is_coalesced_and_backfilled(
    made: Made, llm: FakeLLM
) -> None:
    """Redis under an empty memory tier is read in a few round trips, and memory then serves."""
    redis_tier, memory = made.cache(), MemoryCache(maxsize=2000)
    server = made.server(redis_tier)
    extract = decorated(TieredCache(memory, redis_tier), llm)
    asked = texts(1000)

    async def scenario() -> list[tuple[int, int]]:
        await warm(extract, asked)
        memory.clear()
        spent = []
        for _ in range(2):
            before = server.round_trips(), server.calls("get", "mget", "pttl")
            assert await burst(extract, asked) == [expected(text) for text in asked]
            after = server.round_trips(), server.calls("get", "mget", "pttl")
            spent.append((after[0] - before[0], after[1] - before[1]))
        return spent

    (from_redis, _), (_, lookups_after) = asyncio.run(scenario())
    assert len(llm.calls) == len(asked)
    assert from_redis < ROUND_TRIPS
    assert lookups_after == 0  # the first burst copied every entry up: memory served all
    memory_tier, lower_tier = extract.cache_info().tiers
    assert (memory_tier.hits, lower_tier.hits) == (len(asked), len(asked))


def test_a_key_asked_for_many_times_in_one_tick_is_read_once(made: Made, llm: FakeLLM) -> None:
    """1,000 concurrent calls over 10 inputs look up 10 keys on the server."""
    store = made.cache()
    server = made.server(store)
    extract = decorated(store, llm)
    distinct = texts(10)
    asked = [distinct[i % 10] for i in range(1000)]

    async def scenario() -> int:
        await warm(extract, distinct)
        before = server.stat("keyspace_hits")
        assert await burst(extract, asked) == [expected(text) for text in asked]
        return server.stat("keyspace_hits") - before

    assert asyncio.run(scenario()) == len(distinct)
    assert len(llm.calls) == len(distinct)


def test_a_huge_burst_is_read_in_a_few_bounded_bulk_reads(made: Made, llm: FakeLLM) -> None:
    """2,500 distinct concurrent calls: the first reads at once, the rest in MGETs of MAX_BATCH."""
    store = made.cache()
    server = made.server(store)
    extract = decorated(store, llm)
    asked = texts(2500)

    async def scenario() -> tuple[int, int]:
        await warm(extract, asked)
        gets, mgets = server.calls("get"), server.calls("mget")
        assert await burst(extract, asked) == [expected(text) for text in asked]
        return server.calls("get") - gets, server.calls("mget") - mgets

    assert asyncio.run(scenario()) == (1, -(-(len(asked) - 1) // MAX_BATCH))
    assert len(llm.calls) == len(asked)


def test_a_lone_call_is_one_read(made: Made, llm: FakeLLM) -> None:
    """A call alone in its tick is served, with one GET or MGET."""
    store = made.cache()
    server = made.server(store)
    extract = decorated(store, llm)

    async def scenario() -> int:
        await extract("Lone is 7")
        before = server.calls("get", "mget")
        assert await extract("Lone is 7") == UserDetail(name="Lone", age=7)
        return server.calls("get", "mget") - before

    assert asyncio.run(scenario()) == 1
    assert len(llm.calls) == 1


def test_two_event_loops_in_two_threads_never_share_a_batch(made: Made, llm: FakeLLM) -> None:
    """Two loops bursting on one function at once each get their own answers, coalesced."""
    store = made.cache()
    server = made.server(store)
    extract = decorated(store, llm)
    asked = texts(1000)
    halves = [asked[::2], asked[1::2]]
    asyncio.run(warm(extract, asked))
    start = threading.Barrier(2)
    results: dict[int, list[Any]] = {}

    def in_a_loop_of_its_own(half: int) -> None:
        async def scenario() -> list[Any]:
            start.wait()
            return await burst(extract, halves[half])

        results[half] = asyncio.run(scenario())

    before = server.round_trips()
    threads = [threading.Thread(target=in_a_loop_of_its_own, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    round_trips = server.round_trips() - before
    for half, asked_here in enumerate(halves):
        assert results[half] == [expected(text) for text in asked_here]
    assert len(llm.calls) == len(asked)
    assert round_trips < 2 * ROUND_TRIPS


def test_waiters_cancelled_while_waiting_leave_the_others_served(made: Made, llm: FakeLLM) -> None:
    """Cancelling half the callers, one of each key's two, leaves the other half their answers."""
    store = made.cache()
    server = made.server(store)
    extract = decorated(store, llm)
    distinct = texts(500)
    asked = [text for text in distinct for _ in range(2)]

    async def scenario() -> tuple[list[Any], int]:
        await warm(extract, distinct)
        before = server.round_trips()
        tasks = [asyncio.ensure_future(extract(text)) for text in asked]
        await asyncio.sleep(0)  # every caller has joined the batch, whose read starts next
        for task in tasks[::2]:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        return outcomes, server.round_trips() - before

    outcomes, round_trips = asyncio.run(scenario())
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes[::2])
    assert outcomes[1::2] == [expected(text) for text in distinct]
    assert len(llm.calls) == len(distinct)
    assert round_trips < ROUND_TRIPS


def test_a_burst_beyond_a_small_pool_is_served_in_full(made: Made, llm: FakeLLM) -> None:
    """1,000 concurrent cached calls on a 10-connection pool: all served, none raises."""
    store = made.cache(max_connections=10)
    server = made.server(store)
    extract = decorated(store, llm)
    asked = texts(1000)

    async def scenario() -> tuple[list[Any], int]:
        await warm(extract, asked)
        before = server.round_trips()
        outcomes = await asyncio.gather(*(extract(t) for t in asked), return_exceptions=True)
        return outcomes, server.round_trips() - before

    outcomes, round_trips = asyncio.run(scenario())
    assert outcomes == [expected(text) for text in asked]
    assert len(llm.calls) == len(asked)
    assert extract.cache_info().errors == 0
    assert round_trips < ROUND_TRIPS


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, which it may pause or stop."""
    server = RedisServer(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.parametrize("fault", ["paused", "stopped"])
def test_a_burst_on_a_failed_redis_falls_back_feeding_the_breaker_once(
    own_server: RedisServer, made: Made, fault: str
) -> None:
    """Every call of a burst on a stalled or dead Redis runs the function; the batch failed once.

    The first call reads at once (a failure, and its write another); the 499
    that came while it was in flight share one bulk read, one failure more.
    """
    store = made.cache(url=own_server.url)
    breaker = CircuitBreaker(failures=10**6, cooldown=60)  # never skips: every read is tried
    failures_seen: list[int] = []

    # single_flight=False: each leader's lock attempt would feed the breaker too;
    # this test counts the reads' failures alone.
    @instructor_cache(
        store,
        ignore=("breaker", "failures_seen"),
        circuit_breaker=breaker,
        single_flight=False,
    )
    async def extract(text: str) -> UserDetail:
        failures_seen.append(breaker.consecutive)  # the read's failures, before any write's
        return expected(text)

    asked = texts(500)

    async def scenario() -> float:
        await warm(extract, asked)
        (own_server.pause if fault == "paused" else own_server.stop)()
        started = time.monotonic()
        assert await burst(extract, asked) == [expected(text) for text in asked]
        return time.monotonic() - started

    try:
        elapsed = asyncio.run(scenario())
    finally:
        if fault == "paused":
            own_server.resume()
        else:
            own_server.start()
    first, *batched = failures_seen[len(asked) :]
    assert first == 1
    assert batched == [batched[0]] * (len(asked) - 1)  # one failed bulk read, fed once for all
    assert batched[0] <= first + 2  # the first call's failed write, then the bulk read
    assert elapsed < 10  # a timeout or two, not one per call


def test_memory_reads_stay_inline(llm: FakeLLM) -> None:
    """A cached call on a memory store completes without yielding to the loop: no batch tick."""
    extract = decorated(MemoryCache(), llm)
    asyncio.run(extract("Inline is 1"))
    call = extract("Inline is 1")
    with pytest.raises(StopIteration) as done:
        call.send(None)
    assert done.value.value == UserDetail(name="Inline", age=1)


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_bulk_reads_with_ttl_answer_as_single_reads_in_key_order(made: Made, kind: str) -> None:
    """get_many_with_ttl and its async twin tell each key's text and remaining TTL, in order."""
    store = made.cache(kind)
    store.set("k", "v", ttl=60.0)
    store.set("forever", "w")
    keys = [*(f"absent{i}" for i in range(3)), "forever", "k", "forever"]

    async def scenario() -> list[tuple[str, float | None] | None]:
        return await store.aget_many_with_ttl(keys)

    for answers in (store.get_many_with_ttl(keys), asyncio.run(scenario())):
        *absent, forever, found, again = answers
        assert (absent, forever, again) == ([None] * 3, ("w", None), ("w", None))
        assert found is not None
        assert found[0] == "v"
        assert found[1] is not None
        assert 50.0 < found[1] <= 60.0
    assert store.get_many_with_ttl([]) == []


class RefusingBulkStore(AsyncDictStore):
    """A user's store with native bulk reads that refuses a planted entry, as DiskCache does."""

    PLANTED = "not text this library wrote"

    def __init__(self) -> None:
        super().__init__()
        self.bulk_reads = 0

    def get(self, key: str) -> str | None:
        text = super().get(key)
        if text == self.PLANTED:
            raise CorruptEntryError(f"refused the entry under {key!r}")
        return text

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return [self.get(key) for key in keys]

    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        for key, value in items.items():
            self.set(key, value, ttl)

    async def aget(self, key: str) -> str | None:
        await asyncio.sleep(0)  # a round trip: other calls start meanwhile, and are batched
        return self.get(key)

    async def aget_many(self, keys: Sequence[str]) -> list[str | None]:
        self.bulk_reads += 1
        return self.get_many(keys)

    async def aset_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        self.set_many(items, ttl)


def test_a_corrupt_entry_in_a_coalesced_read_is_deleted_and_the_others_served(
    llm: FakeLLM,
) -> None:
    """A bulk read refused for one bad entry: that entry is replaced, every other one is served."""
    store = RefusingBulkStore()
    extract = decorated(store, llm)
    asked = texts(20)
    asyncio.run(warm(extract, asked))
    store.data[extract.cache_key(asked[7])] = RefusingBulkStore.PLANTED
    reads_before, errors_before = store.bulk_reads, extract.cache_info().errors
    assert asyncio.run(burst(extract, asked)) == [expected(text) for text in asked]
    assert llm.calls[len(asked) :] == [(asked[7],)]  # only the refused entry was paid again
    assert store.data[extract.cache_key(asked[7])] != RefusingBulkStore.PLANTED
    assert store.bulk_reads == reads_before + 1  # one coalesced read found it
    assert extract.cache_info().errors == errors_before + 1  # the bad entry, counted once


def test_a_bulk_read_cancelled_leaves_no_caller_waiting() -> None:
    """Callers whose batch's read was cancelled get a miss, and the next read is answered."""
    store = MemoryCache()
    store.set("a", "1")

    async def scenario() -> tuple[list[str | None], str | None]:
        first_read, bulk_read = asyncio.Event(), asyncio.Event()

        async def read_one(key: str) -> str | None:
            await first_read.wait()
            return await store.aget(key)

        async def read_many(keys: Sequence[str]) -> list[str | None]:
            await bulk_read.wait()
            return await store.aget_many(keys)

        coalescer: Coalescer[str | None] = Coalescer(read_one, read_many, None)
        first = asyncio.ensure_future(coalescer.read("a"))  # read at once
        await asyncio.sleep(0)
        callers = [asyncio.ensure_future(coalescer.read(key)) for key in ("a", "b", "c")]
        await asyncio.sleep(0)  # "a" waits on the first read; "b" and "c" joined the batch
        first_read.set()
        assert await first == "1"  # its end started the batch's read, which now waits
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and task not in (first, *callers):
                task.cancel()
        answers = await asyncio.wait_for(asyncio.gather(*callers), timeout=10)
        bulk_read.set()
        return answers, await asyncio.wait_for(coalescer.read("a"), timeout=10)

    assert asyncio.run(scenario()) == (["1", None, None], "1")


def test_a_lone_read_is_sent_at_once_without_a_tick() -> None:
    """With nothing in flight a read goes out at once: an inline answer returns with no yield."""
    store = MemoryCache()
    store.set("a", "1")

    async def scenario() -> str | None:
        coalescer: Coalescer[str | None] = Coalescer(store.aget, store.aget_many, None)
        read = coalescer.read("a")
        with pytest.raises(StopIteration) as done:
            read.send(None)
        return done.value.value  # type: ignore[no-any-return]

    assert asyncio.run(scenario()) == "1"


def test_a_recheck_reads_the_store_itself_not_a_coalesced_read_begun_before() -> None:
    """A recheck after taking the lock must see a write made after a read of its key began."""

    class ReadThenAnswer(RefusingBulkStore):
        async def aget(self, key: str) -> str | None:
            text = self.get(key)  # what the server read...
            await asyncio.sleep(0)  # ...is answered a round trip later
            return text

    store = ReadThenAnswer()
    guard = compose(store, Stats(), "extract")

    async def scenario() -> str | None:
        first = asyncio.ensure_future(guard.aget("k"))  # in flight: the entry is not there yet
        await asyncio.sleep(0)
        store.data["k"] = "v"  # another process stores it, then lets its lock go
        recheck = await guard.arecheck("k")
        await first
        return recheck

    assert asyncio.run(scenario()) == "v"
