"""Stream functions: a miss is recorded while the caller consumes it, a hit is replayed.

A decorated generator (or a function returning an iterator, as instructor's
``create_iterable`` and ``create_partial`` do) hands the caller a generator
of the same kind, sync or async. Nothing is read until the caller asks for
the first item, as with any generator. On a miss each item is passed on as
it comes, and a copy of it is kept: the caller may change an item it holds
before the stream ends, and the entry must be what it was handed. Only a
stream that runs to its end is stored (through the codec's round-trip
check, like any result); one the caller closes, abandons or that raises
stores nothing, the caller sees the source's own exception, and the source
is closed (``aclose``d) when ours is. A hit yields the stored items in order
(``stream="final"``: only the last one) and counts the original stream's
duration, from the call to its end, as saved.

Streams do not share single-flight: each concurrent identical stream calls
the function, and the last to complete stores its items. A waiter could only
be handed the leader's items once the leader's caller had consumed them all,
at that caller's pace, or fail with it: slower than paying, for a partial
stream. ``map`` and ``warm`` (whose results are lists of values) refuse.

The sync and async streams are the same steps, side by side: change them
together.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from instructor_cache._control import within
from instructor_cache._events import Pending, Watch, note_bypass
from instructor_cache._memo import MISS, Memo, annotations_of
from instructor_cache._misses import shielded
from instructor_cache._options import StreamMode
from instructor_cache._recording import Recording, Recordings
from instructor_cache._stats import CacheInfo
from instructor_cache._steering import Steering, StreamPlan, stream_missed, stream_plan
from instructor_cache._stream_types import stream_shape
from instructor_cache.backends._compose import GuardedStore
from instructor_cache.errors import ConfigurationError

__all__ = ["stream_wrapper"]


Arguments = tuple[Any, Any]  # a call's args and kwargs, as its key is built from them


def stream_wrapper(
    fn: Callable[..., Any],
    memo: Memo[Any],
    store: GuardedStore,
    mode: StreamMode | None,
    steering: Steering[GuardedStore],
) -> Callable[..., Any] | None:
    """``fn``'s wrapper with its cache controls if it is a stream function, else ``None``."""
    shape = stream_shape(fn, annotations_of(fn)["return"], mode, f"{memo.name}()")
    if shape is None:
        return None
    driver = async_stream_driver if shape.is_async else sync_stream_driver
    return driver(fn, memo, store, shape.final, steering)


def _keeps(
    memo: Memo[Any], plan: StreamPlan, key: str, recording: Recording, arguments: Arguments
) -> bool:
    """Whether a stream that ran to its end may store (or, a refresh, delete) under ``key``.

    An outdated stream touches nothing: what the entry holds now was written
    after the invalidation, refresh or clear that outdated it, and is newer
    than anything this stream could store or delete. Nor does one whose
    arguments changed while it ran (a list its caller appended to between
    items): the function read the new ones, so its answer is not ``key``'s.
    """
    if not plan.stores or recording.outdated:
        return False
    memo.check_context(key)
    try:
        same = plan.make_key(*arguments) == key
    except Exception:  # noqa: BLE001  (an argument made unencodable meanwhile: not the same)
        same = False
    if not same:
        memo.arguments_moved()
    return same


def _store(
    memo: Memo[Any], plan: StreamPlan, key: str, recording: Recording, arguments: Arguments
) -> None:
    """Store what a stream recorded, once it ran to its end, if ``_keeps`` lets it."""
    if not _keeps(memo, plan, key, recording, arguments):
        return
    text = recording.text(memo)
    if text is not None:
        plan.store.set(key, text, plan.ttl)
    elif plan.fresh:  # a refresh that stores nothing must not leave the old entry
        plan.store.delete(key)


async def _astore(
    memo: Memo[Any], plan: StreamPlan, key: str, recording: Recording, arguments: Arguments
) -> None:
    """``_store`` for an async stream."""
    if not _keeps(memo, plan, key, recording, arguments):
        return
    text = recording.text(memo)
    # Paid for: the write goes on even if our caller gives up meanwhile.
    if text is not None:
        await shielded(functools.partial(plan.store.aset, key, text, plan.ttl))
    elif plan.fresh:  # a refresh that stores nothing must not leave the old entry
        await shielded(functools.partial(plan.store.adelete, key))


