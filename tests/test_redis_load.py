"""Under load, every cached entry is served; a slow or dead Redis still costs bounded time."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from instructor_cache import RedisCache, instructor_cache
from tests._redis import RedisServer, SlowLink
from tests.conftest import FakeLLM, UserDetail

# A call that falls back pays at most two command timeouts of 0.25 s (GET, then SET).
BOUND = 1.5


@pytest.fixture
def make_cache(redis_url: str) -> Iterator[Callable[..., RedisCache]]:
    """RedisCaches under a prefix of the test's own, cleared and closed after it."""
    made: list[RedisCache] = []

    def make(url: str = redis_url, **options: Any) -> RedisCache:
        backend = RedisCache(url, prefix=f"load:{uuid.uuid4().hex}:", **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.clear()
        backend.close()


def texts(count: int) -> list[str]:
    return [f"P{i} is {i % 90}" for i in range(count)]


def expected(text: str) -> UserDetail:
    name, _, age = text.partition(" is ")
    return UserDetail(name=name, age=int(age))


async def warm_then_hit_all_at_once(backend: RedisCache, llm: FakeLLM, calls: int) -> None:
    """Cache 1,000 entries one by one, then ask for them ``calls`` times concurrently."""

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    distinct = texts(1000)
    for text in distinct:
        await extract(text)
    paid = len(llm.calls)
    asked = [distinct[i % len(distinct)] for i in range(calls)]
    results = await asyncio.gather(*(extract(text) for text in asked))
    assert results == [expected(text) for text in asked]
    assert len(llm.calls) == paid  # not one paid call: every entry was served
    assert extract.cache_info().hits == calls


@pytest.mark.parametrize("calls", [1_000, 10_000])
def test_concurrent_async_hits_beyond_the_pool_are_all_served(
    make_cache: Callable[..., RedisCache], llm: FakeLLM, calls: int
) -> None:
    """Thousands of concurrent async hits on one loop wait for a connection instead of missing."""
    asyncio.run(warm_then_hit_all_at_once(make_cache(), llm, calls))


def test_concurrent_async_hits_on_a_cluster_are_all_served(
    redis_cluster_url: str, make_cache: Callable[..., RedisCache], llm: FakeLLM
) -> None:
    """The cluster client's per-node connection limit does not turn hits into misses."""
    asyncio.run(warm_then_hit_all_at_once(make_cache(redis_cluster_url, cluster=True), llm, 1000))


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "cluster"])
def test_many_threads_hitting_at_once_are_all_served(
    make_cache: Callable[..., RedisCache],
    redis_cluster_url: str,
    llm: FakeLLM,
    cluster: bool,
) -> None:
    """400 threads sharing the sync client, all hitting at once, are all served from the cache."""
    backend = make_cache(redis_cluster_url, cluster=True) if cluster else make_cache()

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    distinct = texts(400)  # a cluster's three masters see over 100 each
    for text in distinct:
        extract(text)
    paid = len(llm.calls)
    start = threading.Barrier(400)

    def hit(text: str) -> list[UserDetail]:
        start.wait()
        return [extract(text) for _ in range(5)]

    with ThreadPoolExecutor(400) as pool:
        results = list(pool.map(hit, distinct))
    assert results == [[expected(text)] * 5 for text in distinct]
    assert len(llm.calls) == paid
    assert extract.cache_info().hits == 2000


def test_a_stalled_server_turns_the_whole_line_away_at_once(tmp_path: Path, llm: FakeLLM) -> None:
    """1,000 calls queued on a stalled Redis all fall back within two timeouts, not ten."""
    server = RedisServer(tmp_path / "redis").start()
    backend = RedisCache(server.url)

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> float:
        await extract("warm is 1")  # the pool's first connection is open
        server.pause()
        started = time.monotonic()
        results = await asyncio.gather(*(extract(text) for text in texts(1000)))
        took = time.monotonic() - started
        assert results == [expected(text) for text in texts(1000)]
        return took

    try:
        took = asyncio.run(scenario())
    finally:
        server.stop()
    # Two timeouts (0.5 s) plus 1,000 tasks' own work on a busy 2-core machine;
    # a line drained one timeout at a time would take ten (2.5 s) or more.
    assert took < 2.2
    assert len(llm.calls) == 1001
    backend.close()


@pytest.fixture
def slow_link(redis_url: str) -> Iterator[SlowLink]:
    """The session's server behind a link that returns 1 KB every 0.2 s."""
    port = urllib.parse.urlsplit(redis_url).port
    assert port is not None
    with SlowLink(port, chunk=1024, pause=0.2) as link:
        yield link


def test_a_large_entry_over_a_slow_link_costs_one_timeout(
    slow_link: SlowLink, make_cache: Callable[..., RedisCache], llm: FakeLLM
) -> None:
    """The timeout bounds a whole GET, not each socket read: a trickling reply falls back."""
    backend = make_cache(slow_link.url)

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    big, small = "B" * 20_000 + " is 1", "S is 2"
    extract(big)  # stored: the request side of the link is fast
    extract(small)
    started = time.monotonic()
    assert extract(big) == UserDetail(name="B" * 20_000, age=1)
    assert time.monotonic() - started < BOUND  # 20 pauses of 0.2 s without the deadline
    assert extract(small) == UserDetail(name="S", age=2)  # a small reply is still a hit
    info = extract.cache_info()
    assert (info.hits, info.errors, len(llm.calls)) == (1, 1, 3)


def test_a_large_entry_over_a_slow_link_costs_one_timeout_async(
    slow_link: SlowLink, make_cache: Callable[..., RedisCache], llm: FakeLLM
) -> None:
    """The asyncio client bounds a whole reply the same way."""
    backend = make_cache(slow_link.url)

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    big, small = "B" * 20_000 + " is 1", "S is 2"

    async def scenario() -> float:
        await extract(big)
        await extract(small)
        started = time.monotonic()
        assert await extract(big) == UserDetail(name="B" * 20_000, age=1)
        took = time.monotonic() - started
        assert await extract(small) == UserDetail(name="S", age=2)
        return took

    assert asyncio.run(scenario()) < BOUND
    info = extract.cache_info()
    assert (info.hits, info.errors, len(llm.calls)) == (1, 1, 3)


def test_a_task_cancelled_while_in_line_leaves_the_line_working(
    make_cache: Callable[..., RedisCache],
) -> None:
    """With one connection, a waiter cancelled in line neither loses a turn nor holds one."""
    backend = make_cache(max_connections=1)

    async def scenario() -> None:
        for i in range(4):
            await backend.aset(f"k{i}", f"v{i}")
        tasks = [asyncio.create_task(backend.aget(f"k{i}")) for i in range(4)]
        await asyncio.sleep(0)  # all four have asked: one holds the connection, three wait
        tasks[1].cancel()
        tasks[2].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] == "v0"
        assert results[3] == "v3"
        assert all(isinstance(r, asyncio.CancelledError) for r in results[1:3])
        assert await asyncio.gather(*(backend.aget(f"k{i}") for i in range(4))) == [
            "v0",
            "v1",
            "v2",
            "v3",
        ]

    asyncio.run(scenario())
