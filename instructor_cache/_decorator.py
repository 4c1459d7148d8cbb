"""``@instructor_cache``: inspect the function once, then wrap it, sync or async.

All decisions are made at decoration time: the ``Memo`` (key, codec,
policy), the guarded store (``backends._compose``) and the driver, sync or
async (``_drivers``), so that a call runs without asking anything.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any, Concatenate, Literal, Protocol, TypeVar, overload

from typing_extensions import ParamSpec, Self, Unpack

from instructor_cache._batch import Progress, WarmCounts
from instructor_cache._batches import batch_methods
from instructor_cache._control import uncached_of
from instructor_cache._descriptions import describing
from instructor_cache._drivers import async_driver, sync_driver
from instructor_cache._keys import IGNORED_ATTRIBUTE
from instructor_cache._memo import Memo
from instructor_cache._methods import CachedMethod, takes_self
from instructor_cache._options import CacheOptions, Options, parse_options
from instructor_cache._stats import CacheInfo
from instructor_cache._steering import Steering
from instructor_cache._stream_types import AsyncStreamFunction, StreamFunction
from instructor_cache._streams import stream_wrapper
from instructor_cache.backends._compose import GuardedStore, compose
from instructor_cache.backends._contract import DescribesCalls, Store, check_store
from instructor_cache.backends.memory import MemoryCache
from instructor_cache.errors import ConfigurationError, UncacheableFunctionError

__all__ = [
    "AsyncCachedFunction",
    "CacheDecorator",
    "CacheOptions",
    "CachedFunction",
    "instructor_cache",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R2 = TypeVar("R2")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")

DEFAULT_MAXSIZE = 1024
MEMO_ATTRIBUTE = "__instructor_cache_memo__"
"""Where a decorated function keeps its ``Memo``, for a cached layer stacked on it."""


class CachedFunction(Protocol[P, R_co]):
    """A decorated sync function: the original signature plus cache controls."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[T, P2], R2], instance: T, owner: type[Any] | None = None
    ) -> CachedFunction[P2, R2]: ...

    @property
    def __wrapped__(self) -> Callable[P, R_co]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def cache_info(self) -> CacheInfo:
        """Hits, misses, size and errors, shaped like ``functools``' ``CacheInfo``."""

    def cache_clear(self) -> None:
        """Remove this function's entries (others' in a shared store stay) and reset stats."""

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The exact key under which the store keeps this call's result."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete this call's entry; ``True`` if there was one."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the function and overwrite this call's entry with the new result."""

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the function, neither reading nor writing the cache (``cache_control("off")``)."""

    @overload
    def map(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[False] = ...,
        progress: Progress = ...,
    ) -> Sequence[R_co]: ...
    @overload
    def map(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[True],
        progress: Progress = ...,
    ) -> Sequence[R_co | BaseException]: ...
    def map(self, items: Iterable[Any], **options: Any) -> list[Any]:
        """Call for every item, in input order: one bulk read, each distinct miss paid once.

        An item is the argument of a one-parameter function; otherwise a
        tuple is the positional arguments, a dict the keyword arguments.
        """

    def warm(
        self, items: Iterable[Any], *, concurrency: int = ..., progress: Progress = ...
    ) -> WarmCounts:
        """Compute and store what is not cached yet; count hits, computed and failed inputs."""


class AsyncCachedFunction(Protocol[P, R_co]):
    """A decorated async function: the original signature plus cache controls."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[T, P2], R2],
        instance: T,
        owner: type[Any] | None = None,
    ) -> AsyncCachedFunction[P2, R2]: ...

    @property
    def __wrapped__(self) -> Callable[P, Coroutine[Any, Any, R_co]]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...
    def cache_info(self) -> CacheInfo:
        """Hits, misses, size and errors, shaped like ``functools``' ``CacheInfo``."""

    def cache_clear(self) -> None:
        """Remove this function's entries (others' in a shared store stay) and reset stats."""

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The exact key under which the store keeps this call's result."""

    async def acache_clear(self) -> None:
        """``cache_clear`` awaited: works with a store only an event loop can reach."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, bool]:
        """Delete this call's entry; ``True`` if there was one."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Call the function and overwrite this call's entry with the new result."""

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Call the function, neither reading nor writing the cache (``cache_control("off")``)."""

    @overload
    async def amap(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[False] = ...,
        progress: Progress = ...,
    ) -> Sequence[R_co]: ...
    @overload
    async def amap(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[True],
        progress: Progress = ...,
    ) -> Sequence[R_co | BaseException]: ...
    async def amap(self, items: Iterable[Any], **options: Any) -> list[Any]:
        """Await a call for every item, in input order: one bulk read, each distinct miss paid once.

        An item is the argument of a one-parameter function; otherwise a
        tuple is the positional arguments, a dict the keyword arguments.
        """

    async def awarm(
        self, items: Iterable[Any], *, concurrency: int = ..., progress: Progress = ...
    ) -> WarmCounts:
        """Compute and store what is not cached yet; count hits, computed and failed inputs."""


