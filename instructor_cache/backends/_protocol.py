"""The backend contract: a few string methods, sync and async.

It has the shape of ``instructor.cache.BaseCache`` (``get`` and ``set`` of
strings) plus deletion and async twins, so any object with these methods is a
backend: the built-in ones, a user's own, or one passed on to instructor.
Backends store text and know nothing of pydantic; the decorator knows nothing
of SQLite or Redis.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
