"""The two drivers: all the I/O of a decorated function, once sync and once async.

The ``Memo`` decides (key, hit or miss, what to store); the guarded store
(``backends._compose``) fails open; a miss goes to ``_misses`` (single-flight);
a driver only runs the steps in order. The two are the same skeleton
written twice, side by side, once with ``await``: change them together. A
hit is: build the key, one read, one decode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from instructor_cache._batches import AsyncBatches, SyncBatches
from instructor_cache._control import SWITCH, current, mode_of, steer
from instructor_cache._events import note_bypass
from instructor_cache._flight import Flights
from instructor_cache._memo import MISS, Memo
from instructor_cache._misses import AsyncMisses, SyncMisses
from instructor_cache._stats import CacheInfo
from instructor_cache._steering import AsyncSteered, Steering, SyncSteered
from instructor_cache.backends._compose import GuardedStore
from instructor_cache.backends._contract import Store

__all__ = ["Driven", "async_driver", "sync_driver"]


class Driven(NamedTuple):
    """What a driver hands the decorator to attach to the wrapper."""

    wrapper: Callable[..., Any]
    invalidate: Callable[..., Any]
    refresh: Callable[..., Any]
    cache_clear: Callable[[], None]
    acache_clear: Callable[[], Any] | None
    cache_info: Callable[[], CacheInfo]
    batches: SyncBatches | AsyncBatches


Route = Callable[[Store], GuardedStore]
"""Compose another store for the function, as its own was: where a ``store=`` control sends it."""


def sync_driver(
    fn: Callable[..., Any], memo: Memo[Any], store: GuardedStore, backend: Store, route: Route
) -> Driven:
    make_key, decode, get = memo.key.build, memo.decode, store.get
    gate, bypassing = store.gate, store.bypassing
    misses = SyncMisses(fn, memo, store, memo.single_flight)
    miss, flights = misses.miss, misses.flights
    # Over another cached layer, an invalidation must clear it too, or the
    # layer below answers again.
    invalidate_below = getattr(fn, "invalidate", None)
    watch = memo.watch
    steering = Steering(
        backend, SyncSteered(fn, memo, store, misses), _sync_steered(fn, memo, route)
    )

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if watch.on and not watch.enter():  # an event hook: run the call in a record
            return watch.call(wrapper, args, kwargs)
        if SWITCH.on and (control := steer()) is not None:  # a cache_control block, or the env
            return steering.to(control).call(mode_of(control), args, kwargs)
        if gate.open_until and bypassing():  # a dead store: single-flight alone
            note_bypass()
            if not misses.single_flight:
                memo.missed()
                return fn(*args, **kwargs)
            return miss(make_key(args, kwargs), flights.landings, args, kwargs, offline=True)
        key = make_key(args, kwargs)
        landings = flights.landings
        text = get(key)
        if text is not None:
            value = decode(text)
            if value is not MISS:
                return value
            store.delete(key)  # it did not decode
        return miss(key, landings, args, kwargs)

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        key = make_key(args, kwargs)
        flights.outdate(key)  # a call computing it now must not store it back
        removed = store.invalidate(key)
        below = invalidate_below(*args, **kwargs) if invalidate_below is not None else False
        return bool(removed or below)

    def refresh(*args: Any, **kwargs: Any) -> Any:
        if watch.on and not watch.enter():  # a paid call: it reports, as a stream's refresh does
            return watch.call(refresh, args, kwargs)
        target = steering.to(current() if SWITCH.on else None)  # a store= block's store
        return target.refresh(target.make_key(args, kwargs), args, kwargs)

    batches = SyncBatches(memo, steering)
    return Driven(
        wrapper, invalidate, refresh, *_clear_and_info(memo, store, flights, None), batches
    )


def async_driver(
    fn: Callable[..., Any], memo: Memo[Any], store: GuardedStore, backend: Store, route: Route
) -> Driven:
    make_key, decode, get = memo.key.build, memo.decode, store.aget
    gate, bypassing = store.gate, store.bypassing
    misses = AsyncMisses(fn, memo, store, memo.single_flight)
    miss, flights = misses.miss, misses.flights
    invalidate_below = getattr(fn, "invalidate", None)
    watch = memo.watch
    steering = Steering(
        backend, AsyncSteered(fn, memo, store, misses), _async_steered(fn, memo, route)
    )

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if watch.on and not watch.enter():
            return await watch.acall(wrapper, args, kwargs)
        if SWITCH.on and (control := steer()) is not None:
            return await steering.to(control).call(mode_of(control), args, kwargs)
        if gate.open_until and bypassing():  # a dead store: single-flight alone
            note_bypass()
            if not misses.single_flight:
                memo.missed()
                return await fn(*args, **kwargs)
            key = make_key(args, kwargs)
            return await miss(key, flights.landings, args, kwargs, offline=True)
        key = make_key(args, kwargs)
        landings = flights.landings
        text = await get(key)
        if text is not None:
            value = decode(text)
            if value is not MISS:
                return value
            await store.adelete(key)  # it did not decode
        return await miss(key, landings, args, kwargs)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        key = make_key(args, kwargs)
        flights.outdate(key)
        removed = await store.ainvalidate(key)
        below = await invalidate_below(*args, **kwargs) if invalidate_below is not None else False
        return bool(removed or below)

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        if watch.on and not watch.enter():
            return await watch.acall(refresh, args, kwargs)
        target = steering.to(current() if SWITCH.on else None)
        return await target.refresh(target.make_key(args, kwargs), args, kwargs)

    async def acache_clear() -> None:
        flights.outdate_all()
        await store.aclear_prefix(memo.key.prefix)
        memo.stats.reset()
        store.reset_stats()

    batches = AsyncBatches(memo, steering)
    return Driven(
        wrapper, invalidate, refresh, *_clear_and_info(memo, store, flights, acache_clear), batches
    )


def _sync_steered(
    fn: Callable[..., Any], memo: Memo[Any], route: Route
) -> Callable[[Store], SyncSteered]:
    def make(backend: Store) -> SyncSteered:
        store = route(backend)
        misses = SyncMisses(fn, memo, store, memo.single_flight)
        return SyncSteered(fn, memo, store, misses, routed_to=backend)

    return make


def _async_steered(
    fn: Callable[..., Any], memo: Memo[Any], route: Route
) -> Callable[[Store], AsyncSteered]:
    def make(backend: Store) -> AsyncSteered:
        store = route(backend)
        misses = AsyncMisses(fn, memo, store, memo.single_flight)
        return AsyncSteered(fn, memo, store, misses, routed_to=backend)

    return make


def _clear_and_info(
    memo: Memo[Any], store: GuardedStore, flights: Flights, acache_clear: Callable[[], Any] | None
) -> tuple[Callable[[], None], Callable[[], Any] | None, Callable[[], CacheInfo]]:
    """``cache_clear`` and ``cache_info``, which both drivers offer as plain calls.

    ``cache_clear`` raises ``BackendError`` when the store could not clear
    (the statistics are then left as they were): a caller who clears
    relies on the entries being gone. An async function over a store only
    an event loop can reach (an asyncio Redis client) clears with
    ``await fn.acache_clear()``.
    """

    def cache_clear() -> None:
        flights.outdate_all()  # a call computing now must not store its result after the clear
        store.clear_prefix(memo.key.prefix)
        memo.stats.reset()
        store.reset_stats()

    def cache_info() -> CacheInfo:
        return memo.cache_info(store.size(), store.tier_infos())

    return cache_clear, acache_clear, cache_info