class CacheDecorator(Protocol):
    """What ``instructor_cache(...)`` with options returns."""

    @overload
    def __call__(  # type: ignore[overload-overlap]  # async first: it is the narrower match
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]  # streams before any other return type
        self, fn: Callable[P, AsyncIterator[R]], /
    ) -> AsyncStreamFunction[P, R]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]  # streams before any other return type
        self, fn: Callable[P, Iterator[R]], /
    ) -> StreamFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def instructor_cache(  # type: ignore[overload-overlap]  # async first: it is the narrower match
    fn: Callable[P, Coroutine[Any, Any, R]], /
) -> AsyncCachedFunction[P, R]: ...
@overload
def instructor_cache(  # type: ignore[overload-overlap]  # streams before any other return type
    fn: Callable[P, AsyncIterator[R]], /
) -> AsyncStreamFunction[P, R]: ...
@overload
def instructor_cache(  # type: ignore[overload-overlap]  # streams before any other return type
    fn: Callable[P, Iterator[R]], /
) -> StreamFunction[P, R]: ...
@overload
def instructor_cache(fn: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def instructor_cache(
    store: Store | None = None, **options: Unpack[CacheOptions]
) -> CacheDecorator: ...
def instructor_cache(store: Any = None, **options: Any) -> Any:
    """Memoize a function that returns a pydantic model (or list, Optional, JSON types).

    Bare (``@instructor_cache``) each function gets its own
    ``MemoryCache(maxsize=1024)``; otherwise pass a store and options:
    ``ttl`` (seconds or ``timedelta``), ``key`` (a function of the arguments
    by name), ``ignore`` (parameter names left out of the key), ``namespace``,
    ``version`` (bump it to invalidate), ``cache_if`` (a predicate on the
    result; ``False`` means return it without storing it), ``name`` (the
    identity in keys, instead of ``module.qualname``, so a renamed or moved
    function keeps its entries) and ``code_fingerprint`` (``True``: editing
    the function's code, or a constant it reads, makes new keys).

    A generator function (``-> Iterator[Model]``, ``-> AsyncIterator[Model]``)
    is cached as a stream (``_streams``): stored once consumed to its end,
    replayed as a generator; ``stream="final"`` keeps only its last item.
    Streams do not share single-flight.
    """
    parsed = parse_options(options)
    _reject_store_class(store)
    if _is_decoratable(store):  # @instructor_cache, or instructor_cache(fn, **options)
        return _decorate(store, None, parsed)
    if store is not None:
        check_store(store)

    def decorator(fn: Any) -> Any:
        return _decorate(fn, store, parsed)

    return decorator


def _is_decoratable(obj: object) -> bool:
    if isinstance(obj, (CachedMethod, classmethod, staticmethod)):
        return True
    return callable(obj) and not callable(getattr(obj, "get", None))


def _reject_store_class(obj: object) -> None:
    """A store class passed for an instance would be used as one and never store a thing."""
    if isinstance(obj, type) and callable(getattr(obj, "get", None)):
        name = obj.__qualname__
        raise ConfigurationError(
            f"instructor_cache() was given the class {name}, not a store: pass an instance, "
            f"e.g. @instructor_cache({name}(...))"
        )


def _reject_nameless(fn: object) -> None:
    """A callable with no qualified name (a partial, a callable object) has nothing to key by."""
    if isinstance(fn, functools.partial):
        raise UncacheableFunctionError(
            f"cannot cache the functools.partial {fn!r}: it has no name to key its entries by. "
            "Decorate the underlying function and pass the bound arguments at each call, or "
            "define a named function that calls it"
        )
    if not isinstance(getattr(fn, "__qualname__", None), str):
        raise UncacheableFunctionError(
            f"cannot cache {fn!r}: it has no __qualname__ to key its entries by. Decorate a "
            "function or method defined with def"
        )


def _one_parameter(fn: Any) -> inspect.Parameter | None:
    """The parameter ``map`` passes each item as, whole: the function's only one (past ``self``)."""
    parameters = list(inspect.signature(fn).parameters.values())
    if takes_self(fn):
        parameters = parameters[1:]
    if len(parameters) == 1 and parameters[0].kind not in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    ):
        return parameters[0]
    return None


