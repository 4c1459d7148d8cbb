"""The store contract: four required string methods, and optional capabilities as types.

A store keeps text under string keys. It knows nothing of pydantic, of
decorated functions or of statistics, and it does not protect its callers:
when its disk, socket or server fails, it raises. Everything that is the
same for every store (failing open, counting, logging, the circuit breaker,
tiers, running a blocking store from async code) is a wrapper composed
around it once, when a function is decorated (see ``_compose``).

Required (``Store``): ``get``, ``set``, ``delete`` and ``clear_prefix``.
``set`` receives the TTL in seconds as a float, or ``None`` for the store's
own default (which may be "never").

Optional capabilities, each checked once, with ``isinstance``, when the
decorator is built; what a store lacks gets the fallback written next to it:

- ``AsyncStore``: ``aget``, ``aset``, ``adelete``, ``aclear_prefix``, awaited
  as they are. Fallback: the sync methods on a worker thread owned by the
  store, so a blocking store never blocks an event loop.
- ``ReadsWithTTL``: ``get_with_ttl`` returns the text and its remaining TTL
  in one read (``AsyncReadsWithTTL`` for ``aget_with_ttl``). A lower tier
  with it backfills the faster tiers with the entry's remaining life.
  Fallback: the entry is served from that tier but not copied up (a copy
  could outlive the original), and decorating says so once in the log.
- ``BulkStore``: ``get_many`` and ``set_many`` (``AsyncBulkStore`` for the
  ``a`` twins), one round trip for many keys. Fallback: one call per key.
  A store with native ``aget_many`` also has the single async reads made
  while one is in flight coalesced into one ``aget_many`` (see ``_coalesce``).
- ``BulkReadsWithTTL``: ``get_many_with_ttl``, ``get_with_ttl`` for many keys
  in one round trip (``AsyncBulkReadsWithTTL`` for ``aget_many_with_ttl``,
  which coalesces a lower tier's reads). Fallback: single reads.
- ``SizedStore``: ``maxsize`` and ``__len__``, for ``cache_info()``.
  Fallback: ``None`` for both, as ``functools`` reports for an unbounded
  cache.
- ``ScanningStore``: ``scan(prefix)`` yields the keys of the entries under
  a prefix, streamed (never every key at once, never Redis's KEYS), for
  tools that look inside a cache (the CLI). Its locks are not entries and
  are not yielded. No fallback: the decorator never needs it, and a tool
  says the store cannot be listed.
- ``DescribesCalls``: ``describe``, told as each call's key is built which
  function and arguments it stands for, so that a store written for people
  to read (``FixtureStore``) shows them next to the entry. Fallback: nothing
  is told; a store that keeps only text needs nothing more.
- ``LockingStore``: ``lock`` and ``unlock``, a short lock per entry shared
  by every process that uses the store, so that one of them computes a
  missing entry while the others wait for it (``AsyncLockingStore`` for
  ``alock``/``aunlock``; without them, the sync methods on the worker
  thread). Fallback: single-flight stays within one process, and each
  process may pay for the same entry once.

``instructor_cache.testing`` holds the conformance suite a store runs to
show it keeps this contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from instructor_cache.errors import ConfigurationError

__all__ = [
    "REQUIRED",
    "AsyncBulkReadsWithTTL",
    "AsyncBulkStore",
    "AsyncLockingStore",
    "AsyncReadsWithTTL",
    "AsyncStore",
    "BulkReadsWithTTL",
    "BulkStore",
    "ClosableStore",
    "DescribesCalls",
    "LockingStore",
    "ReadsWithTTL",
    "ScanningStore",
    "SizedStore",
    "Store",
    "check_store",
]


@runtime_checkable
class Store(Protocol):
    """Text under string keys. Methods raise on failure; they never return a guess.

    ``get`` returns ``None`` for an absent or expired entry; ``delete``
    says whether there was one; ``clear_prefix`` removes every key that
    starts with ``prefix`` (``""``: all of this store's keys) and returns
    how many it removed.
    """

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, ttl: float | None = None) -> None: ...
    def delete(self, key: str) -> bool: ...
    def clear_prefix(self, prefix: str) -> int: ...


REQUIRED = ("get", "set", "delete", "clear_prefix")


@runtime_checkable
class AsyncStore(Protocol):
    """Native async twins of the required methods (a client with its own event-loop I/O)."""

    async def aget(self, key: str) -> str | None: ...
    async def aset(self, key: str, value: str, ttl: float | None = None) -> None: ...
    async def adelete(self, key: str) -> bool: ...
    async def aclear_prefix(self, prefix: str) -> int: ...


@runtime_checkable
class ReadsWithTTL(Protocol):
    """One read that also tells how long the entry has left.

    Returns ``None`` for an absent entry, else ``(text, seconds)`` where
    ``seconds`` is ``None`` for an entry that never expires.
    """

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None: ...


@runtime_checkable
class AsyncReadsWithTTL(Protocol):
    """The async twin of ``ReadsWithTTL``."""

    async def aget_with_ttl(self, key: str) -> tuple[str, float | None] | None: ...


@runtime_checkable
class BulkStore(Protocol):
    """Many keys in one round trip: results of ``get_many`` are in the order of ``keys``."""

    def get_many(self, keys: Sequence[str]) -> list[str | None]: ...
    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None: ...


@runtime_checkable
class AsyncBulkStore(Protocol):
    """The async twin of ``BulkStore``."""

    async def aget_many(self, keys: Sequence[str]) -> list[str | None]: ...
    async def aset_many(self, items: Mapping[str, str], ttl: float | None = None) -> None: ...


@runtime_checkable
class LockingStore(Protocol):
    """A short lock per entry, seen by every process that shares the store.

    ``key`` is the entry's key, as given to ``get`` and ``set``; where the
    lock lives is the store's business, but it is never read as an entry
    (``get(key)`` does not see it) and never takes the place of one.
    ``clear_prefix`` may remove the locks under its prefix too. A lock is
    released by its holder or by its TTL, so a holder that dies frees it.
    """

    def lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the short lock that guards computing ``key``'s entry.

        True if this caller now holds it (it was free or expired, or
        ``token`` already held it, so that a call sent again after a lost
        reply still answers True), False if another holder has it. ``ttl``
        seconds (a float > 0) bounds it.
        """

    def unlock(self, key: str, token: str) -> bool:
        """Release the lock only if ``token`` still holds it (compare-and-delete).

        True if released; False if it had expired, or another holder has it.
        """


@runtime_checkable
class AsyncLockingStore(Protocol):
    """The async twin of ``LockingStore``."""

    async def alock(self, key: str, token: str, ttl: float) -> bool: ...
    async def aunlock(self, key: str, token: str) -> bool: ...


@runtime_checkable
class BulkReadsWithTTL(Protocol):
    """``get_with_ttl`` for many keys in one round trip, answers in the order of ``keys``."""

    def get_many_with_ttl(self, keys: Sequence[str]) -> list[tuple[str, float | None] | None]: ...


@runtime_checkable
class AsyncBulkReadsWithTTL(Protocol):
    """The async twin of ``BulkReadsWithTTL``."""

    async def aget_many_with_ttl(
        self, keys: Sequence[str]
    ) -> list[tuple[str, float | None] | None]: ...


@runtime_checkable
class ClosableStore(Protocol):
    """Holds connections or files that ``close()`` releases (a tiered store closes its tiers)."""

    def close(self) -> None: ...


@runtime_checkable
class ScanningStore(Protocol):
    """Lists its entries' keys: every key starting with ``prefix`` (``""``: all), streamed.

    Keys are yielded as ``get`` takes them, each at most once per scan
    where the store can promise it (Redis's SCAN may repeat a key while the
    keyspace is rehashed); entries written or expiring during a scan may or
    may not be yielded, and an expired entry may be.
    """

    def scan(self, prefix: str = "") -> Iterator[str]: ...


@runtime_checkable
class SizedStore(Protocol):
    """How many entries the store may hold (``None``: no count bound) and holds now."""

    @property
    def maxsize(self) -> int | None: ...
    def __len__(self) -> int: ...


@runtime_checkable
class DescribesCalls(Protocol):
    """Told, as the decorator builds a call's key, which call the key stands for.

    ``arguments`` makes, when called, the call's arguments by parameter
    name as plain JSON values, never one listed in ``ignore=`` (``None``
    where they are not known by name). It is a thunk so that a store that
    already knows ``key`` pays nothing: a key stands for one call, so what
    it was told once for a key stays true. ``describe`` must not raise or
    wait on I/O: it runs before every lookup of the function.
    """

    def describe(
        self, key: str, function: str, arguments: Callable[[], Mapping[str, Any] | None]
    ) -> None: ...


def check_store(store: object) -> None:
    """Reject, when decorating, an object that lacks a required method.

    A class passed where an instance belongs is named as such: used as a
    store it would never hold a thing.
    """
    if isinstance(store, type):
        name = store.__qualname__
        raise ConfigurationError(
            f"the class {name} was given, not a store: pass an instance, e.g. {name}(...)"
        )
    missing = [name for name in REQUIRED if not callable(getattr(store, name, None))]
    if missing:
        raise ConfigurationError(
            f"{store!r} is not a store: it lacks {', '.join(missing)}. A store has "
            f"{', '.join(REQUIRED)} (see instructor_cache.Store); async twins, "
            "get_with_ttl, get_many/set_many, lock/unlock and a size are optional."
        )
