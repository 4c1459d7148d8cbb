"""diskcache, hardened for a cache whose directory others may write: text only, bounded, checked.

``DiskCache`` stores through ``TextCache`` and ``TextOnlyDisk``. Whoever can
write the directory can plant rows, files and SQL; none of it may run code
(no unpickling), escape the directory, hang a caller (FIFOs, links, triggers,
a busy timeout from the Settings table) or change what a read does.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import diskcache

from instructor_cache.backends import _valuefiles
from instructor_cache.backends._planted import (
    JOURNAL,
    Connection,
    TextOnlyDisk,
    Watchdog,
    check_database_files,
    check_schema,
)

__all__ = ["DEFAULT_TIMEOUT", "FAILURES", "ORPHAN_AGE", "TextCache", "TextOnlyDisk"]

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
        # Every thread's connection, so that close() closes them all from any
        # thread: an async adapter's worker thread may outlive its use here.
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
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

    @property
    def _con(self) -> Connection:
        # diskcache's, with checks on a new connection: a new process (a
        # fork) or thread gets a connection of its own.
        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", pid) != pid:  # a fork: the parent's connections
            # Another thread of the parent may have held the lock at the fork;
            # the child has no other thread to release it.
            self._connections_lock = threading.Lock()
            self.close()
            local = self._local
        con: Connection | None = getattr(local, "con", None)
        if con is None:
            local.pid = pid
            con = self._connect(local)
        return con

    def _connect(self, local: threading.local) -> Connection:
        check_database_files(self._directory)
        path = os.path.join(self._directory, diskcache.core.DBNAME)
        con = sqlite3.connect(
            path,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,  # close() may run on another thread; each uses its own
            factory=Connection,
        )
        con.watchdog = watchdog = Watchdog()
        con.set_progress_handler(watchdog, _STEPS)
        try:
            watchdog.deadline = time.monotonic() + self._budget
            check_schema(con, path)
        except BaseException:
            con.close()
            raise
        with self._connections_lock:
            self._connections.append(con)
        local.con = con
        for key, value in sorted(self._pragmas.items()):  # per connection, as diskcache does
            self.reset(key, value, update=False)
        ((mode,),) = self._sql("PRAGMA journal_mode").fetchall()
        self._journal_at = None if str(mode).lower() == "wal" else self._directory
        return con

    def close(self) -> None:
        """Close the connection of every thread that used this cache; the next use reopens.

        diskcache closes only the calling thread's, leaving the others to be
        closed (with a ``ResourceWarning``) whenever their threads end.
        """
        with self._connections_lock:
            connections, self._connections = self._connections, []
            self._local = threading.local()  # every thread connects afresh
        for con in connections:
            con.close()

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
        """The text under each key or ``None``, in the order of ``keys``: one query per 998 keys."""
        if not self._reads_change_nothing():
            return [self.get(key) for key in keys]
        unique = list(dict.fromkeys(keys))
        found: dict[str, str | None] = {}
        for start in range(0, len(unique), _KEYS_PER_QUERY):
            chunk = unique[start : start + _KEYS_PER_QUERY]
            con = self._statement_connection()
            query = _SELECT_MANY.format(", ".join("?" * len(chunk)))
            for key, mode, filename, stored in con.execute(query, (*chunk, time.time())):
                found[key] = self._text(mode, filename, stored)
        return [found.get(key) for key in keys]

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