def _watched(
    watch: Watch,
    build_key: Callable[[], str],
    recorded: Callable[[str, Pending | None], Generator[Any, None, None]],
) -> Generator[Any, None, None]:
    """``recorded``'s items; with an event hook, its event once the stream ends, however it ends.

    The key is built here, at the first item, from the arguments as the
    function is about to read them: built when the stream was made, it would
    file under those arguments an answer to what the caller changed them to
    meanwhile (a list it appended to).
    """
    pending, started = Pending() if watch.on else None, time.perf_counter()
    key: str | None = None
    try:
        key = build_key()
        yield from recorded(key, pending)
    except BaseException as exc:
        if pending is not None:  # closed by its caller (GeneratorExit) is not raised
            watch.emit(pending, key, started, raised=not isinstance(exc, GeneratorExit))
        raise
    if pending is not None:
        watch.emit(pending, key, started, raised=False)


async def _awatched(
    watch: Watch,
    build_key: Callable[[], str],
    recorded: Callable[[str, Pending | None], AsyncGenerator[Any, None]],
) -> AsyncGenerator[Any, None]:
    """``_watched`` for an async stream."""
    pending, started = Pending() if watch.on else None, time.perf_counter()
    key: str | None = None
    source: AsyncGenerator[Any, None] | None = None
    try:
        key = build_key()
        source = recorded(key, pending)
        async for item in source:
            yield item
    except BaseException as exc:
        if pending is not None:
            watch.emit(pending, key, started, raised=not isinstance(exc, GeneratorExit))
        raise
    finally:
        if source is not None:
            await source.aclose()
    if pending is not None:
        watch.emit(pending, key, started, raised=False)


