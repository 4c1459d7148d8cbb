"""Persistent cache on SQLite through diskcache, reading and writing text only."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import diskcache

from instructor_cache._ttl import TTL, to_seconds
from instructor_cache.backends._failures import as_backend_error, backend_error
from instructor_cache.backends._textcache import (
    DEFAULT_TIMEOUT,
    FAILURES,
    ORPHAN_AGE,
    TextCache,
    TextOnlyDisk,
)

__all__ = ["DiskCache", "TextOnlyDisk"]


class DiskCache:
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

    It is a blocking, sync store: its failures raise ``BackendError``, and
    the wrappers the decorator composes around it fail open, trip a circuit
    breaker and run it on a worker thread for async callers. Connections are
    per thread; ``close()`` closes those of every thread that used it.

    Other keyword arguments are diskcache settings (``size_limit``,
    ``eviction_policy``, ``cull_limit``, ...).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        ttl: TTL = None,
        timeout: float = DEFAULT_TIMEOUT,
        **settings: Any,
    ) -> None:
        self.directory = Path(directory)
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

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        """The text under ``key`` and the seconds it has left (``None``: no expiry), one query."""
        with self._failures("get_with_ttl"):
            found = self.cache.get_text_with_expiry(key)
        if found is None:
            return None
        text, expires = found
        return text, None if expires is None else max(0.0, expires - time.time())

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        with self._failures("get_many"):
            return self.cache.get_texts(keys)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        with self._failures("set"):
            self._writable().set(key, value, expire=self._ttl if ttl is None else ttl)

    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        """Store every item in one transaction: a failure stores none of them."""
        if not items:
            return
        with self._failures("set_many"):
            self._writable().set_texts(items, self._ttl if ttl is None else ttl)

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
            return self._writable().delete_prefixed(prefix)

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
            cache.close()  # every thread's connection to the old database
            raise FileNotFoundError(
                errno.ENOENT,
                "the database was deleted or replaced while open; the next call opens a fresh one",
                os.path.join(cache.directory, diskcache.core.DBNAME),
            )
        return cache

    def close(self) -> None:
        """Close the connections of every thread that used this cache; the next use reopens.

        It may be called from any thread, such as the event loop's while an
        async adapter's worker thread did the reads and writes.
        """
        with self._open_lock:
            caches = [*self._retired, *([self._cache] if self._cache is not None else [])]
            self._cache, self._retired = None, []
        for cache in caches:
            cache.close()
