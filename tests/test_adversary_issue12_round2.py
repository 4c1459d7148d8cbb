"""Second-pass adversarial reproducers for issue 12: coalesced reads, the lock, the breaker."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import redis
from pydantic import BaseModel

from instructor_cache import CircuitBreaker, RedisCache, instructor_cache
from tests._fakes import Clock
from tests._redis import RedisServer, running_cluster
from tests._stores import AsyncDictStore, SwitchableStore, aclose_clients


class Summary(BaseModel):
    text: str


class Name(BaseModel):
    name: str


async def test_a_leader_cancelled_by_an_anyio_cancel_scope_releases_the_redis_lock(
    redis_url: str,
) -> None:
    """A leader cancelled by an anyio cancel scope (which cancels again at every await, as
    FastAPI and Starlette run) must still release the store's lock, or every call of its input,
    in every process, waits single_flight out on a lock no one holds."""
    store = RedisCache(redis_url, prefix=f"adv12b:{uuid.uuid4().hex}:")
    calls: list[str] = []

    @instructor_cache(store, single_flight=30, ignore=("calls",))
    async def extract(text: str) -> Name:
        calls.append(text)
        if len(calls) == 1:
            await asyncio.sleep(10)  # the provider is slow; the request's deadline comes first
        return Name(name=text)

    try:
        with anyio.move_on_after(0.5):
            await extract("Ann")
        assert await asyncio.wait_for(extract("Ann"), timeout=10) == Name(name="Ann")
        with redis.Redis.from_url(redis_url) as client:
            assert client.keys(store.prefix + "*:lock") == []
    finally:
        await aclose_clients(store)
        store.clear()
        store.close()


async def test_a_burst_of_large_cached_entries_is_served_from_the_cache(
    server: RedisServer,
) -> None:
    """A burst of cached calls whose entries are large (long extractions) must be answered from
    Redis: coalesced into one bulk read whose whole reply must arrive within the single-read
    timeout, it times out where each single read would not, and every call pays again."""
    store = RedisCache(server.url, prefix="adv12b:")
    calls: list[int] = []

    @instructor_cache(store, ignore=("calls",))
    async def summarize(document: int) -> Summary:
        calls.append(document)
        return Summary(text=f"{document:>8}" * 12_500)  # 100 kB, a long document's summary

    try:
        for document in range(1000):
            await summarize(document)
        calls.clear()
        await asyncio.gather(*(summarize(document) for document in range(1000)))
        assert calls == []
    finally:
        await aclose_clients(store)
        store.close()


def test_a_burst_after_the_breaker_cooldown_is_served_from_a_redis_that_came_back(
    server: RedisServer,
) -> None:
    """Once a stalled Redis is back and the breaker's cooldown is over, a burst of cached calls
    must be answered from Redis: the first read probes and the rest of the burst, which their
    coalesced read could answer at the probe's cost, skip the store and each pay again."""
    store = RedisCache(server.url, prefix="adv12b:")
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=5, timer=clock)
    calls: list[int] = []

    @instructor_cache(store, circuit_breaker=breaker, ignore=("calls",))
    async def summarize(document: int) -> Summary:
        calls.append(document)
        return Summary(text=str(document))

    async def burst(documents: range) -> list[Summary]:
        try:
            return await asyncio.gather(*(summarize(document) for document in documents))
        finally:
            await aclose_clients(store)

    try:
        asyncio.run(burst(range(100)))  # cached
        server.pause()
        asyncio.run(burst(range(100, 101)))  # a read times out: the breaker opens
        server.resume()
        clock.advance(6)  # the cooldown is over: the next read probes
        calls.clear()
        assert asyncio.run(burst(range(100))) == [Summary(text=str(d)) for d in range(100)]
        assert calls == []
    finally:
        store.close()


async def test_a_huge_single_flight_takes_the_redis_lock(redis_url: str) -> None:
    """A single_flight the decorator accepts (any finite number of seconds) must give a lock Redis
    accepts: 1e16 s is a PX past what Redis can add to its clock, so every lock fails, the
    failures open the breaker, and a burst's results are neither stored nor served."""
    store = RedisCache(redis_url, prefix=f"adv12b:{uuid.uuid4().hex}:")
    calls: list[int] = []

    @instructor_cache(store, single_flight=1e16, ignore=("calls",))
    async def summarize(document: int) -> Summary:
        calls.append(document)
        await asyncio.sleep(0.05)  # the provider answers after a moment
        return Summary(text=str(document))

    try:
        await asyncio.gather(*(summarize(document) for document in range(10)))
        calls.clear()
        await asyncio.gather(*(summarize(document) for document in range(10)))
        assert calls == []
        assert summarize.cache_info().errors == 0
    finally:
        await aclose_clients(store)
        store.clear()
        store.close()


class _StallsAfterARead(RedisCache):
    """A real RedisCache whose server stalls, once armed, right after a read has answered."""

    def __init__(self, server: RedisServer) -> None:
        super().__init__(server.url, prefix="adv12b:")
        self.server, self.armed = server, False

    async def aget_many(self, keys: Sequence[str]) -> list[str | None]:
        return self._stall_if_armed(await super().aget_many(keys))

    async def aget(self, key: str) -> str | None:  # a lone read goes out on its own
        return self._stall_if_armed(await super().aget(key))

    def _stall_if_armed(self, found: Any) -> Any:
        if self.armed:
            self.armed = False
            self.server.pause()
        return found


