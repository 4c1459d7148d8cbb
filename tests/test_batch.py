"""Batches: map/amap and warm/awarm read in bulk, pay once per distinct miss, keep input order."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
import redis
from pydantic import BaseModel

from instructor_cache import MemoryCache, RedisCache, instructor_cache
from instructor_cache.backends import Store
from instructor_cache.errors import ConfigurationError
from tests._fakes import UserDetail
from tests._stores import aclose_clients

TEXTS = [f"user{i} is {20 + i}" for i in range(10)]


def _answer(text: str) -> UserDetail:
    name, _, age = text.partition(" is ")
    if age == "boom":
        raise ValueError(f"cannot read {text!r}")
    return UserDetail(name=name, age=int(age))


class CountingMemory(MemoryCache):
    """A real MemoryCache that counts the bulk reads and writes it is asked for."""

    def __init__(self) -> None:
        super().__init__(maxsize=1024)
        self.bulk_reads: list[int] = []
        self.bulk_writes: list[int] = []
        self.single_writes = 0

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self.bulk_reads.append(len(keys))
        return super().get_many(keys)

    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        self.bulk_writes.append(len(items))
        super().set_many(items, ttl)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.single_writes += 1
        super().set(key, value, ttl)


def test_map_keeps_input_order_and_pays_once_per_distinct_input(
    make_backend: Callable[..., Store],
) -> None:
    """Duplicates are paid once, results come back in input order, a second map is all hits."""
    calls: list[str] = []

    @instructor_cache(make_backend(), ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        return _answer(text)

    items = [TEXTS[i % 4] for i in range(12)]
    assert extract.map(items) == [_answer(t) for t in items]
    assert sorted(calls) == sorted(TEXTS[:4])
    assert extract.map(reversed(items)) == [_answer(t) for t in reversed(items)]
    assert len(calls) == 4
    info = extract.cache_info()
    assert (info.hits, info.misses) == (20, 4)
    assert extract.warm([*items, TEXTS[5]]) == (4, 1, 0)  # counted over distinct inputs
    assert len(calls) == 5


async def test_amap_keeps_input_order_and_pays_once_per_distinct_input(
    make_backend: Callable[..., Store],
) -> None:
    """The async batch does the same on every backend."""
    calls: list[str] = []
    store = make_backend()

    @instructor_cache(store, ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        await asyncio.sleep(0.01)
        return _answer(text)

    items = [TEXTS[i % 4] for i in range(12)]
    assert await extract.amap(items, concurrency=3) == [_answer(t) for t in items]
    assert sorted(calls) == sorted(TEXTS[:4])
    assert await extract.amap(items) == [_answer(t) for t in items]
    assert len(calls) == 4
    assert await extract.awarm([*items, TEXTS[5]]) == (4, 1, 0)  # counted over distinct inputs
    await aclose_clients(store)
    assert len(calls) == 5


def test_map_reads_once_and_writes_once_in_bulk() -> None:
    """One bulk read for the whole batch, one bulk write for what it computed."""
    store = CountingMemory()

    @instructor_cache(store)
    def extract(text: str) -> UserDetail:
        return _answer(text)

    extract(TEXTS[0])
    assert extract.map(TEXTS + TEXTS) == [_answer(t) for t in TEXTS + TEXTS]
    assert store.bulk_reads == [10]
    assert store.bulk_writes == [9]
    assert store.single_writes == 1  # the single call before


def _mgets(server: redis.Redis) -> int:
    return int(server.info("commandstats").get("cmdstat_mget", {"calls": 0})["calls"])


def _commands(server: redis.Redis) -> int:
    """Commands the server has processed, less the INFO that asks."""
    return int(server.info("stats")["total_commands_processed"])


async def test_a_200_item_cached_batch_on_redis_takes_one_mget(redis_url: str) -> None:
    """Counted on the real server: 200 cached items cost one MGET and under 10 round trips."""
    server = redis.Redis.from_url(redis_url)
    store = RedisCache(redis_url, prefix="batch-count")
    items = [f"u{i} is {i}" for i in range(200)]

    @instructor_cache(store)
    async def extract(text: str) -> UserDetail:
        return _answer(text)

    try:
        await extract.amap(items)
        mgets, commands = _mgets(server), _commands(server)
        assert await extract.amap(items) == [_answer(t) for t in items]
        assert _mgets(server) - mgets == 1
        assert _commands(server) - commands - 2 < 10  # two INFOs of ours on the way
        sync_store = RedisCache(redis_url, prefix="batch-count")

        @instructor_cache(sync_store, name="tests.batch.extract_sync")
        def extract_sync(text: str) -> UserDetail:
            return _answer(text)

        extract_sync.map(items)
        mgets = _mgets(server)
        assert extract_sync.map(items) == [_answer(t) for t in items]
        assert _mgets(server) - mgets == 1
        sync_store.clear()
        sync_store.close()
    finally:
        store.clear()
        await store.aclose()
        server.close()


def test_a_failure_is_raised_after_the_batch_with_the_others_stored() -> None:
    """By default one item's exception is raised once the others are computed and stored."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        return _answer(text)

    items = [TEXTS[0], "bad is boom", TEXTS[1]]
    with pytest.raises(ValueError, match="bad is boom"):
        extract.map(items)
    calls.clear()
    outcome = extract.map(items, return_exceptions=True)
    assert outcome[0] == _answer(TEXTS[0])
    assert outcome[2] == _answer(TEXTS[1])
    assert isinstance(outcome[1], ValueError)
    assert calls == ["bad is boom"]  # the others were stored by the first batch


