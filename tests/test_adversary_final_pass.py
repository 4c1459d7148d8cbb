"""Final adversary pass over the whole change: what the parts get wrong together."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from instructor_cache import MemoryCache, RedisCache, cache_control, instructor_cache
from instructor_cache.errors import CacheMissError
from tests._fakes import Counting, UserDetail
from tests._stores import aclose_clients


def _with_raw(user: UserDetail, raw: Any) -> UserDetail:
    """What instructor does to the model it returns."""
    object.__setattr__(user, "_raw_response", raw)
    return user


def test_a_dict_raw_response_json_cannot_carry_is_not_served_changed_on_a_hit() -> None:
    """A dict raw completion with an int key and a tuple comes back on a hit with a string key
    and a list (``raw[200]`` worked on the call, raises KeyError on the hit): a raw response
    whose JSON form is not faithful must not be stored as if it were."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return _with_raw(
            UserDetail(name=text, age=1), {"model": "gpt-4o", 200: "ok", "stop": ("a",)}
        )

    paid = extract("Al")
    hit = extract("Al")
    assert hit == paid
    raw = getattr(hit, "_raw_response", None)
    assert raw is None or raw == paid._raw_response  # type: ignore[attr-defined]


class _SlowReplyRedis(RedisCache):
    """A Redis whose reply to one armed GET is held up on the way back (a slow network): the
    server answered it before anything written after it was sent."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(url, prefix=prefix)
        self.armed = False
        self.answered = asyncio.Event()
        self.delivered = asyncio.Event()

    async def aget(self, key: str) -> str | None:
        text = await super().aget(key)
        if self.armed:
            self.armed = False
            self.answered.set()
            await self.delivered.wait()
        return text


async def test_a_call_made_after_a_refresh_returned_gets_the_refreshed_answer(
    redis_url: str,
) -> None:
    """A call made once ``refresh`` has stored a new answer must not be served the old one by
    joining a read of the same key that was sent before the refresh (coalesced reads): the
    caller asked for a new answer, got it, and the next call hands back the one it replaced."""
    store = _SlowReplyRedis(redis_url, f"advfinal:{uuid.uuid4().hex}:")
    llm = Counting()

    @instructor_cache(store, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    try:
        old = await extract("Ann")
        store.armed = True
        earlier = asyncio.ensure_future(extract("Ann"))  # its GET is answered with the old entry
        await store.answered.wait()
        fresh = await extract.refresh("Ann")
        assert fresh != old
        later = asyncio.ensure_future(extract("Ann"))  # made after the refresh returned
        for _ in range(50):
            await asyncio.sleep(0)
        store.delivered.set()
        await earlier  # its read overlapped the refresh: either answer is right for it
        assert await later == fresh
    finally:
        await aclose_clients(store)
        store.clear()
        store.close()


async def test_a_call_made_after_an_invalidation_returned_is_not_served_the_dropped_entry(
    redis_url: str,
) -> None:
    """A call made once ``invalidate`` has dropped an entry must not be served that entry by
    joining a read of the same key that was sent before the invalidation (coalesced reads)."""
    store = _SlowReplyRedis(redis_url, f"advfinal:{uuid.uuid4().hex}:")
    llm = Counting()

    @instructor_cache(store, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    try:
        old = await extract("Ann")
        store.armed = True
        earlier = asyncio.ensure_future(extract("Ann"))  # its GET is answered with the old entry
        await store.answered.wait()
        assert await extract.invalidate("Ann")
        later = asyncio.ensure_future(extract("Ann"))  # made after the invalidation returned
        for _ in range(50):
            await asyncio.sleep(0)
        store.delivered.set()
        await earlier  # its read overlapped the invalidation: either answer is right for it
        assert await later != old
        assert llm.calls == ["Ann", "Ann"]
    finally:
        await aclose_clients(store)
        store.clear()
        store.close()


def test_uncached_on_a_stream_stacked_over_a_cached_layer_calls_the_function() -> None:
    """``uncached`` is one call that neither reads nor writes the cache; on a stream layer over
    another cached layer, the layer below is made only when the stream is consumed, after the
    ``off`` block closed, so it serves its cached (old) items and nothing is called."""
    llm = Counting()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str) -> Iterator[UserDetail]:
        yield llm(text)

    old = list(extract("Ann"))
    fresh = list(extract.uncached("Ann"))
    assert llm.calls == ["Ann", "Ann"]
    assert fresh != old


def test_a_stacked_stream_made_in_a_replay_block_does_not_pay_when_read_after_it() -> None:
    """A stream follows the block it was made in, even when consumed after it; over another
    cached layer, a replay miss must raise, not be paid by the layer below, which was made
    only once the block had closed and so ran in normal mode."""
    llm = Counting()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str) -> Iterator[UserDetail]:
        yield llm(text)

    with cache_control("replay"):
        stream = extract("Bo")
    with pytest.raises(CacheMissError):
        list(stream)
    assert llm.calls == []


def test_a_stream_recorded_into_another_store_does_not_cost_the_own_stores_recording() -> None:
    """A ``write-only`` stream routed to another store (recording fixtures) outdates the
    streams of its key recording into the function's own store too: their paid answer is then
    never stored there, and the next call pays again, though nothing replaced it there."""
    llm = Counting()
    fixtures = MemoryCache()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str) -> Iterator[UserDetail]:
        yield llm(text)
        yield llm(text + "!")

    stream = extract("Ann")
    first = next(stream)  # recording into the function's own store
    with cache_control("write-only", store=fixtures):
        list(extract("Ann"))
    paid = [first, *stream]
    assert list(extract("Ann")) == paid
    assert len(llm.calls) == 4
