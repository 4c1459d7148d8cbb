"""diskcache, hardened for a cache whose directory others may write: text only, bounded, checked.

``DiskCache`` stores through ``TextCache`` and ``TextOnlyDisk``. Whoever can
write the directory can plant rows, files and SQL; none of it may run code
(no unpickling), escape the directory, hang a caller (FIFOs, links, triggers,
a busy timeout from the Settings table) or change what a read does.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import diskcache

from instructor_cache._stats import counted
from instructor_cache.backends import _valuefiles
from instructor_cache.backends._planted import (
    JOURNAL,
    Connection,
    TextOnlyDisk,
    Watchdog,
    check_database_files,
    check_schema,
)
from instructor_cache.errors import CorruptEntryError

__all__ = ["DEFAULT_TIMEOUT", "FAILURES", "ORPHAN_AGE", "SCAN_BATCH", "TextCache", "TextOnlyDisk"]

DEFAULT_TIMEOUT = 0.25
# How old a value file no row names must be before clear() removes it: far
# longer than any writer (even plain diskcache, waiting up to 60 s for the
# lock) takes between writing the file and committing its row.
ORPHAN_AGE = 600.0
# What a database on a disk can raise: locked or corrupt (sqlite3.Error), a
# timeout (diskcache.Timeout), a full disk or a missing permission (OSError).
FAILURES = (sqlite3.Error, diskcache.Timeout, OSError)
# How long a statement may run beyond the ``timeout`` its lock wait takes.
_MARGIN = 1.0
# How many SQLite VM steps pass between two looks at the clock: reading or
# writing one entry takes 20 to 150, deleting a batch of 100 rows in clear()
# about 7,000.
_STEPS = 1000
# Building or dropping an index (opening a large cache with a new eviction
# policy or tag_index) reads the whole table, and no trigger can slow it.
_INDEX_BUDGET = 60.0
_INDEX_STATEMENTS = ("CREATE INDEX", "CREATE UNIQUE INDEX", "DROP INDEX")
_ORPHAN_BATCH = 1000
# Rows clear_prefix deletes per transaction: each statement stays far within
# the budget, and other writers wait for one batch, not for the whole prefix.
_DELETE_BATCH = 1000
# Keys per get_many query: SQLite before 3.32 binds at most 999 parameters,
# and one is the time.
_KEYS_PER_QUERY = 998
_SELECT_FILENAMES = "SELECT rowid, filename FROM Cache WHERE rowid > ? ORDER BY rowid LIMIT ?"
_SELECT_TEXT = (
    "SELECT mode, filename, value, expire_time FROM Cache WHERE key = ? AND raw = 1"
    " AND (expire_time IS NULL OR expire_time > ?)"
)
_SELECT_MANY = (
    "SELECT key, mode, filename, value FROM Cache WHERE key IN ({}) AND raw = 1"
    " AND (expire_time IS NULL OR expire_time > ?)"
)
_SELECT_ROW = "SELECT rowid, filename FROM Cache WHERE key = ? AND raw = 1"
# Rows whose key is text in [?, upper): with BINARY collation text compares as
# UTF-8 bytes, in code point order, so that range is exactly the keys that
# start with a prefix (see _after_prefix), found through the key's index.
_PREFIXED = "FROM Cache WHERE key >= ?{} AND raw = 1 AND typeof(key) = 'text' ORDER BY key LIMIT ?"
# The next batch of text keys in [?, upper) after the last one seen, for scan().
_SCANNED = (
    "SELECT key FROM Cache WHERE key > ? AND key >= ?{} AND raw = 1 AND typeof(key) = 'text'"
    " AND (expire_time IS NULL OR expire_time > ?) ORDER BY key LIMIT ?"
)
SCAN_BATCH = 1000
# Eviction policies under which a read updates nothing (diskcache's EVICTION_POLICY).
_READ_ONLY_POLICIES = frozenset(
    name for name, policy in diskcache.core.EVICTION_POLICY.items() if policy["get"] is None
)


def _after_prefix(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (``None``: there is none)."""
    stem = prefix.rstrip(chr(0x10FFFF))
    if not stem:
        return None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not text SQLite can hold
        following = 0xE000
    return stem[:-1] + chr(following)