def _decorate(fn: Any, given: Store | None, options: Options) -> Any:
    _reject_nameless(fn)
    if isinstance(fn, classmethod):
        # @instructor_cache above @classmethod: bind the class ourselves, which
        # also works where classmethod no longer chains descriptors (3.13+).
        return CachedMethod(_decorate(fn.__func__, given, options), binds_owner=True)
    if isinstance(fn, staticmethod) and not isinstance(fn, CachedMethod):
        return staticmethod(_decorate(fn.__func__, given, options))
    backend = MemoryCache(DEFAULT_MAXSIZE) if given is None else given
    memo: Memo[Any] = Memo(fn, options)
    if isinstance(backend, DescribesCalls):  # a store people read: tell it what each key is
        memo.key.build = describing(memo.key, backend)
    store = compose(backend, memo.stats, memo.name, options.circuit_breaker)
    memo.watch.count_with(memo.stats, *store.tier_stats())

    def route(other: Store) -> GuardedStore:
        """``other`` composed as ``backend`` was, for a ``cache_control(store=other)`` block."""
        guarded = compose(other, memo.stats, memo.name, options.circuit_breaker)
        memo.watch.count_routed(*guarded.tier_stats())
        return guarded

    streamed = stream_wrapper(fn, memo, store, options.stream, Steering(backend, store, route))
    if streamed is not None:
        return _finish(streamed, fn, memo)
    # A cached method of an inner layer is a descriptor object, which inspect
    # does not see as a coroutine function: ask its wrapper instead.
    is_async = inspect.iscoroutinefunction(fn.wrapper if isinstance(fn, CachedMethod) else fn)
    driven = (async_driver if is_async else sync_driver)(fn, memo, store, backend, route)
    wrapper = driven.wrapper
    # update_wrapper copies fn.__dict__, which holds an inner layer's
    # attributes when decorators are stacked: ours are set after it.
    functools.update_wrapper(wrapper, fn)
    wrapper.cache_info = driven.cache_info  # type: ignore[attr-defined]
    wrapper.cache_clear = driven.cache_clear  # type: ignore[attr-defined]
    if driven.acache_clear is not None:
        wrapper.acache_clear = driven.acache_clear  # type: ignore[attr-defined]
    wrapper.invalidate = driven.invalidate  # type: ignore[attr-defined]
    wrapper.refresh = driven.refresh  # type: ignore[attr-defined]
    only = _one_parameter(fn)
    keyword = only.name if only is not None and only.kind is only.KEYWORD_ONLY else None
    for name, method in batch_methods(driven.batches, only is not None, keyword).items():
        setattr(wrapper, name, method)
    return _finish(wrapper, fn, memo)


def _finish(wrapper: Any, fn: Any, memo: Memo[Any]) -> Any:
    """What every wrapper carries, stream or not, once its controls are set."""
    build_key = memo.key.build

    def cache_key(*args: Any, **kwargs: Any) -> str:
        return build_key(args, kwargs)

    wrapper.cache_key = cache_key
    wrapper.uncached = uncached_of(wrapper)
    setattr(wrapper, IGNORED_ATTRIBUTE, memo.key.ignored)
    below: Memo[Any] | None = getattr(fn, MEMO_ATTRIBUTE, None)
    if isinstance(below, Memo):  # stacked on a cached layer: its hits tell us what they saved
        below.report_hits_above()
        memo.over_layer = True
    setattr(wrapper, MEMO_ATTRIBUTE, memo)
    return CachedMethod(wrapper) if takes_self(fn) else wrapper
