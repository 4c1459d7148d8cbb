"""The backend contract: a few string methods, sync and async.

It has the shape of ``instructor.cache.BaseCache`` (``get`` and ``set`` of
strings) plus deletion and async twins, so any object with these methods is a
backend: the built-in ones, a user's own, or one passed on to instructor.
Backends store text and know nothing of pydantic; the decorator knows nothing
of SQLite or Redis.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from instructor_cache.errors import ConfigurationError

__all__ = ["REQUIRED_METHODS", "Backend", "PrefixClearable", "Sized"]

REQUIRED_METHODS = ("get", "set", "delete", "clear", "aget", "aset", "adelete", "aclear")


@runtime_checkable
class Backend(Protocol):
    """Stores text under string keys; ``ttl`` is seconds, ``None`` for the backend's default."""

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, ttl: float | None = None) -> None: ...
    def delete(self, key: str) -> bool: ...
    def clear(self) -> None: ...
    async def aget(self, key: str) -> str | None: ...
    async def aset(self, key: str, value: str, ttl: float | None = None) -> None: ...
    async def adelete(self, key: str) -> bool: ...
    async def aclear(self) -> None: ...


@runtime_checkable
class PrefixClearable(Protocol):
    """Optional: lets ``cache_clear()`` remove one function's entries from a shared backend."""

    def clear_prefix(self, prefix: str) -> int: ...


@runtime_checkable
class Sized(Protocol):
    """Optional: lets ``cache_info()`` report ``maxsize`` and ``currsize``."""

    @property
    def maxsize(self) -> int | None: ...
    def __len__(self) -> int: ...


@runtime_checkable
class RemainingTTL(Protocol):
    """Optional: how long an entry has left, so a tiered cache backfills it no longer."""

    def remaining_ttl(self, key: str) -> float | None: ...
    async def aremaining_ttl(self, key: str) -> float | None: ...


def check_backend(backend: object) -> None:
    """Reject, when decorating, an object that lacks a backend method."""
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(backend, m, None))]
    if missing:
        raise ConfigurationError(
            f"{backend!r} is not a backend: it lacks {', '.join(missing)}. A backend has "
            f"{', '.join(REQUIRED_METHODS)} (see instructor_cache.Backend)."
        )
