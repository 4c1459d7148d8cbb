"""The two drivers: all the I/O of a decorated function, once sync and once async.

The ``Memo`` decides (key, hit or miss, what to store); the guarded store
(``backends._compose``) fails open; a driver only runs the steps in order.
The two are the same skeleton written twice, side by side, once with
``await``: change them together. A hit is: build the key, one read, one
decode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from instructor_cache._memo import MISS, Memo
from instructor_cache._stats import CacheInfo
from instructor_cache.backends._compose import GuardedStore

__all__ = ["Driven", "async_driver", "sync_driver"]


class Driven(NamedTuple):
    """What a driver hands the decorator to attach to the wrapper."""

    wrapper: Callable[..., Any]
    invalidate: Callable[..., Any]
    refresh: Callable[..., Any]
    cache_clear: Callable[[], None]
    acache_clear: Callable[[], Any] | None
    cache_info: Callable[[], CacheInfo]


def sync_driver(fn: Callable[..., Any], memo: Memo[Any], store: GuardedStore) -> Driven:
    make_key, decode, encode, get = memo.key.build, memo.decode, memo.encode, store.get
    gate, bypassing = store.gate, store.bypassing
    # Over another cached layer, a refresh must reach the function through it
    # and an invalidation must clear it too, or the layer below answers again.
    call_fresh = getattr(fn, "refresh", fn)
    invalidate_below = getattr(fn, "invalidate", None)

    def fill(key: str, call: Callable[..., Any], args: Any, kwargs: Any, replacing: bool) -> Any:
        started = time.perf_counter()
        value = call(*args, **kwargs)
        memo.check_context(key)
        text = encode(value, time.perf_counter() - started)
        if text is not None:
            store.set(key, text, memo.ttl, explicit=replacing)
        elif replacing:  # a refresh that stores nothing must not leave the old entry
            store.delete(key, explicit=True)
        return value

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if gate.open_until and bypassing():  # a dead store: not even a key
            memo.bypass()
            return fn(*args, **kwargs)
        key = make_key(args, kwargs)
        text = get(key)
        value = decode(text)
        if value is not MISS:
            return value
        if text is not None:
            store.delete(key)  # it did not decode
        return fill(key, fn, args, kwargs, False)

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        removed = store.invalidate(make_key(args, kwargs))
        below = invalidate_below(*args, **kwargs) if invalidate_below is not None else False
        return bool(removed or below)

    def refresh(*args: Any, **kwargs: Any) -> Any:
        return fill(make_key(args, kwargs), call_fresh, args, kwargs, True)

    return Driven(wrapper, invalidate, refresh, *_clear_and_info(memo, store, None))


def async_driver(fn: Callable[..., Any], memo: Memo[Any], store: GuardedStore) -> Driven:
    make_key, decode, encode, get = memo.key.build, memo.decode, memo.encode, store.aget
    gate, bypassing = store.gate, store.bypassing
    call_fresh = getattr(fn, "refresh", fn)
    invalidate_below = getattr(fn, "invalidate", None)

    async def fill(
        key: str, call: Callable[..., Any], args: Any, kwargs: Any, replacing: bool
    ) -> Any:
        started = time.perf_counter()
        value = await call(*args, **kwargs)
        memo.check_context(key)
        text = encode(value, time.perf_counter() - started)
        if text is not None:
            await store.aset(key, text, memo.ttl, explicit=replacing)
        elif replacing:  # a refresh that stores nothing must not leave the old entry
            await store.adelete(key, explicit=True)
        return value

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if gate.open_until and bypassing():  # a dead store: not even a key
            memo.bypass()
            return await fn(*args, **kwargs)
        key = make_key(args, kwargs)
        text = await get(key)
        value = decode(text)
        if value is not MISS:
            return value
        if text is not None:
            await store.adelete(key)  # it did not decode
        return await fill(key, fn, args, kwargs, False)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        removed = await store.ainvalidate(make_key(args, kwargs))
        below = await invalidate_below(*args, **kwargs) if invalidate_below is not None else False
        return bool(removed or below)

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        return await fill(make_key(args, kwargs), call_fresh, args, kwargs, True)

    async def acache_clear() -> None:
        await store.aclear_prefix(memo.key.prefix)
        memo.stats.reset()
        store.reset_stats()

    return Driven(wrapper, invalidate, refresh, *_clear_and_info(memo, store, acache_clear))


def _clear_and_info(
    memo: Memo[Any], store: GuardedStore, acache_clear: Callable[[], Any] | None
) -> tuple[Callable[[], None], Callable[[], Any] | None, Callable[[], CacheInfo]]:
    """``cache_clear`` and ``cache_info``, which both drivers offer as plain calls.

    ``cache_clear`` raises ``BackendError`` when the store could not clear
    (the statistics are then left as they were): a caller who clears
    relies on the entries being gone. An async function over a store only
    an event loop can reach (an asyncio Redis client) clears with
    ``await fn.acache_clear()``.
    """

    def cache_clear() -> None:
        store.clear_prefix(memo.key.prefix)
        memo.stats.reset()
        store.reset_stats()

    def cache_info() -> CacheInfo:
        return memo.cache_info(store.size(), store.tier_infos())

    return cache_clear, acache_clear, cache_info