async def test_amap_returns_exceptions_in_place_when_asked() -> None:
    """return_exceptions=True puts each failure where its result would be, like gather."""

    @instructor_cache(MemoryCache())
    async def extract(text: str) -> UserDetail:
        return _answer(text)

    outcome = await extract.amap([TEXTS[0], "x is boom", "x is boom"], return_exceptions=True)
    assert outcome[0] == _answer(TEXTS[0])
    assert isinstance(outcome[1], ValueError)
    assert outcome[2] is outcome[1]
    with pytest.raises(ValueError, match="boom"):
        await extract.amap([TEXTS[0], "x is boom"])


def test_items_are_tuples_dicts_or_the_first_argument() -> None:
    """For several parameters: a tuple is positional, a dict keywords, else the first argument."""

    @instructor_cache(MemoryCache())
    def extract(text: str, bonus: int = 0) -> UserDetail:
        user = _answer(text)
        return UserDetail(name=user.name, age=user.age + bonus)

    got = extract.map([TEXTS[0], (TEXTS[0], 5), {"text": TEXTS[0], "bonus": 7}])
    assert [u.age for u in got] == [20, 25, 27]


def test_a_one_parameter_function_takes_each_item_whole() -> None:
    """A tuple is the argument itself when the function has one parameter."""

    @instructor_cache(MemoryCache())
    def total(pair: tuple[int, int]) -> int:
        return pair[0] + pair[1]

    assert total.map([(1, 2), (3, 4)]) == [3, 7]


def test_an_unkeyable_item_fails_alone() -> None:
    """An argument no key can encode is that item's failure, not the batch's."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return _answer(text)

    outcome = extract.map([TEXTS[0], object()], return_exceptions=True)
    assert outcome[0] == _answer(TEXTS[0])
    assert isinstance(outcome[1], TypeError)


def test_map_runs_at_most_concurrency_calls_at_once() -> None:
    """concurrency bounds the calls in flight."""
    running, most = 0, 0
    lock = threading.Lock()

    @instructor_cache(MemoryCache(), ignore=("running", "most", "lock"))
    def extract(text: str) -> UserDetail:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return _answer(text)

    items = [f"u{i} is {i}" for i in range(20)]
    assert extract.map(items, concurrency=3) == [_answer(t) for t in items]
    assert 1 < most <= 3


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "8"])
def test_concurrency_must_be_a_positive_int(concurrency: object) -> None:
    """A wrong concurrency is refused before any work."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return _answer(text)

    with pytest.raises(ConfigurationError, match="concurrency"):
        extract.map(TEXTS, concurrency=concurrency)  # type: ignore[arg-type]


