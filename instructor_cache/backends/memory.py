"""In-process LRU cache of strings, bounded by ``maxsize``, with per-entry expiry."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence

from instructor_cache._instructor_hook import InstructorCompatible
from instructor_cache._ttl import TTL, bounded, to_seconds
from instructor_cache.errors import ConfigurationError

__all__ = ["MemoryCache"]

_NEVER = float("inf")


class MemoryCache(InstructorCompatible):
    """A thread-safe, size-bounded LRU of strings; entries may expire.

    An ``OrderedDict`` kept in recency order, not cachetools: a hit is the hot
    path of the whole library, and cachetools' ``LRUCache`` under a lock costs
    three times as much per read (four Python frames and a lock) as the two C
    calls here. Reads take no lock: ``od[key]`` and ``od.move_to_end(key)`` are
    each atomic, and a key evicted between the two was still a valid read.
    Writes, evictions and deletions hold the lock, so that the size bound and
    the check-then-delete of an expired entry cannot interleave.

    Expiry is checked on read with the injected ``timer`` (``time.monotonic``
    by default, so a wall-clock change never expires or revives entries). An
    expired entry keeps its slot until it is read or evicted, which bounds
    memory by ``maxsize`` all the same.
    """

    def __init__(
        self,
        maxsize: int = 1024,
        *,
        ttl: TTL = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigurationError(f"maxsize must be a whole number >= 1, got {maxsize!r}")
        self._maxsize = maxsize
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._ttl = to_seconds(ttl)
        self._timer = timer

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryCache(maxsize={self._maxsize}, ttl={self._ttl})"

    def get(self, key: str) -> str | None:
        entries = self._entries
        try:
            entry = entries[key]
        except KeyError:
            return None
        try:  # noqa: SIM105  (contextlib.suppress costs a frame on the hot path)
            entries.move_to_end(key)
        except KeyError:
            pass  # evicted by a concurrent write just after the read, which still stands
        expires, value = entry
        if expires != _NEVER and expires <= self._timer():
            with self._lock:
                if entries.get(key) is entry:  # not replaced meanwhile by a fresh write
                    del entries[key]
            return None
        return value

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        """The entry and the seconds it has left (``None``: no expiry), read as ``get`` reads."""
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        remaining = None if expires == _NEVER else expires - self._timer()
        if remaining is not None and remaining <= 0:
            self._drop_expired([(key, entry)])
            return None
        with contextlib.suppress(KeyError):  # evicted just after the read, which still stands
            entries.move_to_end(key)
        return value, remaining

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Each text or ``None``, in the order of ``keys``: one pass, one look at the clock."""
        entries = self._entries
        now = self._timer()
        found: list[str | None] = []
        expired: list[tuple[str, tuple[float, str]]] = []
        for key in keys:
            entry = entries.get(key)
            if entry is None or entry[0] <= now:  # _NEVER (inf) is never <= now
                found.append(None)
                if entry is not None:
                    expired.append((key, entry))
                continue
            with contextlib.suppress(KeyError):
                entries.move_to_end(key)
            found.append(entry[1])
        if expired:
            self._drop_expired(expired)
        return found

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        seconds = bounded(ttl, self._ttl)
        expires = _NEVER if seconds is None else self._timer() + seconds
        entries = self._entries
        with self._lock:
            entries[key] = (expires, value)
            entries.move_to_end(key)
            while len(entries) > self._maxsize:
                entries.popitem(last=False)

    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        """Store every item under one lock: the size bound holds after the batch as after a set."""
        seconds = bounded(ttl, self._ttl)
        expires = _NEVER if seconds is None else self._timer() + seconds
        entries = self._entries
        with self._lock:
            for key, value in items.items():
                entries[key] = (expires, value)
                entries.move_to_end(key)
            while len(entries) > self._maxsize:
                entries.popitem(last=False)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def clear_prefix(self, prefix: str) -> int:
        """Remove the keys under ``prefix``; count the unexpired ones, which ``get`` would see."""
        now = self._timer()
        with self._lock:
            # list() copies the items in one C call, so a lock-free read moving
            # an entry cannot break the iteration.
            doomed = [item for item in list(self._entries.items()) if item[0].startswith(prefix)]
            for key, _ in doomed:
                del self._entries[key]
        return sum(1 for _, (expires, _) in doomed if expires > now)

    def scan(self, prefix: str = "") -> Iterator[str]:
        """The unexpired keys under ``prefix``, from a copy taken at the start (one C call)."""
        now = self._timer()
        for key, (expires, _) in list(self._entries.items()):
            if key.startswith(prefix) and expires > now:
                yield key

    def _drop_expired(self, expired: list[tuple[str, tuple[float, str]]]) -> None:
        with self._lock:
            for key, entry in expired:
                if self._entries.get(key) is entry:  # not replaced meanwhile by a fresh write
                    del self._entries[key]

    # Nothing here waits on I/O, so the async twins run inline: a thread hop
    # would cost far more than the lookup.
    async def aget(self, key: str) -> str | None:
        return self.get(key)

    async def aget_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        return self.get_with_ttl(key)

    async def aget_many(self, keys: Sequence[str]) -> list[str | None]:
        return self.get_many(keys)

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        self.set(key, value, ttl)

    async def aset_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        self.set_many(items, ttl)

    async def adelete(self, key: str) -> bool:
        return self.delete(key)

    async def aclear_prefix(self, prefix: str) -> int:
        return self.clear_prefix(prefix)

    async def aclear(self) -> None:
        self.clear()
