"""Persistent cache on SQLite through diskcache, reading and writing text only."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import diskcache

from instructor_cache._breaker import CircuitBreaker
from instructor_cache._ttl import TTL, to_seconds
from instructor_cache.backends._failures import as_backend_error, backend_error
from instructor_cache.backends._textcache import (
    DEFAULT_TIMEOUT,
    FAILURES,
    ORPHAN_AGE,
    TextCache,
    TextOnlyDisk,
)
from instructor_cache.backends._threaded import ThreadedAsyncMixin

__all__ = ["DiskCache", "TextOnlyDisk"]


class DiskCache(ThreadedAsyncMixin):
    """A ``diskcache.Cache`` at ``directory``, each entry text under its cache key.

    The directory can be opened with diskcache itself to look inside. It is
    safe across threads and processes (SQLite's locking). These choices differ
    from diskcache's defaults on purpose:

    - ``timeout`` (seconds SQLite waits for a lock) is sub-second, not 60 s,
      so a database another process holds locked costs a call a fraction of a
      second before the decorator falls back to calling the function;
    - the database is opened on first use, not in ``__init__``, so a missing
      or locked directory at import time is a counted backend failure later,
      not a crash now;
    - rows are read through ``TextOnlyDisk``, which never unpickles and
      reads a value file only if it is a regular file inside the directory;
    - no setting (a timeout or other SQLite pragma, an eviction policy,
      ``statistics``, a size limit) is taken from the directory's Settings
      table, where diskcache would read it back on every open: what is not
      passed here is diskcache's default;
    - a database is refused (each operation fails, counted, and the file is
      left alone) if it or its journal is not a regular file, or if it holds
      anything diskcache does not create, such as a trigger; and a statement
      still running ``timeout`` plus a second after it started (a trigger
      planted while the database is open) is interrupted and fails.

    A write that finds the database deleted or replaced since it was opened
    (the directory removed while the app runs) fails, counted like any other
    failure, and the next call opens a fresh database. ``clear()`` also
    removes value files that no row names and that are older than
    ten minutes: what a process killed mid-write leaves behind.

    After a few consecutive failures its ``circuit_breaker`` makes decorated
    functions skip it for a few seconds, so a locked or broken database costs
    one timeout per cooldown rather than one per call.

    Other keyword arguments are diskcache settings (``size_limit``,
    ``eviction_policy``, ``cull_limit``, ...).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        ttl: TTL = None,
        timeout: float = DEFAULT_TIMEOUT,
        circuit_breaker: CircuitBreaker | None = None,
        **settings: Any,
    ) -> None:
        self.directory = Path(directory)
        self.circuit_breaker = circuit_breaker if circuit_breaker is not None else CircuitBreaker()
        self._ttl = to_seconds(ttl)
        self._timeout = timeout
        self._settings = settings
        self._cache: TextCache | None = None
        self._retired: list[TextCache] = []  # moved away: connections left to close
        self._open_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DiskCache({str(self.directory)!r}, ttl={self._ttl}, timeout={self._timeout})"

    @property
    def cache(self) -> TextCache:
        """The underlying ``diskcache.Cache``, opened on first use."""
        cache = self._cache
        if cache is None:
            with self._open_lock:
                if self._cache is None:
                    self._cache = TextCache(
                        str(self.directory),
                        timeout=self._timeout,
                        disk=TextOnlyDisk,
                        **self._settings,
                    )
                cache = self._cache
        return cache

    @property
    def maxsize(self) -> int | None:
        return None  # bounded by bytes (size_limit), not by a count

    def __len__(self) -> int:
        with self._failures("len"):
            return len(self.cache)

    def get(self, key: str) -> str | None:
        # The hit path: a plain try (free until it raises) rather than the
        # context manager the other methods use, and the attribute before the
        # property (not ``or``: a Cache's truth is its length, a SQL query).
        try:
            cache = self._cache
            if cache is None:
                cache = self.cache
            value = cache.get_text(key)
        except FAILURES as exc:
            raise backend_error(self, "get", exc) from exc
        return value

    def remaining_ttl(self, key: str) -> float | None:
        """Seconds the entry has left: ``None`` for no expiry, 0 for no entry."""
        with self._failures("remaining_ttl"):
            value, expires = self.cache.get(key, expire_time=True)
        if value is None:
            return 0.0
        return None if expires is None else max(0.0, expires - time.time())

    async def aremaining_ttl(self, key: str) -> float | None:
        return await self.in_worker(self.remaining_ttl, key)

    def set(self, key: str, value: str, ttl: TTL = None) -> None:
        seconds = self._ttl if ttl is None else to_seconds(ttl)
        with self._failures("set"):
            self._writable().set(key, value, expire=seconds)

    def delete(self, key: str) -> bool:
        with self._failures("delete"):
            return bool(self._writable().delete(key))

    def clear(self) -> None:
        with self._failures("clear"):
            cache = self._writable()
            cache.clear()
            cache.sweep_orphans(older_than=time.time() - ORPHAN_AGE)

    def clear_prefix(self, prefix: str) -> int:
        with self._failures("clear_prefix"):
            cache = self._writable()
            doomed = [k for k in cache.iterkeys() if isinstance(k, str) and k.startswith(prefix)]
            return sum(bool(cache.delete(key)) for key in doomed)

    def _failures(self, operation: str) -> contextlib.AbstractContextManager[None]:
        return as_backend_error(self, operation, FAILURES)

    def _writable(self) -> TextCache:
        """The open cache, unless its database was deleted or replaced: then it is retired.

        A stat per write (not per read: a hit from a deleted database is
        still the value written) catches a directory removed while the app
        runs. That write fails; the next operation opens a fresh database.
        """
        cache = self.cache
        if cache.moved():
            with self._open_lock:
                if self._cache is cache:
                    self._cache = None
                if cache not in self._retired:  # two threads may both find it moved
                    self._retired.append(cache)
            cache.close()  # this thread's connection; close() reaches the worker's
            raise FileNotFoundError(
                errno.ENOENT,
                "the database was deleted or replaced while open; the next call opens a fresh one",
                os.path.join(cache.directory, diskcache.core.DBNAME),
            )
        return cache

    def close(self) -> None:
        """Close this thread's and the async worker's connections; the next use reopens them.

        diskcache keeps a connection per thread and closes only the calling
        thread's: connections of other threads that used this cache close
        when those threads end.
        """
        with self._open_lock:
            caches = [*self._retired, *([self._cache] if self._cache is not None else [])]
            self._cache, self._retired = None, []

        def close_all() -> None:
            for cache in caches:
                cache.close()

        if caches:
            self.close_worker(close_all)
            close_all()
