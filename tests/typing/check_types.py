"""Static checks, run by mypy --strict (not by pytest): decorated functions keep their types."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Sequence
from typing import Any

from pydantic import BaseModel
from typing_extensions import assert_type

from instructor_cache import (
    CacheEvent,
    CacheInfo,
    DiskCache,
    FixtureStore,
    MemoryCache,
    RawResponse,
    RedisCache,
    TieredCache,
    WarmCounts,
    cache_control,
    disk_cache,
    instructor_cache,
    memory_cache,
    pricing,
    redis_cache,
    tiered_cache,
    track_calls,
)
from instructor_cache._control import Control
from instructor_cache.errors import CacheMissError


class UserDetail(BaseModel):
    name: str


@instructor_cache
def bare(text: str, model: str = "m") -> UserDetail:
    return UserDetail(name=text)


@instructor_cache(DiskCache("./cache"), ttl=60, ignore=("client",))
def with_options(text: str, client: object = None) -> list[UserDetail]:
    return [UserDetail(name=text)]


@instructor_cache(FixtureStore("./fixtures"), ignore=("api_key",))
def recorded(text: str, api_key: str) -> UserDetail:
    return UserDetail(name=text)


assert_type(recorded("a", api_key="k"), UserDetail)


@instructor_cache(MemoryCache(maxsize=10))
async def asynchronous(text: str) -> UserDetail | None:
    return None


@memory_cache(maxsize=100)
@disk_cache("./cache", ttl=86400)
def stacked(text: str) -> UserDetail:
    return UserDetail(name=text)


@redis_cache("redis://localhost:6379/0", prefix="app", ttl=3600)
@tiered_cache(MemoryCache(maxsize=100), RedisCache("redis://localhost:6379/0"))
def shared(text: str, *, model: str = "m") -> list[UserDetail]:
    return [UserDetail(name=text)]


@instructor_cache(TieredCache(MemoryCache(), DiskCache("./cache"), RedisCache("redis://h/0")))
async def tiered(text: str) -> UserDetail:
    return UserDetail(name=text)


@instructor_cache
def stream(text: str) -> Iterator[UserDetail]:
    yield UserDetail(name=text)


@memory_cache(stream="final")
async def astream(text: str, *, model: str = "m") -> AsyncIterator[UserDetail]:
    yield UserDetail(name=text)


class Service:
    @instructor_cache(ignore=("self",))
    def run(self, text: str) -> UserDetail:
        return UserDetail(name=text)

    @instructor_cache(ignore=("self",))
    def items(self, text: str) -> Iterator[UserDetail]:
        yield UserDetail(name=text)


async def usage() -> None:
    assert_type(shared("a", model="x"), list[UserDetail])
    assert_type(await tiered("a"), UserDetail)
    assert_type(shared.cache_info().tiers, tuple[CacheInfo, ...])
    assert_type(Service().run("a"), UserDetail)
    assert_type(Service().run.cache_key("a"), str)
    assert_type(bare("a"), UserDetail)
    assert_type(bare("a", model="n"), UserDetail)
    assert_type(with_options("a"), list[UserDetail])
    assert_type(await asynchronous("a"), UserDetail | None)
    assert_type(stacked("a"), UserDetail)
    assert_type(bare.cache_info(), CacheInfo)
    assert_type(bare.cache_info().tokens_saved, int)
    assert_type(bare.cache_info().cost_saved, float)
    assert_type(pricing.price_of("gpt-4o"), pricing.Price | None)
    assert_type(pricing.cost("gpt-4o", 1, 2), float)
    assert_type(RawResponse({"model": "m"}).model, Any)
    assert_type(bare.cache_key("a"), str)
    assert_type(bare.invalidate("a"), bool)
    assert_type(bare.refresh("a"), UserDetail)
    assert_type(await asynchronous.invalidate("a"), bool)
    assert_type(await asynchronous.refresh("a"), UserDetail | None)
    assert_type(bare.map(["a", "b"]), Sequence[UserDetail])
    assert_type(bare.map(["a"], return_exceptions=True), Sequence[UserDetail | BaseException])
    assert_type(bare.warm(["a"]), WarmCounts)
    assert_type(await asynchronous.amap(["a"], concurrency=4), Sequence[UserDetail | None])
    assert_type(await asynchronous.awarm(["a"]), WarmCounts)
    bare.amap(["a"])  # type: ignore[attr-defined]  # sync functions batch with map()
    bare.cache_clear()
    assert_type(await asynchronous.acache_clear(), None)
    bare.acache_clear()  # type: ignore[attr-defined]  # sync functions clear with cache_clear()
    bare(1)  # type: ignore[arg-type]
    bare("a", wrong=1)  # type: ignore[call-arg]
    assert_type(stream("a"), Generator[UserDetail, None, None])
    assert_type(stream.refresh("a"), Generator[UserDetail, None, None])
    assert_type(stream.invalidate("a"), bool)
    assert_type(Service().items("a"), Generator[UserDetail, None, None])
    assert_type(astream("a", model="n"), AsyncGenerator[UserDetail, None])
    assert_type(await astream.invalidate("a"), bool)
    assert_type(await astream.acache_clear(), None)
    assert_type(astream.cache_info(), CacheInfo)
    stream.map(["a"])  # type: ignore[attr-defined]  # streams do not batch
    astream("a", wrong=1)  # type: ignore[call-arg]
    astream.amap(["a"])  # type: ignore[attr-defined]  # nor do async streams


async def controlled() -> None:
    """Per-call control: the uncached shortcut keeps each signature, the blocks their types."""
    assert_type(bare.uncached("a", model="n"), UserDetail)
    assert_type(await asynchronous.uncached("a"), UserDetail | None)
    bare.uncached(1)  # type: ignore[arg-type]
    with cache_control("replay", ttl=60, store=MemoryCache()) as control:
        assert_type(control, Control)
    cache_control("replya")  # type: ignore[arg-type]  # a mode is one of five words
    with track_calls() as calls:
        assert_type(calls, list[CacheEvent])
    assert_type(CacheMissError("m", function="f", key="k").key, str)
    assert_type(stream.uncached("a"), Generator[UserDetail, None, None])
    assert_type(astream.uncached("a"), AsyncGenerator[UserDetail, None])
