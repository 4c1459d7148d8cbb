"""The store contract as the decorator composes it: capabilities checked once, fallbacks, async."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis.asyncio

from instructor_cache import CircuitBreaker, MemoryCache, RedisCache, TieredCache, instructor_cache
from instructor_cache.backends import (
    AsyncBulkStore,
    AsyncStore,
    BulkStore,
    ReadsWithTTL,
    SizedStore,
    Store,
)
from instructor_cache.backends._async import adapt
from instructor_cache.backends._guard import breaker_for
from instructor_cache.errors import ConfigurationError
from tests._stores import AsyncDictStore, DictStore, SwitchableStore
from tests.conftest import FakeLLM, UserDetail


class Watched(DictStore):
    """A sync-only store that records which of its attributes are looked up, and from where."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[str] = []
        self.threads: set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name not in ("looked_up", "threads", "data"):
            self.looked_up.append(name)
        return super().__getattribute__(name)

    def get(self, key: str) -> str | None:
        self.threads.add(threading.current_thread().name)
        return super().get(key)


def test_a_call_asks_the_store_nothing_but_its_operations(llm: FakeLLM) -> None:
    """Capabilities are looked up once, when decorating: calls then only get and set."""
    store = Watched()

    @instructor_cache(store, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    store.looked_up.clear()
    extract("Al is 1")
    extract("Al is 1")
    assert store.looked_up == []  # bound methods were resolved once, at decoration
    assert extract.cache_info().hits == 1


def test_a_sync_only_store_serves_async_functions_on_its_worker_thread(llm: FakeLLM) -> None:
    """A store with only the required methods works for async functions, off the event loop."""
    store = Watched()

    @instructor_cache(store, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> list[UserDetail]:
        return [await extract("Bo is 2") for _ in range(3)]

    assert asyncio.run(scenario()) == [UserDetail(name="Bo", age=2)] * 3
    assert len(llm.calls) == 1
    assert extract.cache_info().hits == 2
    assert all(name.startswith("instructor_cache-Watched") for name in store.threads)

    asyncio.run(extract.acache_clear())
    assert store.data == {}


def test_capabilities_are_types_and_fallbacks_fill_the_gaps() -> None:
    """The built-in memory store has every capability; a minimal one gets each fallback."""
    memory = MemoryCache()
    for capability in (Store, AsyncStore, ReadsWithTTL, BulkStore, AsyncBulkStore, SizedStore):
        assert isinstance(memory, capability), capability.__name__
    minimal = DictStore()
    assert isinstance(minimal, Store)
    assert not isinstance(minimal, (AsyncStore, ReadsWithTTL, BulkStore, SizedStore))
    ops = adapt(minimal)
    ops.set_many({"a": "1", "b": "2"}, None)  # one call per key
    assert ops.get_many(["b", "missing", "a"]) == ["2", None, "1"]
    assert ops.get_with_ttl is None  # as a lower tier: served, not copied up
    assert ops.sized is None  # cache_info() reports None

    async def in_loop() -> list[str | None]:
        await ops.aset_many({"c": "3"}, None)
        return await ops.aget_many(["c", "a"])

    assert asyncio.run(in_loop()) == ["3", "1"]


def test_a_native_async_store_without_bulk_methods_gathers_single_calls() -> None:
    """An AsyncStore without aget_many is read with its own aget, never on a thread."""
    store = AsyncDictStore()
    ops = adapt(store)

    async def in_loop() -> list[str | None]:
        await ops.aset_many({"a": "1"}, None)
        return await ops.aget_many(["a", "b"])

    assert asyncio.run(in_loop()) == ["1", None]


def test_a_size_property_that_fails_when_asked_is_no_size() -> None:
    """A store whose maxsize asks an unreachable server is decorated all the same, size None."""

    class Unreachable(DictStore):
        @property
        def maxsize(self) -> int:
            raise ConnectionError("down")

        def __len__(self) -> int:
            raise ConnectionError("down")

    @instructor_cache(Unreachable())
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    extract("a")
    info = extract.cache_info()
    assert (info.maxsize, info.currsize, info.errors) == (None, None, 0)


def test_an_async_only_redis_client_clears_with_acache_clear(redis_url: str) -> None:
    """With only an asyncio client, ``await acache_clear()`` clears; cache_clear() says why not."""

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        store = RedisCache(client, prefix="async-only:")

        @instructor_cache(store)
        async def extract(text: str) -> UserDetail:
            return UserDetail(name=text, age=0)

        await extract("a")
        key = "async-only:" + extract.cache_key("a")
        assert await client.exists(key)
        with pytest.raises(ConfigurationError, match=r"await fn\.acache_clear\(\)"):
            extract.cache_clear()  # no sync client to reach Redis with: it says so
        assert await client.exists(key)
        assert extract.cache_info().misses == 1  # a failed clear resets nothing
        await extract.acache_clear()
        assert not await client.exists(key)
        assert extract.cache_info().misses == 0
        await client.aclose()

    asyncio.run(scenario())


def test_a_tiered_cache_is_itself_a_store() -> None:
    """A TieredCache keeps the contract, so it can be used directly or as a tier."""
    tiered = TieredCache(MemoryCache(), DictStore())
    assert isinstance(tiered, Store)
    tiered.set_many({"a": "1", "b": "2"})
    assert tiered.get_many(["a", "b", "c"]) == ["1", "2", None]
    assert tiered.clear_prefix("a") == 1
    assert tiered.get("a") is None


def test_circuit_breaker_option_is_checked_when_decorating() -> None:
    """circuit_breaker= takes a CircuitBreaker, not over a TieredCache (its tiers have theirs)."""
    with pytest.raises(ConfigurationError, match="must be a CircuitBreaker"):
        instructor_cache(MemoryCache(), circuit_breaker=3)  # type: ignore[arg-type]

    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    tiered = instructor_cache(TieredCache(MemoryCache()), circuit_breaker=CircuitBreaker())
    with pytest.raises(ConfigurationError, match="does not apply to a TieredCache"):
        tiered(extract)


def test_a_given_breaker_is_this_functions_alone(llm: FakeLLM) -> None:
    """circuit_breaker= replaces the store's shared breaker for one function, not for the others."""
    store = SwitchableStore(down=True)
    own = CircuitBreaker(failures=1, cooldown=60)

    @instructor_cache(store, ignore=("llm",), circuit_breaker=own)
    def first(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(store, ignore=("llm",))
    def second(text: str) -> UserDetail:
        return llm(text)

    first("Al is 1")
    assert own.is_open
    assert not breaker_for(store).is_open
    attempts = store.attempts
    second("Al is 1")
    assert store.attempts == attempts + 2  # its get and set still reach the store


@pytest.mark.parametrize(
    ("seconds", "copied"),
    [(float("inf"), True), (5, True), (float("-inf"), False)],
    ids=["infinite", "an-int", "minus-infinity"],
)
def test_a_user_tiers_ttl_answer_is_read_as_meant(seconds: float, copied: bool) -> None:
    """Infinity is no expiry and an int is seconds (copied up); minus infinity is expired."""

    class Answering(DictStore):
        def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
            text = self.get(key)
            return None if text is None else (text, seconds)

    upper, lower = MemoryCache(), Answering()
    lower.set("k", "v")
    tiered = TieredCache(upper, lower)
    assert tiered.get("k") == "v"
    assert (upper.get("k") == "v") is copied


def test_a_bulk_answer_of_the_wrong_length_is_a_counted_miss() -> None:
    """A user's get_many that answers for fewer keys than asked misses them all, no exception."""

    class Short(DictStore):
        def get_many(self, keys: Any) -> list[str | None]:
            return [self.get(key) for key in keys][:-1]

        def set_many(self, items: Any, ttl: float | None = None) -> None:
            for key, value in items.items():
                self.set(key, value, ttl)

    store = Short()
    store.set("a", "1")
    tiered = TieredCache(store)
    assert tiered.get_many(["a", "b"]) == [None, None]