async def test_a_lock_taken_by_a_command_that_timed_out_does_not_hold_up_later_calls(
    server: RedisServer,
) -> None:
    """A leader whose lock command timed out on a stalled Redis (which runs it once it resumes)
    must still let that lock go: else a lock no one knows it holds makes every later call of
    the input, in every process, wait single_flight out (60 s by default)."""
    store = _StallsAfterARead(server)
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=5, timer=clock)
    calls: list[str] = []

    @instructor_cache(store, circuit_breaker=breaker, single_flight=30, ignore=("calls",))
    async def extract(text: str) -> Name:
        calls.append(text)
        return Name(name=text)

    try:
        await extract("warm")  # the client is connected
        store.armed = True
        assert await extract("Ann") == Name(name="Ann")  # a miss; then its lock times out
        server.resume()
        clock.advance(6)  # the breaker's cooldown is over
        assert await asyncio.wait_for(extract("Ann"), timeout=10) == Name(name="Ann")
        assert calls == ["warm", "Ann", "Ann"]
    finally:
        await aclose_clients(store)
        store.close()


class _SlowWrites(AsyncDictStore):
    """A user's native async store whose writes take a moment (a remote service)."""

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        await asyncio.sleep(0.3)
        self.set(key, value, ttl)


def test_a_paid_result_given_up_on_as_asyncio_run_ends_is_still_stored() -> None:
    """A paid result whose caller timed out while it was written, in the last step of a program's
    asyncio.run, must still be stored: the write's task is kept, but asyncio.run cancels every
    task left when its main coroutine returns, and the next run pays again."""
    store = _SlowWrites()
    calls: list[str] = []

    @instructor_cache(store, ignore=("calls",))
    async def extract(text: str) -> Name:
        calls.append(text)
        return Name(name=text)

    async def main() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(extract("Ann"), timeout=0.1)  # the write takes longer

    asyncio.run(main())
    assert asyncio.run(extract("Ann")) == Name(name="Ann")
    assert calls == ["Ann"]


def test_a_burst_on_a_cluster_with_one_stalled_node_is_served_by_the_others(
    tmp_path: Path,
) -> None:
    """On a Cluster whose one node stalls, a burst of cached calls must still be answered by the
    healthy nodes, as single reads are: coalesced into one bulk read over every node, the
    stalled node fails the whole read, and every call pays again, not just its node's."""

    def scenario() -> None:
        with running_cluster(tmp_path / "cluster") as nodes:
            store = RedisCache(nodes.url, cluster=True, prefix="adv12b:")
            breaker = CircuitBreaker(
                failures=10**6, cooldown=60
            )  # never skips: every read is tried
            calls: list[int] = []

            @instructor_cache(store, circuit_breaker=breaker, ignore=("calls",))
            async def summarize(document: int) -> Summary:
                calls.append(document)
                return Summary(text=str(document))

            async def burst() -> list[Summary]:
                try:
                    return await asyncio.gather(*(summarize(d) for d in range(300)))
                finally:
                    await aclose_clients(store)

            try:
                asyncio.run(burst())
                stalled = nodes.servers[2]
                with stalled.client() as client:
                    on_the_stalled_node = int(client.dbsize())
                calls.clear()
                stalled.pause()
                try:
                    assert asyncio.run(burst()) == [Summary(text=str(d)) for d in range(300)]
                finally:
                    stalled.resume()
                assert 0 < on_the_stalled_node < 300
                on_healthy_nodes = 300 - on_the_stalled_node
                # Most of the healthy nodes' entries are served (single reads of them may fail now
                # and then, as the client looks at the cluster again after a node's timeout).
                assert len(calls) <= on_the_stalled_node + on_healthy_nodes // 2
            finally:
                store.close()

    try:
        scenario()
    finally:
        # Connections that redis-py's asyncio cluster client abandoned while a node
        # stalled are collected here, unclosed, where that is expected: not in
        # whichever test the garbage collector next runs in.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def test_identical_calls_while_the_breaker_is_open_pay_once() -> None:
    """Identical concurrent calls in one process must run the function once even while their
    store is down and its breaker open (a likely moment of load): the flights need no store,
    but calls that skip the store skip single-flight too, and each pays."""
    store = SwitchableStore(down=True)
    calls: list[str] = []

    @instructor_cache(
        store, circuit_breaker=CircuitBreaker(failures=1, cooldown=60), ignore=("calls",)
    )
    async def extract(text: str) -> Name:
        calls.append(text)
        await asyncio.sleep(0.1)  # the provider answers after a moment
        return Name(name=text)

    await extract("warm")  # the store fails: the breaker opens
    calls.clear()
    assert await asyncio.gather(*(extract("Ann") for _ in range(10))) == [Name(name="Ann")] * 10
    assert calls == ["Ann"]


def test_identical_calls_in_threads_while_the_breaker_is_open_pay_once() -> None:
    """The same for threads."""
    store = SwitchableStore(down=True)
    calls: list[str] = []

    @instructor_cache(
        store, circuit_breaker=CircuitBreaker(failures=1, cooldown=60), ignore=("calls",)
    )
    def extract(text: str) -> Name:
        calls.append(text)
        time.sleep(0.2)  # the provider answers after a moment
        return Name(name=text)

    extract("warm")  # the store fails: the breaker opens
    calls.clear()
    with ThreadPoolExecutor(5) as pool:
        assert list(pool.map(extract, ["Ann"] * 5)) == [Name(name="Ann")] * 5
    assert calls == ["Ann"]
