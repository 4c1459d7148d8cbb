"""Savings (time, tokens, cost) belong to the original call, also through stacked cached layers
and tiers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from instructor.dsl import ListResponse

from instructor_cache import DiskCache, MemoryCache, TieredCache, instructor_cache, pricing
from tests._fakes import UserDetail


def test_an_upper_layer_stores_the_duration_of_the_call_below_it(tmp_path: Path) -> None:
    """An upper layer filled from a lower layer's hit counts the original call's time."""
    disk = DiskCache(tmp_path / "disk")

    @instructor_cache(MemoryCache())
    @instructor_cache(disk)
    def extract(text: str) -> UserDetail:
        time.sleep(0.2)
        return UserDetail(name=text, age=1)

    extract.__wrapped__("Al")  # the lower layer pays ~0.2 s
    extract("Al")  # the upper layer misses, the lower one hits (in microseconds)
    extract("Al")  # an upper hit: it saved the original call's time
    upper, lower = extract.cache_info(), extract.__wrapped__.cache_info()
    assert upper.hits == lower.hits == 1
    assert upper.time_saved >= 0.19
    assert upper.time_saved == lower.time_saved  # the same call's time, counted by each
    disk.close()


async def test_an_async_upper_layer_stores_the_duration_of_the_call_below_it() -> None:
    """The same for async layers: the lower hit's duration reaches the layer that awaited it."""

    @instructor_cache(MemoryCache())
    @instructor_cache(MemoryCache())
    async def extract(text: str) -> UserDetail:
        await asyncio.sleep(0.2)
        return UserDetail(name=text, age=1)

    await extract.__wrapped__("Al")  # the lower layer pays ~0.2 s
    await extract("Al")  # the upper layer misses, the lower one hits
    await extract("Al")  # an upper hit
    assert extract.cache_info().time_saved >= 0.19
    assert extract.cache_info().hits == 1


def test_a_plain_function_under_a_layer_is_timed_as_before() -> None:
    """Without a cached layer below, the upper layer times the call itself."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=1)

    extract("Al")
    extract("Al")
    assert 0.0 <= extract.cache_info().time_saved < 0.1


RAW = {"model": "gpt-4o-mini-2024-07-18", "usage": {"prompt_tokens": 900, "completion_tokens": 100}}
TOKENS = 1000


def with_raw(user: UserDetail) -> UserDetail:
    """A result as instructor returns it, with the raw completion attached."""
    object.__setattr__(user, "_raw_response", RAW)
    return user


def cost_of_one_call() -> float:
    return pricing.cost(RAW["model"], 900, 100)  # type: ignore[arg-type]


def test_an_upper_layer_counts_the_tokens_and_cost_of_the_call_below_it(tmp_path: Path) -> None:
    """Memory over disk: an upper hit counts the original call's tokens and cost, as the lower."""
    disk = DiskCache(tmp_path / "disk")

    @instructor_cache(MemoryCache())
    @instructor_cache(disk)
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1))

    extract.__wrapped__("Al")  # the lower layer pays
    extract("Al")  # the upper layer misses, the lower one hits
    hit = extract("Al")  # an upper hit
    upper, lower = extract.cache_info(), extract.__wrapped__.cache_info()
    assert upper.tokens_saved == lower.tokens_saved == TOKENS
    assert upper.cost_saved == lower.cost_saved == pytest.approx(cost_of_one_call())
    assert upper.cost_saved > 0
    assert hit._raw_response.usage.prompt_tokens == 900  # type: ignore[attr-defined]
    disk.close()


def test_a_list_result_passes_its_tokens_up_through_three_layers() -> None:
    """A list's hit keeps no raw completion, yet the top layer counts the bottom call's tokens."""

    @instructor_cache(MemoryCache())
    @instructor_cache(MemoryCache())
    @instructor_cache(MemoryCache())
    def extract(text: str) -> list[UserDetail]:
        users = ListResponse([UserDetail(name=text, age=1)])
        users._raw_response = RAW
        return users

    bottom = extract.__wrapped__.__wrapped__
    bottom("Al")  # the bottom layer pays
    extract("Al")  # the top and middle layers miss, the bottom hits
    extract("Al")  # a top hit
    top, bottom_info = extract.cache_info(), bottom.cache_info()
    assert (top.hits, top.tokens_saved) == (1, TOKENS)
    assert bottom_info.tokens_saved == TOKENS
    assert top.cost_saved == pytest.approx(cost_of_one_call())


async def test_an_async_upper_layer_counts_the_tokens_of_the_call_below_it() -> None:
    """The same for async layers: the lower hit's usage reaches the layer that awaited it."""

    @instructor_cache(MemoryCache())
    @instructor_cache(MemoryCache())
    async def extract(text: str) -> list[UserDetail]:
        users = ListResponse([UserDetail(name=text, age=1)])
        users._raw_response = RAW
        return users

    await extract.__wrapped__("Al")
    await extract("Al")
    await extract("Al")
    assert extract.cache_info().tokens_saved == TOKENS


def test_a_tier_filled_from_a_lower_tier_keeps_the_usage(tmp_path: Path) -> None:
    """A disk-tier hit backfills memory with the same text: the memory hit counts the same."""
    memory, disk = MemoryCache(), DiskCache(tmp_path / "disk")

    @instructor_cache(TieredCache(memory, disk))
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1))

    extract("Al")  # paid; stored in both tiers
    memory.clear()
    extract("Al")  # a disk-tier hit, backfilled into memory
    hit = extract("Al")  # a memory-tier hit
    key = extract.cache_key("Al")
    assert memory.get(key) == disk.get(key)
    info = extract.cache_info()
    assert [tier.hits for tier in info.tiers] == [1, 1]
    assert (info.hits, info.tokens_saved) == (2, 2 * TOKENS)
    assert info.cost_saved == pytest.approx(2 * cost_of_one_call())
    assert hit._raw_response.model == RAW["model"]  # type: ignore[attr-defined]
    disk.close()
