"""In-process LRU cache of strings, bounded by ``maxsize``, with per-entry expiry."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from instructor_cache._ttl import TTL, to_seconds
from instructor_cache.errors import ConfigurationError

__all__ = ["MemoryCache"]

_NEVER = float("inf")


class MemoryCache:
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

    def remaining_ttl(self, key: str) -> float | None:
        """Seconds the entry has left: ``None`` for no expiry, 0 for no entry."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        if entry[0] == _NEVER:
            return None
        return max(0.0, entry[0] - self._timer())

    async def aremaining_ttl(self, key: str) -> float | None:
        return self.remaining_ttl(key)

    def set(self, key: str, value: str, ttl: TTL = None) -> None:
        seconds = self._ttl if ttl is None else to_seconds(ttl)
        expires = _NEVER if seconds is None else self._timer() + seconds
        entries = self._entries
        with self._lock:
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
        with self._lock:
            # list() copies the keys in one C call, so a lock-free read moving
            # an entry cannot break the iteration.
            doomed = [key for key in list(self._entries) if key.startswith(prefix)]
            for key in doomed:
                del self._entries[key]
        return len(doomed)

    # Nothing here waits on I/O, so the async twins run inline: a thread hop
    # would cost far more than the lookup.
    async def aget(self, key: str) -> str | None:
        return self.get(key)

    async def aset(self, key: str, value: str, ttl: TTL = None) -> None:
        self.set(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        return self.delete(key)

    async def aclear(self) -> None:
        self.clear()
