"""What makes a function a stream function, and the type it has once decorated.

A function annotated ``-> Iterator[User]`` (``Iterable``, ``Generator``) or
``-> AsyncIterator[User]`` (``AsyncIterable``, ``AsyncGenerator``) hands out
its results one at a time. Its entry is what the caller was handed, as a
``list[User]``, or only the last ``User`` with ``stream="final"``; the codec
and the key's schema fingerprint are built from that stored type, so the two
modes never read each other's entries. ``StreamFunction`` and
``AsyncStreamFunction`` are what type checkers see: the call returns a
generator of the items, and there is no ``map`` to call.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any, Concatenate, NamedTuple, Protocol, TypeVar, overload

from typing_extensions import ParamSpec, Self

from instructor_cache._methods import CachedMethod
from instructor_cache._options import StreamMode
from instructor_cache._stats import CacheInfo
from instructor_cache.errors import ConfigurationError, UncacheableFunctionError

__all__ = [
    "AsyncStreamFunction",
    "StreamFunction",
    "StreamShape",
    "stored_type",
    "stream_shape",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
Y2 = TypeVar("Y2")
Y_co = TypeVar("Y_co", covariant=True)
T = TypeVar("T")

_SYNC = (collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator)
_ASYNC = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


class StreamFunction(Protocol[P, Y_co]):
    """A decorated sync stream function: the original signature plus cache controls."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self: StreamFunction[Concatenate[T, P2], Y2], instance: T, owner: type[Any] | None = None
    ) -> StreamFunction[P2, Y2]: ...

    @property
    def __wrapped__(self) -> Callable[P, Any]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Generator[Y_co, None, None]: ...
    def cache_info(self) -> CacheInfo:
        """Hits, misses, size and errors, shaped like ``functools``' ``CacheInfo``."""

    def cache_clear(self) -> None:
        """Remove this function's entries (others' in a shared store stay) and reset stats."""

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The exact key under which the store keeps this call's items."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete this call's entry; ``True`` if there was one."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Generator[Y_co, None, None]:
        """A stream that calls the function and, once it completes, overwrites the entry."""

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> Generator[Y_co, None, None]:
        """A stream straight from the function: nothing read, nothing stored."""


class AsyncStreamFunction(Protocol[P, Y_co]):
    """A decorated async generator function: the original signature plus cache controls."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self: AsyncStreamFunction[Concatenate[T, P2], Y2],
        instance: T,
        owner: type[Any] | None = None,
    ) -> AsyncStreamFunction[P2, Y2]: ...

    @property
    def __wrapped__(self) -> Callable[P, Any]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Y_co, None]: ...
    def cache_info(self) -> CacheInfo:
        """Hits, misses, size and errors, shaped like ``functools``' ``CacheInfo``."""

    def cache_clear(self) -> None:
        """Remove this function's entries (others' in a shared store stay) and reset stats."""

    async def acache_clear(self) -> None:
        """``cache_clear`` awaited: works with a store only an event loop can reach."""

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The exact key under which the store keeps this call's items."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, bool]:
        """Delete this call's entry; ``True`` if there was one."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Y_co, None]:
        """A stream that calls the function and, once it completes, overwrites the entry."""

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Y_co, None]:
        """A stream straight from the function: nothing read, nothing stored."""


class StreamShape(NamedTuple):
    """A stream function's kind, the type of its items and what its entry keeps."""

    is_async: bool
    item: Any
    final: bool


