"""Savings belong to the original call, also through stacked cached layers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from instructor_cache import DiskCache, MemoryCache, instructor_cache
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
