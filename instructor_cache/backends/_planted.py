"""What a directory others can write cannot make a DiskCache do: unpickle, follow, hang.

Whoever can write the directory can plant rows, files and SQL. ``TextOnlyDisk``
reads and writes text only (no row is ever unpickled); the checks below refuse
a database or journal that is not a regular file and a database holding
anything diskcache does not create; ``_Watchdog`` interrupts a statement that
runs past its deadline. ``_textcache`` applies them on every path.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import time
from typing import Any

import diskcache

from instructor_cache.backends import _valuefiles
from instructor_cache.errors import CorruptEntryError

__all__ = [
    "DATABASE_FILES",
    "JOURNAL",
    "Connection",
    "TextOnlyDisk",
    "Watchdog",
    "check_database_files",
    "check_schema",
]

# The database and the companion files SQLite opens next to it.
DATABASE_FILES = tuple(
    diskcache.core.DBNAME + suffix for suffix in ("", "-journal", "-wal", "-shm")
)
JOURNAL = (diskcache.core.DBNAME + "-journal",)


# Every object diskcache 5 creates, as sqlite_master keeps its SQL: with the
# index of each eviction policy and of tag_index. Anything else a database
# holds (a trigger, a view, an altered definition) someone else put there.
_DISKCACHE_SQL = (
    "CREATE TABLE Settings ( key TEXT NOT NULL UNIQUE, value)",
    "CREATE TABLE Cache ( rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, store_time REAL,"
    " expire_time REAL, access_time REAL, access_count INTEGER DEFAULT 0, tag BLOB,"
    " size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB)",
    "CREATE UNIQUE INDEX Cache_key_raw ON Cache(key, raw)",
    "CREATE INDEX Cache_expire_time ON Cache (expire_time)",
    "CREATE INDEX Cache_store_time ON Cache (store_time)",
    "CREATE INDEX Cache_access_time ON Cache (access_time)",
    "CREATE INDEX Cache_access_count ON Cache (access_count)",
    "CREATE INDEX Cache_tag_rowid ON Cache(tag, rowid)",
    "CREATE TRIGGER Settings_count_insert AFTER INSERT ON Cache FOR EACH ROW BEGIN"
    ' UPDATE Settings SET value = value + 1 WHERE key = "count"; END',
    "CREATE TRIGGER Settings_count_delete AFTER DELETE ON Cache FOR EACH ROW BEGIN"
    ' UPDATE Settings SET value = value - 1 WHERE key = "count"; END',
    "CREATE TRIGGER Settings_size_insert AFTER INSERT ON Cache FOR EACH ROW BEGIN"
    ' UPDATE Settings SET value = value + NEW.size WHERE key = "size"; END',
    "CREATE TRIGGER Settings_size_update AFTER UPDATE ON Cache FOR EACH ROW BEGIN"
    ' UPDATE Settings SET value = value + NEW.size - OLD.size WHERE key = "size"; END',
    "CREATE TRIGGER Settings_size_delete AFTER DELETE ON Cache FOR EACH ROW BEGIN"
    ' UPDATE Settings SET value = value - OLD.size WHERE key = "size"; END',
)
# (name, SQL) rows of sqlite_master; SQLite builds each object from its SQL.
_SCHEMA = frozenset(
    {
        ("sqlite_autoindex_Settings_1", None),  # Settings.key's UNIQUE
        *((sql.replace(" UNIQUE", "").split()[2], sql) for sql in _DISKCACHE_SQL),
    }
)


class TextOnlyDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache ships no type hints
    """A diskcache ``Disk`` that stores and returns text and never unpickles.

    diskcache decodes each row by the mode stored in that row, so a row
    someone wrote in pickle mode would run code on read (CVE-2025-69872),
    whatever this library wrote there. Here any row that is not text is
    refused with ``CorruptEntryError`` before it is decoded, and keys that
    are not plain strings are never unpickled either.

    Text too large for the row goes to a value file, written and read as
    UTF-8 bytes (so it comes back exactly, newlines included) through
    ``_valuefiles``: only a regular file inside the directory, of at most
    ``max_file_size`` bytes, is ever read or removed.
    """

    max_file_size = _valuefiles.MAX_SIZE

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if type(value) is not str:
            raise TypeError(f"DiskCache stores text only, got {type(value).__name__}")
        if len(value) < self.min_file_size:
            return 0, diskcache.core.MODE_RAW, None, value
        data = value.encode("utf-8")
        if len(data) > self.max_file_size:
            # It could not be read back, so it is not stored.
            raise OSError(
                errno.EFBIG,
                f"a value of {len(data)} bytes is over the bound of "
                f"{self.max_file_size} (TextOnlyDisk.max_file_size)",
            )
        filename = _valuefiles.write(self._directory, data)
        return len(data), diskcache.core.MODE_TEXT, filename, None

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> str:
        if mode == diskcache.core.MODE_RAW and type(value) is str:
            return value
        parts = _valuefiles.parse(filename) if mode == diskcache.core.MODE_TEXT else None
        if parts is None:
            raise CorruptEntryError(
                f"refusing a row this library did not write (diskcache mode {mode}, "
                f"file {filename!r})"
            )
        data = _valuefiles.read(self._directory, parts, self.max_file_size)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptEntryError(f"a text file that is not UTF-8: {exc}") from exc

    def remove(self, file_path: str) -> None:
        # A planted row may name any path ("/etc/important") or a path through
        # a link: only value files inside the directory are ever removed.
        _valuefiles.remove(self._directory, file_path)

    def get(self, key: Any, raw: bool) -> Any:
        if raw and type(key) is str:
            return key
        return None  # a key this library did not write: never decoded, never matched


def check_database_files(directory: str, names: tuple[str, ...] = DATABASE_FILES) -> None:
    """Refuse a database file or companion file that is not a regular file, before SQLite opens it.

    SQLite opens the rollback journal of any database it reads, to look for
    one left by a crash: a FIFO planted there blocks that read forever, and
    a link would send reads and writes elsewhere. In WAL mode (diskcache's)
    only a new connection looks; otherwise every transaction does.
    """
    for name in names:
        path = os.path.join(directory, name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            raise OSError(
                f"refusing {path}: not a regular file ({stat.filemode(mode)}), which SQLite "
                "could block on or follow; remove it, or point DiskCache at another directory"
            )


def check_schema(con: sqlite3.Connection, path: str) -> None:
    """Refuse a database holding anything diskcache does not create.

    A planted trigger runs inside our statements (one that cross-joins a
    large table never returns), and a planted view or altered table changes
    what they read. The file is left as it is: it is not ours to repair.
    """
    for kind, name, sql in con.execute("SELECT type, name, sql FROM sqlite_master").fetchall():
        if (name, sql) not in _SCHEMA:
            raise sqlite3.DatabaseError(
                f"refusing {path}: it holds a {kind} {name!r} diskcache does not create "
                f"({sql!r:.200}); remove it, or point DiskCache at another directory"
            )


class Watchdog:
    """A connection's progress handler: it interrupts a statement running past its deadline.

    SQLite's timeout bounds only the wait for a lock, not a statement that
    runs long: without this, a trigger planted while the database is open
    could hold a call forever. The interrupted statement raises
    ``sqlite3.OperationalError("interrupted")``.
    """

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = 0.0

    def __call__(self) -> bool:
        return time.monotonic() > self.deadline


class Connection(sqlite3.Connection):
    """A connection that carries its own ``Watchdog``, so no thread-local lookup finds it."""

    watchdog: Watchdog