class _Held:
    """One thread's connection, in that thread's slot of a cache's ``threading.local``.

    It is closed by its thread, or when its slot goes (the thread ended, or
    the cache was collected), or by ``TextCache.retire`` once no call is in
    progress: never while its thread may be running a statement on it, which
    would crash the process (CPython's sqlite3 frees what the statement
    still uses). ``registry`` lets ``retire`` find it without keeping it
    alive, so a thread's end still closes it.
    """

    __slots__ = ("__weakref__", "con", "connecting", "generation", "pid", "registry")

    def __init__(
        self, con: Connection, generation: int, registry: dict[int, weakref.ref[_Held]]
    ) -> None:
        self.con = con
        self.generation = generation
        self.pid = os.getpid()
        self.connecting = True  # until its checks and pragmas are done
        self.registry = registry
        registry[id(self)] = weakref.ref(self)

    def close(self) -> None:
        self.registry.pop(id(self), None)
        if self.pid != os.getpid():
            # A forked child's copy of the parent's connection: SQLite says
            # not to touch it, and closing it can wait for ever on a mutex a
            # parent thread held (inside a statement) at the fork.
            return
        with contextlib.suppress(sqlite3.Error):
            self.con.close()

    __del__ = close


# Every open cache, for the fork hook below.
_caches: weakref.WeakSet[TextCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child's count of calls starts at zero, and its connections afresh.

    Another thread of the parent may have held the lock, or been in a
    call, at the fork: the child has no such thread to release them. The
    parent's connections are stale in the child (a new generation), so each
    thread connects anew. The parent's connections are left alone (see
    ``_Held.close``), so a cache the parent was retiring counts as closed.
    """
    for cache in list(_caches):
        cache._calls_lock = threading.Lock()
        cache._entered, cache._left = itertools.count(), itertools.count()
        cache._generation = next(cache._generations)
        if cache._retiring:
            cache.all_closed = True


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class TextCache(diskcache.Cache):  # type: ignore[misc]
    """A ``diskcache.Cache`` that bounds every wait, refuses planted content, and reads text lean.

    Its retry loops give up after ``timeout``, not 60 s:

    diskcache opens a database, and each new thread's connection, by writing
    its settings and pragmas, and retries a locked database for 60 seconds
    (``_sql_retry``, and a loop of its own in ``reset`` for pragmas). Another
    process holding the database locked would then freeze the caller for a
    minute. This bounds those retries by the same ``timeout`` SQLite gets.

    Each connection (one per thread) is made only after the database files
    are found to be regular files and its schema to be diskcache's own, and
    a ``Watchdog`` interrupts any statement that runs longer than
    ``timeout`` plus a second (an index build gets a minute).
    """

    def __init__(self, directory: str, *, timeout: float, **options: Any) -> None:
        self._local = threading.local()  # diskcache's own replaces it: here for a failed open
        # Bumped by close(): a thread whose connection is older closes it and reconnects.
        self._generations = itertools.count()
        self._generation = next(self._generations)
        self._held: dict[int, weakref.ref[_Held]] = {}  # every thread's, for retire()
        # Calls begun and ended (see enter), and whether retire() stopped new ones.
        self._entered, self._left = itertools.count(), itertools.count()
        self._calls_lock = threading.Lock()  # for retire(); replaced in a forked child
        self._retiring = False
        self.all_closed = False  # retired, and every connection closed
        self._identity: tuple[int, int] | None = None
        self._retry_budget = timeout
        self._budget = timeout + _MARGIN
        # Where to look for a planted journal before each statement: only
        # outside WAL mode, where SQLite opens it at every transaction.
        self._journal_at: str | None = None
        # diskcache stores its settings in the database and takes the
        # directory's copy of each one not passed here: a planted
        # ``sqlite_busy_timeout`` of an hour would replace ``timeout``, a
        # planted eviction policy or ``statistics`` would turn every hit into
        # a write. So every setting is passed, and only the pragmas chosen
        # here are ever applied to a connection.
        settings = {**diskcache.core.DEFAULT_SETTINGS, **options}
        self._pragmas = {key: value for key, value in settings.items() if key.startswith("sqlite_")}
        try:
            super().__init__(directory, timeout=timeout, **settings)
            info = os.stat(os.path.join(self.directory, diskcache.core.DBNAME))
        except BaseException:
            self.close()  # a failed open (a locked database) must not leak its connection
            raise
        self._identity = (info.st_dev, info.st_ino)
        _caches.add(self)

    @property
    def _con(self) -> Connection:
        # diskcache's, with checks on a new connection: a new process (a
        # fork) or thread gets a connection of its own, and so does a thread
        # whose connection a close() made stale.
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and held.generation == self._generation:  # a fork moves it too
            return held.con
        return self._reconnect(held)

    def _reconnect(self, held: _Held | None) -> Connection:
        local = self._local
        if held is not None and held.connecting and held.pid == os.getpid():
            return held.con  # being set up by this thread (its pragmas), whatever close() did
        if held is not None:  # this thread's own, or in a forked child the parent's copy
            del local.held
            held.close()
        generation = self._generation  # read first: a close() from now on makes it stale
        check_database_files(self._directory)
        path = os.path.join(self._directory, diskcache.core.DBNAME)
        self._check_identity(path)
        con = sqlite3.connect(
            path,
            timeout=self._timeout,
            isolation_level=None,
            # Only this thread uses it and closes it, but a cache or thread
            # that is gone is cleaned up on whichever thread drops it (_Held).
            check_same_thread=False,
            factory=Connection,
        )
        con.watchdog = watchdog = Watchdog()
        con.set_progress_handler(watchdog, _STEPS)
        local.held = held = _Held(con, generation, self._held)
        try:
            self._check_identity(path)  # the file SQLite opened, before it reads a page
            watchdog.deadline = time.monotonic() + self._budget
            check_schema(con, path)
            for key, value in sorted(self._pragmas.items()):  # per connection, as diskcache does
                self.reset(key, value, update=False)
            ((mode,),) = self._sql("PRAGMA journal_mode").fetchall()
        except BaseException:
            del local.held  # the next use connects afresh, with every check and pragma
            held.close()
            raise
        held.connecting = False
        self._journal_at = None if str(mode).lower() == "wal" else self._directory
        return con

    def close(self) -> None:
        """Close this thread's connection now; another thread's on its next use, or when it ends.

        A thread may be running a statement on its connection right now, and
        closing it from here would crash the process (CPython's sqlite3 frees
        what that statement still uses). So each connection is closed only by
        its own thread, which finds it stale on its next use and reconnects,
        or once nothing can use it any more: when its thread ends or this
        cache is collected (see ``_Held``).
        """
        self._generation = next(self._generations)
        local = self._local
        held: _Held | None = getattr(local, "held", None)
        if held is not None:
            del local.held
            held.close()

    @property
    def _sql(self) -> Callable[..., sqlite3.Cursor]:
        con = self._con
        execute, watchdog = con.execute, con.watchdog
        budget, journal_at = self._budget, self._journal_at

        def execute_within_budget(statement: str, *args: Any) -> sqlite3.Cursor:
            if journal_at is not None:
                check_database_files(journal_at, JOURNAL)
            long = statement.startswith(_INDEX_STATEMENTS)
            watchdog.deadline = time.monotonic() + (_INDEX_BUDGET if long else budget)
            return execute(statement, *args)

        return execute_within_budget

    def _check_identity(self, path: str) -> None:
        """Refuse to connect a thread to another database than the one this cache opened.

        SQLite shares the ``-wal`` and ``-shm`` files by name: connections to
        a deleted database and to a new one at its path would use (and
        truncate, or on close delete) each other's, crashing the process
        (SIGBUS) or losing writes. So a new database is only ever opened by
        a new cache, once every connection to the old one is closed.
        """
        if self._identity is not None and self.moved():
            raise FileNotFoundError(
                errno.ENOENT, "the database was deleted or replaced while open", path
            )

    # Calls are counted without a lock, on the hit path: ``next()`` on an
    # ``itertools.count`` is one atomic step under the GIL. A call counts
    # itself in, then looks at ``_retiring``; ``retire`` sets ``_retiring``,
    # then compares the counts. So either retire sees the call (and leaves
    # the closing to the last call out), or the call sees retire and backs
    # out before touching a connection.

    @property
    def calls_in_progress(self) -> int:
        """Calls between ``enter`` and ``leave`` now (for tests and for curiosity)."""
        return counted(self._entered) - counted(self._left)

    def enter(self) -> bool:
        """Count a call that will use this thread's connection; ``False`` once retired."""
        next(self._entered)
        if self._retiring:
            self.leave()
            return False
        return True

    def leave(self) -> None:
        """End a call ``enter`` counted: the last one out of a retiring cache closes it."""
        next(self._left)
        if self._retiring and self._idle():
            self._close_all()

    def retire(self) -> None:
        """Take no new calls, and close every connection once no call is in progress.

        Right now if none is, else when the last one ends, on its thread:
        then no thread can be running a statement on any of them.
        """
        with self._calls_lock:
            if self._retiring:
                return
            self._retiring = True
        if self._idle():
            self._close_all()

    def _idle(self) -> bool:
        # ``_left`` first: a late caller counting in and backing out between
        # the two reads then shows as one more in than out, never as idle.
        left = counted(self._left)
        return counted(self._entered) == left

    def _close_all(self) -> None:
        with self._calls_lock:  # the last call out and retire() may both get here
            if self.all_closed:
                return
            for ref in self._held.copy().values():
                held = ref()
                if held is not None:
                    held.close()
            self.all_closed = True

    def moved(self) -> bool:
        """Whether the database file was deleted or replaced since this cache opened it.

        SQLite keeps writing to a deleted database through its open
        connections, so a cache directory removed while the app runs would
        turn every write into a silent no-op.
        """
        try:
            info = os.stat(os.path.join(self.directory, diskcache.core.DBNAME))
        except FileNotFoundError:
            return True
        return (info.st_dev, info.st_ino) != self._identity

    def sweep_orphans(self, older_than: float) -> int:
        """Remove value files no row names (a crash mid-write leaves them), older than a bound."""
        # In batches, each a statement within the budget, however large the cache.
        referenced: list[str] = []
        last = -1
        while rows := self._sql(_SELECT_FILENAMES, (last, _ORPHAN_BATCH)).fetchall():
            referenced += [name for _, name in rows if name is not None]
            last = rows[-1][0]
        return _valuefiles.sweep(self.directory, referenced, older_than)

    @contextlib.contextmanager
    def _transact(self, retry: bool = False, filename: str | None = None) -> Iterator[Any]:
        # diskcache removes a new value file when the transaction cannot
        # begin, but not when a statement in it fails (a full disk): no row
        # would ever name the file.
        try:
            with super()._transact(retry, filename) as transaction:
                yield transaction
        except BaseException as exc:
            self._disk.remove(filename)
            # SQLite itself rolls back the transaction of a statement that was
            # interrupted (or found the disk full), so diskcache's ROLLBACK
            # then fails: report what failed, not that.
            cause = exc.__context__
            if cause is not None and str(exc).startswith("cannot rollback"):
                raise cause from None
            raise

    @property
    def _sql_retry(self) -> Any:
        execute = self._sql
        budget = self._retry_budget

        def execute_with_retry(statement: str, *args: Any, **kwargs: Any) -> Any:
            deadline = time.monotonic() + budget
            while True:
                try:
                    return execute(statement, *args, **kwargs)
                except sqlite3.OperationalError as exc:  # noqa: PERF203  (a retry loop)
                    if str(exc) != "database is locked" or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.001)

        return execute_with_retry

    def _reads_change_nothing(self) -> bool:
        """Whether a read may skip diskcache's ``get``: no statistics, no read-tracking eviction."""
        return not self.statistics and self.eviction_policy in _READ_ONLY_POLICIES

    def _statement_connection(self) -> Connection:
        """This thread's connection, with the journal checked and the watchdog's deadline set."""
        con = self._con
        if self._journal_at is not None:
            check_database_files(self._journal_at, JOURNAL)
        con.watchdog.deadline = time.monotonic() + self._budget
        return con

    def _text(self, mode: int, filename: str | None, stored: Any) -> str | None:
        """A row's text, refused unless this library could have written it."""
        try:
            text: str = self._disk.fetch(mode, filename, stored, False)
        except OSError:  # the file went away under a concurrent delete, as Cache.get allows
            return None
        return text

    def get_text(self, key: str) -> str | None:
        """``get(key)`` for a string key, in one query and without the generic steps.

        ``Cache.get`` converts the key through the Disk, looks up the eviction
        policy and builds a six-column row on every call: a sixth of a disk
        hit. Where reading changes nothing (no statistics, an eviction policy
        that does not track reads, the default), this reads the row directly
        from diskcache's documented table; otherwise it defers to ``get``.

        It sets the watchdog's deadline itself rather than through ``_sql``:
        a lookup takes some 20 VM steps, but SQLite counts them across the
        executions of a cached statement, so every 50th or so lookup meets
        the watchdog, and it must not find the last statement's deadline.
        """
        if self.statistics or self.eviction_policy not in _READ_ONLY_POLICIES:
            value: str | None = self.get(key)
            return value
        con = self._con
        if self._journal_at is not None:
            check_database_files(self._journal_at, JOURNAL)
        con.watchdog.deadline = time.monotonic() + self._budget
        rows = con.execute(_SELECT_TEXT, (key, time.time())).fetchall()
        if not rows:
            return None
        ((mode, filename, stored, _),) = rows
        return self._text(mode, filename, stored)

    def get_text_with_expiry(self, key: str) -> tuple[str, float | None] | None:
        """The text under ``key`` and its Unix ``expire_time`` (``None``: never), in one query."""
        if not self._reads_change_nothing():
            value, expires = self.get(key, expire_time=True)
            return None if value is None else (value, expires)
        con = self._statement_connection()
        rows = con.execute(_SELECT_TEXT, (key, time.time())).fetchall()
        if not rows:
            return None
        ((mode, filename, stored, expires),) = rows
        text = self._text(mode, filename, stored)
        return None if text is None else (text, expires)

    def get_texts(self, keys: Sequence[str]) -> list[str | None]:
        """The text under each key or ``None``, in the order of ``keys``: one query per 998 keys.

        A refused row (``CorruptEntryError`` from ``get``) is ``None`` here,
        a miss the next write replaces: raising would make the whole batch
        miss, good rows too, on every read, since nothing says which row to
        delete.
        """
        if not self._reads_change_nothing():
            return [self._get_or_none(key) for key in keys]
        unique = list(dict.fromkeys(keys))
        found: dict[str, str | None] = {}
        for start in range(0, len(unique), _KEYS_PER_QUERY):
            chunk = unique[start : start + _KEYS_PER_QUERY]
            con = self._statement_connection()
            query = _SELECT_MANY.format(", ".join("?" * len(chunk)))
            for key, mode, filename, stored in con.execute(query, (*chunk, time.time())):
                with contextlib.suppress(CorruptEntryError):
                    found[key] = self._text(mode, filename, stored)
        return [found.get(key) for key in keys]

    def _get_or_none(self, key: str) -> str | None:
        try:
            value: str | None = self.get(key)
        except CorruptEntryError:
            return None
        return value

    def set_texts(self, items: Mapping[str, str], expire: float | None) -> None:
        """Store every item in one transaction: all of them, or (on any failure) none."""
        now = time.time()
        expire_time = None if expire is None else now + expire
        stored: list[tuple[str, tuple[Any, ...]]] = []
        try:
            for key, value in items.items():
                size, mode, filename, db_value = self._disk.store(value, False, key=key)
                stored.append((key, (expire_time, None, size, mode, filename, db_value)))
            with self._transact() as (sql, cleanup):
                for key, columns in stored:
                    rows = sql(_SELECT_ROW, (key,)).fetchall()
                    if rows:
                        ((rowid, old_filename),) = rows
                        cleanup(old_filename)  # removed once the transaction commits
                        self._row_update(rowid, now, columns)
                    else:
                        self._row_insert(key, True, now, columns)
                # Culls as many rows as one set per item would.
                self._cull(now, sql, cleanup, self.cull_limit * len(stored))
        except BaseException:
            for _, columns in stored:  # written for rows that were never committed
                self._disk.remove(columns[4])
            raise

    def delete_holding(self, key: str, text: str) -> bool:
        """Delete ``key``'s row only while it holds ``text`` (unexpired); True if it did.

        The read and the delete are one write transaction, so no other
        process can replace the row in between (a compare-and-delete).
        """
        with self._transact() as (sql, cleanup):
            if self.get_text(key) != text:
                return False
            ((rowid, filename),) = sql(_SELECT_ROW, (key,)).fetchall()
            sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
            cleanup(filename)
            return True

    def delete_prefixed(self, prefix: str) -> int:
        """Delete the rows whose key is text starting with ``prefix``; count the unexpired ones.

        Found by a range of the key's index, not by loading every key; in
        batches, each a transaction of its own. Value files of deleted rows
        are removed once their batch commits.
        """
        upper = _after_prefix(prefix)
        bounds = (prefix,) if upper is None else (prefix, upper)
        where = _PREFIXED.format("" if upper is None else " AND key < ?")
        select = "SELECT filename, expire_time " + where
        delete = f"DELETE FROM Cache WHERE rowid IN (SELECT rowid {where})"  # noqa: S608  (constants only)
        removed = 0
        while True:
            now = time.time()
            with self._transact() as (sql, cleanup):
                rows = sql(select, (*bounds, _DELETE_BATCH)).fetchall()
                if rows:
                    sql(delete, (*bounds, _DELETE_BATCH))
                for filename, _ in rows:
                    cleanup(filename)
            removed += sum(1 for _, expires in rows if expires is None or expires > now)
            if len(rows) < _DELETE_BATCH:
                return removed

    def scanned(self, prefix: str, after: str) -> list[str]:
        """The next batch of unexpired text keys under ``prefix``, in order, after ``after``.

        A range of the key's index (as ``delete_prefixed``), so each batch is
        one short statement however large the cache; a scan is a series of
        batches, each resuming after the last key of the one before.
        """
        upper = _after_prefix(prefix)
        query = _SCANNED.format("" if upper is None else " AND key < ?")
        bounds = (prefix,) if upper is None else (prefix, upper)
        con = self._statement_connection()
        rows = con.execute(query, (after, *bounds, time.time(), SCAN_BATCH)).fetchall()
        return [key for (key,) in rows]

    def reset(self, key: str, value: Any = diskcache.core.ENOVAL, update: bool = True) -> Any:
        if value is diskcache.core.ENOVAL or not key.startswith("sqlite_"):
            return super().reset(key, value, update)
        if key not in self._pragmas:
            return value  # a pragma only the directory asks for: never applied
        if update:
            self._pragmas[key] = value  # ours: written by __init__ or an explicit reset
        else:
            value = self._pragmas[key]  # read back from the directory: ours wins
        # diskcache's own pragma loop, with the deadline instead of 60 s.
        if update:
            self._sql_retry("UPDATE Settings SET value = ? WHERE key = ?", (value, key))
        pragma, deadline = key[7:], time.monotonic() + self._retry_budget
        while True:
            try:
                current = self._sql(f"PRAGMA {pragma}").fetchall()
                if not current or current[0][0] != value:
                    self._sql(f"PRAGMA {pragma} = {value}").fetchall()
                break
            except sqlite3.OperationalError as exc:
                if str(exc) != "database is locked" or time.monotonic() >= deadline:
                    raise
                time.sleep(0.001)
        setattr(self, key, value)
        return value
