"""Tiered caching: read in order with backfill, write to all, per-tier statistics, failing tiers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from instructor_cache import (
    MemoryCache,
    RedisCache,
    TieredCache,
    instructor_cache,
    memory_cache,
    redis_cache,
    tiered_cache,
)
from instructor_cache.errors import ConfigurationError
from tests._redis import free_port
from tests._stores import BrokenStore, DictStore
from tests.conftest import Clock, FakeLLM, UserDetail


def test_a_lower_tier_hit_is_written_back_above(llm: FakeLLM, disk: Any) -> None:
    """An entry found in L2 is copied into L1; the next read is an L1 hit."""
    l1, l2 = MemoryCache(), disk()

    def extract(text: str) -> UserDetail:
        return llm(text)

    tiered = instructor_cache(TieredCache(l1, l2), ignore=("llm",))(extract)
    key = tiered.cache_key("Al is 3")
    tiered("Al is 3")  # miss everywhere: written to both tiers
    l1.clear()  # L1 forgets (a restart)
    assert tiered("Al is 3") == UserDetail(name="Al", age=3)  # L2 hit, backfilled
    assert l1.get(key) is not None
    assert tiered("Al is 3") == UserDetail(name="Al", age=3)  # L1 hit
    info = tiered.cache_info()
    assert (info.hits, info.misses) == (2, 1)
    assert [(t.hits, t.misses) for t in info.tiers] == [(1, 2), (1, 1)]
    assert len(llm.calls) == 1
    l2.close()


def test_backfill_keeps_the_remaining_ttl(tmp_path: Path, clock: Clock) -> None:
    """An entry backfilled from a lower tier expires above when it would have expired below."""
    l1, l2 = MemoryCache(timer=clock), MemoryCache(timer=clock)
    tiered = TieredCache(l1, l2)
    l2.set("k", "v", ttl=100)
    clock.advance(60)
    assert tiered.get("k") == "v"  # backfilled into L1 with ~40 s left
    entry = l1.get_with_ttl("k")
    assert entry is not None
    assert entry[1] == pytest.approx(40)
    clock.advance(41)
    assert l1.get("k") is None


def test_a_failing_tier_is_skipped_and_counted(llm: FakeLLM, disk: Any) -> None:
    """With L2 down the other tiers still serve, and L2's errors are counted in its own info."""
    l1, l3 = MemoryCache(), disk()

    @instructor_cache(TieredCache(l1, BrokenStore(), l3), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("Bo is 4")
    l1.clear()
    assert extract("Bo is 4") == UserDetail(name="Bo", age=4)  # from L3, past the broken L2
    assert len(llm.calls) == 1
    info = extract.cache_info()
    # L2: the first call's get and set fail, the second call's get fails (its breaker
    # opens after 3) and the backfill into it is skipped.
    assert info.tiers[1].errors == 4
    assert info.tiers[0].errors == info.tiers[2].errors == 0
    assert info.errors == info.tiers[1].errors
    assert l1.get(extract.cache_key("Bo is 4")) is not None  # backfilled past the broken tier
    l3.close()


def test_a_dead_redis_below_l1_is_not_asked_on_l1_hits(llm: FakeLLM, tmp_path: Path) -> None:
    """A dead Redis as L2 costs the first miss its two failures; L1 then serves every hit."""
    redis_tier = RedisCache(f"redis://127.0.0.1:{free_port()}/0")

    @instructor_cache(TieredCache(MemoryCache(), redis_tier), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    for _ in range(5):
        assert extract("Cy is 5") == UserDetail(name="Cy", age=5)
    assert len(llm.calls) == 1
    info = extract.cache_info()
    assert info.tiers[0].hits == 4
    assert info.tiers[1].errors == 2  # the first miss's GET and SET; hits never reached it
    redis_tier.close()


def test_async_tiered_reads_and_backfills(llm: FakeLLM, redis_url: str, disk: Any) -> None:
    """The async path reads through the same tiers and backfills the same way."""
    l1 = MemoryCache()
    l2 = RedisCache(redis_url, prefix="tiered-async:")

    @instructor_cache(TieredCache(l1, disk(), l2), ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> None:
        await extract("Di is 6")
        l1.clear()
        assert await extract("Di is 6") == UserDetail(name="Di", age=6)
        assert await extract("Di is 6") == UserDetail(name="Di", age=6)

    asyncio.run(scenario())
    info = extract.cache_info()
    assert [t.hits for t in info.tiers] == [1, 1, 0]
    assert len(llm.calls) == 1
    l2.clear()
    l2.close()


def test_shortcut_factories_stack_by_hand(llm: FakeLLM, redis_url: str, disk: Any) -> None:
    """memory over redis over tiered, each layer with its own cache_info()."""

    @memory_cache(maxsize=10, ignore=("llm",))
    @redis_cache(redis_url, prefix="stacked:", ttl=60, ignore=("llm",))
    @tiered_cache(MemoryCache(), disk(), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("Ed is 7")
    assert extract("Ed is 7") == UserDetail(name="Ed", age=7)
    middle = extract.__wrapped__
    inner = middle.__wrapped__  # type: ignore[attr-defined]
    assert extract.cache_info().hits == 1
    assert middle.cache_info().misses == 1  # type: ignore[attr-defined]
    assert inner.cache_info().misses == 1
    extract.cache_clear()
    extract("Ed is 7")
    assert middle.cache_info().hits == 1  # type: ignore[attr-defined]
    assert len(llm.calls) == 1
    cleanup = RedisCache(redis_url, prefix="stacked:")
    cleanup.clear()
    cleanup.close()


def test_tiered_cache_needs_backends() -> None:
    """No tiers, or a tier that is not a backend, is a configuration error."""
    with pytest.raises(ConfigurationError):
        TieredCache()
    with pytest.raises(ConfigurationError, match="is not a store"):
        TieredCache(MemoryCache(), object())  # type: ignore[arg-type]


def test_an_entry_whose_ttl_is_unknown_is_not_copied_up(
    llm: FakeLLM, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A lower tier that cannot tell an entry's TTL serves it, is not copied up, and says so."""
    l1 = MemoryCache(timer=clock)

    with caplog.at_level(logging.WARNING, logger="instructor_cache"):

        @instructor_cache(TieredCache(l1, DictStore()), ttl=1, ignore=("llm",))
        def extract(text: str) -> UserDetail:
            return llm(text)

    assert any("get_with_ttl" in r.getMessage() for r in caplog.records)
    extract("Fi is 8")
    l1.clear()
    assert extract("Fi is 8") == UserDetail(name="Fi", age=8)  # from L2
    assert len(l1) == 0  # not copied up: it could outlive the original
    assert len(llm.calls) == 1


def test_a_tier_with_only_the_required_methods_serves_async_calls(llm: FakeLLM) -> None:
    """A sync-only user store works as a tier of an async function (on its worker thread)."""
    l1, l2 = MemoryCache(), DictStore()

    @instructor_cache(TieredCache(l1, l2), ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> None:
        await extract("Go is 9")
        l1.clear()
        assert await extract("Go is 9") == UserDetail(name="Go", age=9)

    asyncio.run(scenario())
    assert len(llm.calls) == 1
    assert len(l2.data) == 1
    assert [t.hits for t in extract.cache_info().tiers] == [0, 1]


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_write_reaches_every_tier_in_order_even_past_a_failing_one(flavour: str) -> None:
    """Sync and async writes go to each tier, fastest first, and a failing tier stops none."""
    written: list[str] = []

    class Recording(DictStore):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def set(self, key: str, value: str, ttl: float | None = None) -> None:
            written.append(self.name)
            super().set(key, value, ttl)

    tiered = TieredCache(Recording("L1"), BrokenStore(), Recording("L3"))
    if flavour == "sync":
        tiered.set("k", "v")
    else:
        asyncio.run(tiered.aset("k", "v"))
    assert written == ["L1", "L3"]
    assert tiered.get("k") == "v"


def test_an_entry_gone_between_read_and_ttl_is_not_copied_up(clock: Clock) -> None:
    """A remaining TTL of zero (expired meanwhile) backfills nothing."""
    l1 = MemoryCache(timer=clock)

    class Vanishing(MemoryCache):
        def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
            text = self.get(key)
            return None if text is None else (text, 0.0)

    tiered = TieredCache(l1, Vanishing(timer=clock))
    tiered.tiers[1].set("k", "v")
    assert tiered.get("k") == "v"
    assert l1.get("k") is None