def _refuse(name: str, where: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise ConfigurationError(
            f"{name}() does not apply to the stream function {where}: its results are "
            "streams consumed one at a time. Call it for each input and consume each stream"
        )

    return refused


def sync_stream_driver(
    fn: Callable[..., Any],
    memo: Memo[Any],
    store: GuardedStore,
    final: bool,
    steering: Steering[GuardedStore],
) -> Callable[..., Any]:
    """The wrapper of a sync stream function, its cache controls set on it."""
    make_key, decode, recordings, watch = memo.key.build, memo.decode, Recordings(), memo.watch
    # Over another cached layer, a refresh must reach the function through it
    # and an invalidation must clear it too, or the layer below answers again.
    call_fresh, invalidate_below = getattr(fn, "refresh", fn), getattr(fn, "invalidate", None)

    def stream(args: Any, kwargs: Any, fresh: bool) -> Generator[Any, None, None]:
        plan = stream_plan(memo, steering, fresh)
        build_key = functools.partial(plan.make_key, args, kwargs)
        return _watched(watch, build_key, functools.partial(recorded, args, kwargs, plan))

    def recorded(
        args: Any, kwargs: Any, plan: StreamPlan, key: str, pending: Pending | None
    ) -> Generator[Any, None, None]:
        target, fresh = plan.store, plan.fresh
        if fresh:  # a stream recording it now must not store its older items over these
            recordings.outdate(key, target)
        with watch.noting(pending):  # what decides the call's outcome
            value = MISS
            if plan.mode == "off":
                note_bypass()
            elif not fresh:
                text = target.get(key)
                if text is not None:
                    value = decode(text)
                    if value is MISS and plan.stores:  # replay, read-only: left as it is
                        target.delete(key)  # it did not decode
            if value is MISS:
                stream_missed(memo, plan, key, args, kwargs)
        if value is not MISS:
            yield from [value] if final else value
            return
        recording = recordings.start(key, final, memo, target)
        try:
            with within(plan.blocks):  # a layer below reads its control when made, as this one
                source = iter((call_fresh if fresh else fn)(*args, **kwargs))
            try:
                for item in source:
                    recording.add(item)
                    yield item
            finally:
                getattr(source, "close", _nothing)()
        finally:
            recordings.stop(recording)
        _store(memo, plan, key, recording, (args, kwargs))

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        return stream(args, kwargs, False)

    def refresh(*args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        return stream(args, kwargs, True)

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        key = make_key(args, kwargs)
        recordings.outdate(key, store)  # a stream recording it now must not store it back
        removed = store.invalidate(key)
        below = invalidate_below(*args, **kwargs) if invalidate_below is not None else False
        return bool(removed or below)

    _attach(wrapper, fn, memo, store, recordings, refresh=refresh, invalidate=invalidate)
    wrapper.map = _refuse("map", memo.name)  # type: ignore[attr-defined]
    wrapper.warm = _refuse("warm", memo.name)  # type: ignore[attr-defined]
    return wrapper


def async_stream_driver(
    fn: Callable[..., Any],
    memo: Memo[Any],
    store: GuardedStore,
    final: bool,
    steering: Steering[GuardedStore],
) -> Callable[..., Any]:
    """The wrapper of an async stream function, its cache controls set on it."""
    make_key, decode, recordings, watch = memo.key.build, memo.decode, Recordings(), memo.watch
    # Over another cached layer, a refresh must reach the function through it
    # and an invalidation must clear it too, or the layer below answers again.
    call_fresh, invalidate_below = getattr(fn, "refresh", fn), getattr(fn, "invalidate", None)

    def stream(args: Any, kwargs: Any, fresh: bool) -> AsyncGenerator[Any, None]:
        plan = stream_plan(memo, steering, fresh)
        build_key = functools.partial(plan.make_key, args, kwargs)
        return _awatched(watch, build_key, functools.partial(recorded, args, kwargs, plan))

    async def recorded(
        args: Any, kwargs: Any, plan: StreamPlan, key: str, pending: Pending | None
    ) -> AsyncGenerator[Any, None]:
        target, fresh = plan.store, plan.fresh
        if fresh:
            recordings.outdate(key, target)
        with watch.noting(pending):  # what decides the call's outcome
            value = MISS
            if plan.mode == "off":
                note_bypass()
            elif not fresh:
                text = await target.aget(key)
                if text is not None:
                    value = decode(text)
                    if value is MISS and plan.stores:  # replay, read-only: left as it is
                        await target.adelete(key)  # it did not decode
            if value is MISS:
                stream_missed(memo, plan, key, args, kwargs)
        if value is not MISS:
            for item in [value] if final else value:
                yield item
            return
        recording = recordings.start(key, final, memo, target)
        try:
            with within(plan.blocks):
                source = aiter((call_fresh if fresh else fn)(*args, **kwargs))
            try:
                async for item in source:
                    recording.add(item)
                    yield item
            finally:
                await getattr(source, "aclose", _anothing)()
        finally:
            recordings.stop(recording)
        await _astore(memo, plan, key, recording, (args, kwargs))

    def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        return stream(args, kwargs, False)

    def refresh(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        return stream(args, kwargs, True)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        key = make_key(args, kwargs)
        recordings.outdate(key, store)
        removed = await store.ainvalidate(key)
        below = await invalidate_below(*args, **kwargs) if invalidate_below is not None else False
        return bool(removed or below)

    _attach(wrapper, fn, memo, store, recordings, refresh=refresh, invalidate=invalidate)
    wrapper.acache_clear = functools.partial(_acache_clear, memo, store, recordings)  # type: ignore[attr-defined]
    wrapper.amap = _refuse("amap", memo.name)  # type: ignore[attr-defined]
    wrapper.awarm = _refuse("awarm", memo.name)  # type: ignore[attr-defined]
    return wrapper


def _attach(
    wrapper: Callable[..., Any],
    fn: Callable[..., Any],
    memo: Memo[Any],
    store: GuardedStore,
    recordings: Recordings,
    *,
    refresh: Callable[..., Any],
    invalidate: Callable[..., Any],
) -> None:
    """The controls both kinds share; ``cache_clear`` raises ``BackendError`` if it failed.

    ``update_wrapper`` copies ``fn.__dict__``, which holds an inner layer's
    controls when decorators are stacked: ours are set after it.
    """
    functools.update_wrapper(wrapper, fn)

    def cache_clear() -> None:
        recordings.outdate(None, store)  # a stream recording now must not store after the clear
        store.clear_prefix(memo.key.prefix)
        memo.stats.reset()
        store.reset_stats()

    def cache_info() -> CacheInfo:
        return memo.cache_info(store.size(), store.tier_infos())

    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
    wrapper.cache_info = cache_info  # type: ignore[attr-defined]


async def _acache_clear(memo: Memo[Any], store: GuardedStore, recordings: Recordings) -> None:
    """``cache_clear`` for an async stream function over an asyncio-only store."""
    recordings.outdate(None, store)
    await store.aclear_prefix(memo.key.prefix)
    memo.stats.reset()
    store.reset_stats()


def _nothing() -> None:
    """What closing a source iterator without ``close`` (a list's) does."""


async def _anothing() -> None:
    """What closing a source async iterator without ``aclose`` does."""
