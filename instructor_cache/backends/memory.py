"""In-process LRU cache: cachetools under a lock, with per-entry expiry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachetools import LRUCache

from instructor_cache.backends._ttl import TTL, to_seconds

__all__ = ["MemoryCache"]

_NEVER = float("inf")


class MemoryCache:
    """A thread-safe, size-bounded LRU of strings; entries may expire.

    cachetools' caches are not thread-safe (a ``get`` reorders the LRU list),
    so every access holds one lock. Expiry is checked on read with the
    injected ``timer`` (``time.monotonic`` by default, so a clock change never
    expires or revives entries); an expired entry stays in its LRU slot until
    it is read or evicted, which bounds memory by ``maxsize`` all the same.
    """

    def __init__(
        self,
        maxsize: int = 1024,
        *,
        ttl: TTL = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: LRUCache[str, tuple[float, str]] = LRUCache(maxsize)
        self._lock = threading.Lock()
        self._ttl = to_seconds(ttl)
        self._timer = timer

    @property
    def maxsize(self) -> int:
        return int(self._entries.maxsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryCache(maxsize={self.maxsize}, ttl={self._ttl})"

    def get(self, key: str) -> str | None:
        with self._lock:
            try:
                expires, value = self._entries[key]
            except KeyError:
                return None
            if expires != _NEVER and expires <= self._timer():
                del self._entries[key]
                return None
            return value

    def set(self, key: str, value: str, ttl: TTL = None) -> None:
        seconds = self._ttl if ttl is None else to_seconds(ttl)
        expires = _NEVER if seconds is None else self._timer() + seconds
        with self._lock:
            self._entries[key] = (expires, value)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def clear_prefix(self, prefix: str) -> int:
        with self._lock:
            doomed = [key for key in self._entries if key.startswith(prefix)]
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