def stream_shape(
    fn: Callable[..., Any], return_type: Any, mode: StreamMode | None, where: str
) -> StreamShape | None:
    """``fn``'s stream shape, ``None`` if it is not a stream function; misuse raises now.

    A coroutine function annotated ``AsyncIterator`` (``async def`` that
    returns an iterator rather than yields) is refused: its callers write
    ``async for x in await f()``, a protocol a cached stream does not keep.
    """
    origin = typing.get_origin(return_type) or return_type
    if origin not in _SYNC + _ASYNC:
        if mode is not None:
            raise ConfigurationError(
                f"stream={mode!r} applies to functions that yield their results (annotated "
                f"-> Iterator[...] or -> AsyncIterator[...]); {where} does not: remove stream="
            )
        return None
    arguments = typing.get_args(return_type)
    if not arguments or arguments[0] is Any:
        raise UncacheableFunctionError(
            f"{where} returns a stream without an item type, so a replay cannot read its items "
            "back: annotate it, e.g. -> Iterator[UserDetail] or -> AsyncIterator[UserDetail]"
        )
    is_async = origin in _ASYNC
    _check_iterable(fn, origin, where)
    _check_protocol(origin, arguments, where)
    _check_kind(fn.wrapper if isinstance(fn, CachedMethod) else fn, is_async, where)
    return StreamShape(is_async, arguments[0], mode == "final")


def stored_type(shape: StreamShape | None, return_type: Any) -> Any:
    """The type an entry holds: the return type, or a stream's items (or its last one)."""
    if shape is None:
        return return_type
    return shape.item if shape.final else list[shape.item]  # type: ignore[name-defined]


def _check_iterable(fn: Callable[..., Any], origin: Any, where: str) -> None:
    """Refuse a plain def annotated ``Iterable``: it may return a list, walked more than once.

    instructor's ``create(response_model=Iterable[User])`` returns a list, and
    its callers may count it, then use it; a cached stream is walked once. A
    generator says what it is; a plain def must say ``Iterator``.
    """
    if origin not in (collections.abc.Iterable, collections.abc.AsyncIterable):
        return
    original = inspect.unwrap(fn.wrapper if isinstance(fn, CachedMethod) else fn)
    if inspect.isgeneratorfunction(original) or inspect.isasyncgenfunction(original):
        return
    iterator = "AsyncIterator" if origin is collections.abc.AsyncIterable else "Iterator"
    raise UncacheableFunctionError(
        f"{where} is annotated -> {origin.__name__}[...] but is not a generator, so it may "
        "return a list, which its callers can walk more than once, where a cached stream is "
        f"walked once. Annotate -> list[...] if it returns a list, or -> {iterator}[...] if it "
        "returns an iterator (instructor's create_iterable)"
    )


def _check_protocol(origin: Any, arguments: tuple[Any, ...], where: str) -> None:
    """Refuse a generator that takes sent values or returns one: a stream keeps only its items.

    A replay has no function to send to, nor a value to return: the caller
    of ``yield from`` would get ``None`` where the function returned its result.
    """
    if origin not in (collections.abc.Generator, collections.abc.AsyncGenerator):
        return
    for role, declared in zip(("send", "return"), arguments[1:], strict=False):
        if declared not in (None, type(None), Any):
            raise UncacheableFunctionError(
                f"{where} is annotated with a {role} type ({declared!r}), but a cached stream "
                "only keeps the items it yields: a replay cannot answer what it is sent nor "
                "return a value. Annotate it -> Iterator[...] (or AsyncIterator[...]) and "
                "leave send() and return values out of it"
            )


def _check_kind(fn: Callable[..., Any], is_async: bool, where: str) -> None:
    if is_async and inspect.iscoroutinefunction(fn):
        raise UncacheableFunctionError(
            f"{where} is an async def that returns an async iterator: a cached stream is "
            "called without await. Make it an async generator (async for item in ...: "
            "yield item) or a plain def that returns the iterator"
        )
    if is_async and inspect.isgeneratorfunction(fn):
        raise UncacheableFunctionError(
            f"{where} is a sync generator annotated as an async stream: annotate it "
            "-> Iterator[...], or make it an async generator"
        )
    if not is_async and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
        raise UncacheableFunctionError(
            f"{where} is async but annotated as a sync stream: annotate it -> AsyncIterator[...]"
        )