def test_progress_reports_done_and_total() -> None:
    """A progress callable sees the count of finished items rise to the total."""
    seen: list[tuple[int, int]] = []

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return _answer(text)

    extract(TEXTS[0])
    extract.map(TEXTS, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (10, 10)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert all(total == 10 for _, total in seen)


def test_progress_true_without_tqdm_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """progress=True needs tqdm; without it the error says what to install."""
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return _answer(text)

    with pytest.raises(ConfigurationError, match="pip install tqdm"):
        extract.map(TEXTS, progress=True)


def test_progress_true_draws_a_tqdm_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """With tqdm importable, progress=True moves a bar of the batch's size to its end."""
    bars: list[Any] = []

    class Bar:
        def __init__(self, total: int) -> None:
            self.total, self.n, self.closed = total, 0, False
            bars.append(self)

        def update(self, count: int) -> None:
            self.n += count

        def close(self) -> None:
            self.closed = True

    module = types.ModuleType("tqdm.auto")
    module.tqdm = Bar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm.auto", module)

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return _answer(text)

    extract.map(TEXTS, progress=True)
    assert [(b.total, b.n, b.closed) for b in bars] == [(10, 10, True)]


def test_warm_counts_hits_computed_and_failed() -> None:
    """warm fills what is missing and says what it found, over distinct inputs."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        return _answer(text)

    extract(TEXTS[0])
    counts = extract.warm([TEXTS[0], TEXTS[1], TEXTS[1], "x is boom"])
    assert (counts.hits, counts.computed, counts.failed) == (1, 1, 1)
    assert extract.warm(TEXTS[:2]) == (2, 0, 0)
    assert calls == [TEXTS[0], TEXTS[1], "x is boom"]


async def test_awarm_counts_hits_computed_and_failed() -> None:
    """awarm does the same for an async function."""

    @instructor_cache(MemoryCache())
    async def extract(text: str) -> UserDetail:
        return _answer(text)

    assert await extract.awarm([TEXTS[0], TEXTS[0], "x is boom"]) == (0, 1, 1)
    assert await extract.awarm([TEXTS[0]]) == (1, 0, 0)


async def test_a_single_call_during_a_batch_waits_for_the_batch() -> None:
    """Single-flight spans batches: a call for an input the batch is computing is not paid twice."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        await asyncio.sleep(0.1)
        return _answer(text)

    batch = asyncio.create_task(extract.amap(TEXTS))
    await asyncio.sleep(0.02)
    single = await extract(TEXTS[3])
    assert single == _answer(TEXTS[3])
    assert await batch == [_answer(t) for t in TEXTS]
    assert sorted(calls) == sorted(TEXTS)


def test_a_bound_method_maps_with_its_instance() -> None:
    """obj.method.map passes obj as self to every call, and keys by it."""

    class Extractor(BaseModel):
        bonus: int

        @instructor_cache(MemoryCache())
        def extract(self, text: str) -> UserDetail:
            user = _answer(text)
            return UserDetail(name=user.name, age=user.age + self.bonus)

    assert [u.age for u in Extractor(bonus=1).extract.map(TEXTS[:2])] == [21, 22]
    assert [u.age for u in Extractor(bonus=2).extract.map(TEXTS[:2])] == [22, 23]
    assert Extractor(bonus=3).extract.warm(TEXTS[:2]) == (0, 2, 0)


def test_map_on_a_dead_store_still_answers() -> None:
    """A store that fails every read and write: the batch calls the function for every input."""

    class Dead(MemoryCache):
        def get_many(self, keys: Sequence[str]) -> list[str | None]:
            raise ConnectionError("down")

        def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
            raise ConnectionError("down")

    @instructor_cache(Dead())
    def extract(text: str) -> UserDetail:
        return _answer(text)

    assert extract.map(TEXTS) == [_answer(t) for t in TEXTS]
    assert extract.cache_info().errors >= 2
