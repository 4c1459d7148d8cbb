"""Persistent cache on SQLite through diskcache, reading and writing text only."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import diskcache

from instructor_cache._instructor_hook import InstructorCompatible
from instructor_cache._ttl import TTL, bounded, to_seconds
from instructor_cache.backends._failures import as_backend_error, backend_error
from instructor_cache.backends._textcache import (
    DEFAULT_TIMEOUT,
    FAILURES,
    ORPHAN_AGE,
    SCAN_BATCH,
    TextCache,
    TextOnlyDisk,
)

__all__ = ["DiskCache", "TextOnlyDisk"]

# A lock is a row of its own under its entry's key and this suffix, as in
# RedisCache: an entry's key ends in its hexadecimal digest, never so.
_LOCK_SUFFIX = ":lock"

# Every DiskCache, for the fork hook below.
_disks: weakref.WeakSet[DiskCache] = weakref.WeakSet()


# Every open database of this process by directory, retired ones too until
# their connections are closed: a new database may not open at the path of
# a deleted one still in use (see DiskCache._open).
_caches_at: dict[str, weakref.WeakSet[TextCache]] = {}
_everywhere_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child gets free locks: the threads that held them at the fork are not there."""
    global _everywhere_lock  # noqa: PLW0603  (a module-wide lock, made anew in the child)
    _everywhere_lock = threading.Lock()
    for disk in list(_disks):
        disk._open_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DiskCache(InstructorCompatible):
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
    per thread; ``close()`` closes them all as soon as no call is in progress.

    It is a ``LockingStore`` for the processes of one machine that share the
    directory: a lock is a row of its own (``key + ":lock"``, counted by
    ``len``), taken by diskcache's atomic ``add`` and released by a
    compare-and-delete in one transaction.

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
        self._open_lock = threading.Lock()  # replaced in a forked child
        _disks.add(self)

    def __repr__(self) -> str:
        return f"DiskCache({str(self.directory)!r}, ttl={self._ttl}, timeout={self._timeout})"

    @property
    def cache(self) -> TextCache:
        """The underlying ``diskcache.Cache``, opened on first use."""
        cache = self._cache
        if cache is None:
            with self._open_lock:
                if self._cache is None:
                    self._cache = self._open()
                cache = self._cache
        return cache

    def _open(self) -> TextCache:
        # A new database at the path of a deleted one shares its -wal and
        # -shm files by name (see TextCache._check_identity): it waits until
        # every connection to the deleted one is closed, those of every
        # DiskCache of this process at this directory (two decorated
        # functions may each have made one).
        where = os.path.realpath(self.directory)
        with _everywhere_lock:
            here = [cache for cache in _caches_at.get(where, ()) if not cache.all_closed]
        deleted = [cache for cache in here if cache.moved()]
        if deleted:
            for cache in deleted:
                cache.retire()  # its DiskCache lets go of it at its next call (see _enter)
            raise OSError(
                errno.EBUSY,
                "a call in progress still uses the deleted database; a later call opens a new one",
                os.path.join(self.directory, diskcache.core.DBNAME),
            )
        cache = TextCache(
            str(self.directory), timeout=self._timeout, disk=TextOnlyDisk, **self._settings
        )
        with _everywhere_lock:
            _caches_at.setdefault(where, weakref.WeakSet()).add(cache)
        return cache

    @property
    def maxsize(self) -> int | None:
        return None  # bounded by bytes (size_limit), not by a count

    def __len__(self) -> int:
        with self._call("len") as cache:
            return len(cache)

    def get(self, key: str) -> str | None:
        # The hit path: a plain try (free until it raises) rather than the
        # context manager the other methods use.
        try:
            cache = self._cache
            if cache is None or not cache.enter():
                cache = self._enter()
            try:
                value = cache.get_text(key)
            finally:
                cache.leave()
        except FAILURES as exc:
            self._retire_if_moved()
            raise backend_error(self, "get", exc) from exc
        return value

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        """The text under ``key`` and the seconds it has left (``None``: no expiry), one query."""
        with self._call("get_with_ttl") as cache:
            found = cache.get_text_with_expiry(key)
        if found is None:
            return None
        text, expires = found
        return text, None if expires is None else max(0.0, expires - time.time())

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        with self._call("get_many") as cache:
            return cache.get_texts(keys)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        with self._call("set", write=True) as cache:
            cache.set(key, value, expire=bounded(ttl, self._ttl))

    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        """Store every item in one transaction: a failure stores none of them."""
        if not items:
            return
        with self._call("set_many", write=True) as cache:
            cache.set_texts(items, bounded(ttl, self._ttl))

    def delete(self, key: str) -> bool:
        with self._call("delete", write=True) as cache:
            return bool(cache.delete(key))

    def clear(self) -> None:
        with self._call("clear", write=True) as cache:
            cache.clear()
            cache.sweep_orphans(older_than=time.time() - ORPHAN_AGE)

    def clear_prefix(self, prefix: str) -> int:
        with self._call("clear_prefix", write=True) as cache:
            return cache.delete_prefixed(prefix)

    def scan(self, prefix: str = "") -> Iterator[str]:
        """The unexpired entries' keys under ``prefix``, in key order, a batch per query.

        Locks (rows of their own) are not entries, and are left out. No
        connection is held between batches, so a slow consumer holds no lock.
        """
        after = ""
        while True:
            with self._call("scan") as cache:
                keys = cache.scanned(prefix, after)
            for key in keys:
                if not key.endswith(_LOCK_SUFFIX):
                    yield key
            if len(keys) < SCAN_BATCH:
                return
            after = keys[-1]

    def purge_expired(self) -> int:
        """Delete the expired entries now (diskcache's ``expire()``); return how many.

        Expired rows are never read, but they keep their space until a write
        culls them or this is called.
        """
        with self._call("purge_expired", write=True) as cache:
            return int(cache.expire())

    def lock(self, key: str, token: str, ttl: float) -> bool:
        name = key + _LOCK_SUFFIX
        with self._call("lock", write=True) as cache:
            # add() refuses a row that is there unexpired: then it is ours
            # only if this holder asked before (a call sent again).
            return bool(cache.add(name, token, expire=ttl)) or cache.get_text(name) == token

    def unlock(self, key: str, token: str) -> bool:
        with self._call("unlock", write=True) as cache:
            return cache.delete_holding(key + _LOCK_SUFFIX, token)

    @contextlib.contextmanager
    def _call(self, operation: str, *, write: bool = False) -> Iterator[TextCache]:
        """The open cache for one call, counted (see ``close``); failures as ``BackendError``.

        A write first checks that the database was not deleted or replaced:
        a stat per write (not per read: a hit from a deleted database is
        still the value written) catches a directory removed while the app
        runs. That write fails; the next operation opens a fresh database.
        """
        with as_backend_error(self, operation, FAILURES):
            try:
                cache = self._enter()
                try:
                    if write and cache.moved():
                        self._retire(cache)
                        raise FileNotFoundError(
                            errno.ENOENT,
                            "the database was deleted or replaced while open; a later call "
                            "opens a fresh one",
                            os.path.join(cache.directory, diskcache.core.DBNAME),
                        )
                    yield cache
                finally:
                    cache.leave()
            except FAILURES:
                self._retire_if_moved()
                raise

    def _enter(self) -> TextCache:
        """The open cache, with this call counted in it, so that it closes only after the call."""
        for _ in range(3):  # close() may retire the cache between the lookup and the count
            cache = self._cache
            if cache is None:
                cache = self.cache
            if cache.enter():
                return cache
            with self._open_lock:  # retired (here, or by another DiskCache found it deleted)
                if self._cache is cache:
                    self._cache = None
        raise OSError(errno.EBUSY, "the cache was closed at each of three attempts to use it")

    def _retire(self, cache: TextCache) -> None:
        with self._open_lock:
            if self._cache is cache:  # two threads may both retire it
                self._cache = None
        cache.retire()

    def _retire_if_moved(self) -> None:
        """After a failure: a database deleted under us is retired, so that a later call reopens.

        A read fails on it too (a new thread cannot connect to it), and while
        the breaker skips writes, a write would never find out.
        """
        cache = self._cache
        with contextlib.suppress(OSError):
            if cache is not None and cache.moved():
                self._retire(cache)

    def close(self) -> None:
        """Close every thread's connection: now, or as the last call in progress returns.

        It may be called from any thread, such as the event loop's while an
        async adapter's worker thread did the reads and writes; the next use
        reopens. No connection is ever closed under a statement another
        thread is running on it, which would crash the process.
        """
        cache = self._cache
        if cache is not None:
            self._retire(cache)
