"""``@instructor_cache``: inspect the function once, then wrap it, sync or async.

All decisions are made at decoration time (``Memo``); the two wrappers below
are the same skeleton written twice, once with ``await``. A hit is: build the
key, one backend lookup, one decode.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Collection, Coroutine
from typing import Any, Concatenate, Protocol, TypeVar, overload

from typing_extensions import ParamSpec, Self, TypedDict, Unpack

from instructor_cache._keys import IGNORED_ATTRIBUTE
from instructor_cache._memo import MISS, Memo
from instructor_cache._methods import CachedMethod, takes_self
from instructor_cache._options import KeyFunction, Options
from instructor_cache._stats import CacheInfo
from instructor_cache._ttl import TTL
from instructor_cache.backends._protocol import Backend, check_backend
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
        """Remove this function's entries (others' in a shared backend stay) and reset stats."""

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The exact key under which the backend stores this call's result."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete this call's entry; ``True`` if there was one."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the function and overwrite this call's entry with the new result."""


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
        """Remove this function's entries (others' in a shared backend stay) and reset stats."""

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The exact key under which the backend stores this call's result."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, bool]:
        """Delete this call's entry; ``True`` if there was one."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Call the function and overwrite this call's entry with the new result."""


class CacheOptions(TypedDict, total=False):
    """The keyword options every decorator factory takes."""

    ttl: TTL
    key: KeyFunction | None
    ignore: Collection[str]
    namespace: str
    version: str | None
    cache_if: Callable[[Any], bool] | None
    name: str | None
    code_fingerprint: bool


class CacheDecorator(Protocol):
    """What ``instructor_cache(...)`` with options returns."""

    @overload
    def __call__(  # type: ignore[overload-overlap]  # async first: it is the narrower match
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def instructor_cache(  # type: ignore[overload-overlap]  # async first: it is the narrower match
    fn: Callable[P, Coroutine[Any, Any, R]], /
) -> AsyncCachedFunction[P, R]: ...
@overload
def instructor_cache(fn: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def instructor_cache(
    backend: Backend | None = None, **options: Unpack[CacheOptions]
) -> CacheDecorator: ...
def instructor_cache(backend: Any = None, **options: Any) -> Any:
    """Memoize a function that returns a pydantic model (or list, Optional, JSON types).

    Bare (``@instructor_cache``) each function gets its own
    ``MemoryCache(maxsize=1024)``; otherwise pass a backend and options:
    ``ttl`` (seconds or ``timedelta``), ``key`` (a function of the arguments
    by name), ``ignore`` (parameter names left out of the key), ``namespace``,
    ``version`` (bump it to invalidate), ``cache_if`` (a predicate on the
    result; ``False`` means return it without storing it), ``name`` (the
    identity in keys, instead of ``module.qualname``, so a renamed or moved
    function keeps its entries) and ``code_fingerprint`` (``True``: editing
    the function's code, or a constant it reads, makes new keys).
    """
    parsed = Options.parse(options)
    _reject_backend_class(backend)
    if _is_decoratable(backend):  # @instructor_cache, or instructor_cache(fn, **options)
        return _decorate(backend, None, parsed)
    if backend is not None:
        check_backend(backend)

    def decorator(fn: Any) -> Any:
        return _decorate(fn, backend, parsed)

    return decorator


def _is_decoratable(obj: object) -> bool:
    if isinstance(obj, (CachedMethod, classmethod, staticmethod)):
        return True
    return callable(obj) and not callable(getattr(obj, "get", None))


def _reject_backend_class(obj: object) -> None:
    """A backend class passed for an instance would be used as one and never store a thing."""
    if isinstance(obj, type) and callable(getattr(obj, "get", None)):
        name = obj.__qualname__
        raise ConfigurationError(
            f"instructor_cache() was given the class {name}, not a backend: pass an instance, "
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


def _decorate(fn: Any, backend: Backend | None, options: Options) -> Any:
    _reject_nameless(fn)
    if isinstance(fn, classmethod):
        # @instructor_cache above @classmethod: bind the class ourselves, which
        # also works where classmethod no longer chains descriptors (3.13+).
        return CachedMethod(_decorate(fn.__func__, backend, options), binds_owner=True)
    if isinstance(fn, staticmethod) and not isinstance(fn, CachedMethod):
        return staticmethod(_decorate(fn.__func__, backend, options))
    if backend is None:
        backend = MemoryCache(DEFAULT_MAXSIZE)
    memo: Memo[Any] = Memo(fn, backend, options)
    # A cached method of an inner layer is a descriptor object, which inspect
    # does not see as a coroutine function: ask its wrapper instead.
    is_async = inspect.iscoroutinefunction(fn.wrapper if isinstance(fn, CachedMethod) else fn)
    wrapper, invalidate, refresh = (_async_wrapper if is_async else _sync_wrapper)(fn, memo)

    build_key = memo.key.build

    def cache_key(*args: Any, **kwargs: Any) -> str:
        return build_key(args, kwargs)

    # update_wrapper copies fn.__dict__, which holds an inner layer's
    # attributes when decorators are stacked: ours are set after it.
    functools.update_wrapper(wrapper, fn)
    wrapper.cache_info = memo.cache_info  # type: ignore[attr-defined]
    wrapper.cache_clear = memo.cache_clear  # type: ignore[attr-defined]
    wrapper.cache_key = cache_key  # type: ignore[attr-defined]
    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    setattr(wrapper, IGNORED_ATTRIBUTE, memo.key.ignored)
    return CachedMethod(wrapper) if takes_self(fn) else wrapper


_Wrappers = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]


def _sync_wrapper(fn: Callable[..., Any], memo: Memo[Any]) -> _Wrappers:
    make_key, store, decode, encode = memo.key.build, memo.store, memo.decode, memo.encode
    get, breaker = memo.read, store.breaker
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
        if breaker is not None and breaker.is_open:  # a dead backend: not even a key
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

    return wrapper, invalidate, refresh


def _async_wrapper(fn: Callable[..., Any], memo: Memo[Any]) -> _Wrappers:
    make_key, store, decode, encode = memo.key.build, memo.store, memo.decode, memo.encode
    get, breaker = memo.aread, store.breaker
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
        if breaker is not None and breaker.is_open:  # a dead backend: not even a key
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

    return wrapper, invalidate, refresh
