"""A DiskCache directory someone tampered with, or that fails under it: right results, no hang.

Rows and files are planted with sqlite3 and os directly, as anyone with write
access to the directory could; failures are real (a FIFO, a file size limit,
a directory removed while open), never mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diskcache
import pytest

from instructor_cache import DiskCache, instructor_cache
from instructor_cache.backends.disk import TextOnlyDisk
from instructor_cache.errors import BackendError, CorruptEntryError
from tests._locks import locked
from tests.conftest import FakeLLM, UserDetail

FLAVOURS = ["sync", "async"]
VALUE_FILE = ("ab", "cd", "0123456789abcdef0123456789ab.val")  # the shape diskcache writes


def _decorated(backend: DiskCache, llm: FakeLLM, flavour: str) -> tuple[Any, Callable[[str], Any]]:
    """``extract`` on ``backend``, and a plain function that calls it in ``flavour``."""
    if flavour == "sync":

        @instructor_cache(backend, ignore=("llm",))
        def extract(text: str) -> UserDetail:
            return llm(text)

        return extract, extract

    @instructor_cache(backend, ignore=("llm",))
    async def aextract(text: str) -> UserDetail:
        return llm(text)

    def call(text: str) -> UserDetail:
        return asyncio.run(aextract(text))

    return aextract, call


def _plant_text_row(directory: Path, key: str, filename: str = "/".join(VALUE_FILE)) -> Path:
    """Insert a text-mode row naming ``filename`` under ``key``; return where that file is."""
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con, con:
        con.execute(
            "INSERT OR REPLACE INTO Cache (key, raw, store_time, expire_time, access_time,"
            " access_count, tag, size, mode, filename, value)"
            " VALUES (?, 1, 0, NULL, 0, 0, NULL, 0, ?, ?, NULL)",
            (key, diskcache.core.MODE_TEXT, filename),
        )
    return directory / filename


def _plant_file(path: Path, planted: str) -> None:
    """Put at ``path`` a FIFO or a link to ``/dev/zero``: opening or reading it never ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if planted == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@contextlib.contextmanager
def _fifo_released_after(seconds: float, path: Path) -> Iterator[None]:
    """Open ``path`` for writing after ``seconds``: a stuck reader fails a bound, not hangs."""

    def release() -> None:
        if path.is_fifo():
            with contextlib.suppress(OSError):  # no reader waiting: nothing to release
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(seconds, release)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        release()


def _value_files(directory: Path) -> set[str]:
    """The ``.val`` files inside ``directory``, not following links (as glob would)."""
    return {
        os.path.relpath(os.path.join(parent, name), directory)
        for parent, _, names in os.walk(directory)
        for name in names
        if name.endswith(".val")
    }


def _referenced_files(directory: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con:
        rows = con.execute("SELECT filename FROM Cache WHERE filename IS NOT NULL").fetchall()
    return {name for (name,) in rows}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("planted", ["fifo", "link-to-dev-zero"])
def test_value_file_that_never_ends_is_a_fast_miss(
    planted: str, flavour: str, disk: Any, llm: FakeLLM, tmp_path: Path
) -> None:
    """A planted row whose file is a FIFO or a link to /dev/zero is refused at once and replaced."""
    backend = disk(tmp_path / "cache")
    extract, call = _decorated(backend, llm, flavour)
    assert call("A is 1") == UserDetail(name="A", age=1)  # creates the database
    path = _plant_text_row(tmp_path / "cache", extract.cache_key("M is 2"))
    _plant_file(path, planted)

    with _fifo_released_after(5.0, path):
        started = time.monotonic()
        assert call("M is 2") == UserDetail(name="M", age=2)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0  # opening the FIFO would block, reading /dev/zero would never end
    assert extract.cache_info().errors == 1
    assert not path.exists()  # the refused row was deleted, and with it the planted file only
    assert call("M is 2") == UserDetail(name="M", age=2)
    assert extract.cache_info().hits == 1
    assert [text for text, *_ in llm.calls] == ["A is 1", "M is 2"]


async def test_value_file_that_blocks_leaves_other_async_calls_free(
    disk: Any, llm: FakeLLM, tmp_path: Path
) -> None:
    """While a planted FIFO row is looked up, other async calls on the same cache still finish."""
    backend = disk(tmp_path / "cache")

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    await extract("A is 1")
    path = _plant_text_row(tmp_path / "cache", extract.cache_key("M is 2"))
    _plant_file(path, "fifo")

    with _fifo_released_after(5.0, path):
        started = time.monotonic()
        results = await asyncio.gather(extract("M is 2"), extract("A is 1"), extract("B is 3"))
        elapsed = time.monotonic() - started
    assert elapsed < 2.0  # one worker thread serves the cache: a blocked read stalls them all
    assert results == [UserDetail(name=n, age=a) for n, a in [("M", 2), ("A", 1), ("B", 3)]]
    assert extract.cache_info().hits == 1


@pytest.mark.parametrize("link", ["file-is-a-link", "subdirectory-is-a-link"])
def test_link_out_of_the_directory_is_neither_read_nor_deleted(
    link: str, disk: Any, llm: FakeLLM, tmp_path: Path
) -> None:
    """A value file reached through a link is refused, and cleaning up removes nothing outside."""
    directory, outside = tmp_path / "cache", tmp_path / "outside"
    backend = disk(directory)
    extract, call = _decorated(backend, llm, "sync")
    call("A is 1")
    victim = outside.joinpath(*VALUE_FILE[1:])  # another cache's value file, say
    victim.parent.mkdir(parents=True)
    victim.write_text("secret\n")
    path = _plant_text_row(directory, extract.cache_key("M is 2"))
    if link == "file-is-a-link":
        path.parent.mkdir(parents=True)
        path.symlink_to(victim)
    else:
        (directory / VALUE_FILE[0]).symlink_to(outside, target_is_directory=True)

    with pytest.raises(CorruptEntryError):
        backend.get(extract.cache_key("M is 2"))  # not "secret\n"
    assert call("M is 2") == UserDetail(name="M", age=2)
    assert extract.cache_info().errors == 1
    assert victim.read_text() == "secret\n"
    assert call("M is 2") == UserDetail(name="M", age=2)
    assert extract.cache_info().hits == 1


def test_oversized_value_file_is_refused(
    disk: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value file over the bound is refused unread, and a value over it is not stored."""
    monkeypatch.setattr(TextOnlyDisk, "max_file_size", 100_000)
    backend = disk(tmp_path / "cache")
    backend.set("warm", "up")
    path = _plant_text_row(tmp_path / "cache", "planted")
    path.parent.mkdir(parents=True)
    path.write_text("x" * 100_001)
    with pytest.raises(CorruptEntryError, match="100000 bytes"):
        backend.get("planted")
    with pytest.raises(BackendError, match=r"File too large|over the bound"):
        backend.set("big", "y" * 100_001)
    backend.set("fits", "z" * 100_000)
    assert backend.get("fits") == "z" * 100_000


def test_large_value_comes_back_exactly(disk: Any, tmp_path: Path) -> None:
    """A value stored in a file keeps its line endings: it is written and read as UTF-8 bytes."""
    backend = disk(tmp_path / "cache")
    value = "line\r\nother\rlast\n" * 4000 + "é€𝄞"
    backend.set("k", value)
    assert _value_files(tmp_path / "cache")  # it did go to a file
    assert backend.get("k") == value


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_busy_timeout_planted_in_settings_does_not_replace_ours(
    flavour: str, disk: Any, llm: FakeLLM, tmp_path: Path
) -> None:
    """A Settings row asking SQLite to wait an hour for a lock is ignored: calls fall back fast."""
    directory = tmp_path / "cache"
    backend = disk(directory)
    backend.set("warm", "up")  # opened on this thread: the async calls open a new connection
    if flavour == "sync":
        backend.close()  # so the sync calls open the database afresh
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con, con:
        con.execute("INSERT OR REPLACE INTO Settings VALUES ('sqlite_busy_timeout', 3600000)")
    extract, call = _decorated(backend, llm, flavour)

    with locked(directory / "cache.db", release_after=5.0):
        started = time.monotonic()
        assert call("T is 1") == UserDetail(name="T", age=1)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0  # 0.25 s per operation, not 3600 s
    assert extract.cache_info().errors >= 1
    assert call("T is 1") == UserDetail(name="T", age=1)  # the lock is gone: cached now
    assert call("T is 1") == UserDetail(name="T", age=1)
    assert extract.cache_info().hits == 1


WRITE_FAILS = """
import os, resource, signal, sys
from pydantic import BaseModel
from instructor_cache import DiskCache, instructor_cache

class Doc(BaseModel):
    text: str

directory, where = sys.argv[1], sys.argv[2]
backend = DiskCache(directory)
for i in range(20):
    backend.set(f"warm{i}", "x" * 100)  # grows the write-ahead log
wal = os.path.getsize(os.path.join(directory, "cache.db-wal"))
# "value-file": the value file outgrows the limit. "database": the value
# file fits, but appending its row to the write-ahead log does not.
size, limit = (2 * wal, wal + 1) if where == "value-file" else (64 * 1024, wal)
assert size >= 32 * 1024 and (where == "value-file" or size < wal)

@instructor_cache(backend)
def extract(n: int) -> Doc:
    return Doc(text="y" * n)

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as Python sets it: a write past the limit fails
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
assert extract(size) == Doc(text="y" * size)
errors = extract.cache_info().errors
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
assert extract(size) == Doc(text="y" * size)  # stored now
assert extract(size) == Doc(text="y" * size)
print(errors, extract.cache_info().hits)
backend.close()
"""


@pytest.mark.parametrize("where", ["value-file", "database"])
def test_write_that_fails_part_way_leaves_no_file_behind(where: str, tmp_path: Path) -> None:
    """Under a real file size limit a failed write is counted and leaves no orphaned value file."""
    directory = tmp_path / "cache"
    run = subprocess.run(
        [sys.executable, "-c", WRITE_FAILS, str(directory), where],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    errors, hits = map(int, run.stdout.split())
    assert errors >= 1
    assert hits == 1
    assert len(_value_files(directory)) == 1
    assert _value_files(directory) == _referenced_files(directory)


CRASHES = """
import resource, signal, sys
from instructor_cache import DiskCache
backend = DiskCache(sys.argv[1])
backend.set("warm", "up")
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel's default kills
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
backend.set("big", "z" * 1_000_000)  # SIGXFSZ kills the process part-way through the file
"""


def test_clear_removes_value_files_a_crash_left_behind(disk: Any, tmp_path: Path) -> None:
    """clear() removes an old value file no row names, and nothing newer, elsewhere or unshaped."""
    directory, outside = tmp_path / "cache", tmp_path / "outside"
    run = subprocess.run(
        [sys.executable, "-c", CRASHES, str(directory)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == -signal.SIGXFSZ
    (orphan,) = _value_files(directory)
    stranger = outside.joinpath(*VALUE_FILE[1:])
    stranger.parent.mkdir(parents=True)
    stranger.write_text("another cache's value")
    (directory / "ee").symlink_to(outside, target_is_directory=True)
    (directory / "notes.txt").write_text("mine")
    an_hour_ago = time.time() - 3600
    for path in (directory / orphan, stranger, directory / "notes.txt"):
        os.utime(path, (an_hour_ago, an_hour_ago))
    fresh = directory.joinpath("12", "34", "f" * 28 + ".val")  # a writer's, not yet committed
    fresh.parent.mkdir(parents=True)
    fresh.write_text("in flight")
    backend = disk(directory)
    backend.set("kept", "v" * 100_000)

    backend.clear()
    assert not (directory / orphan).exists()
    assert fresh.exists()
    assert stranger.read_text() == "another cache's value"
    assert (directory / "notes.txt").read_text() == "mine"
    assert _value_files(directory) == {str(fresh.relative_to(directory))}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_directory_deleted_while_open_is_recreated(
    flavour: str, disk: Any, llm: FakeLLM, tmp_path: Path
) -> None:
    """After the directory is removed, a write fails once (counted), then caching resumes there."""
    directory = tmp_path / "cache"
    backend = disk(directory)
    extract, call = _decorated(backend, llm, flavour)
    assert call("A is 1") == UserDetail(name="A", age=1)
    shutil.rmtree(directory)

    assert call("B is 2") == UserDetail(name="B", age=2)
    # The first write to the deleted database (the single-flight lock) failed;
    # the entry's write went to a fresh one.
    assert extract.cache_info().errors == 1
    assert call("B is 2") == UserDetail(name="B", age=2)
    assert call("B is 2") == UserDetail(name="B", age=2)
    assert extract.cache_info().hits == 2
    assert [text for text, *_ in llm.calls] == ["A is 1", "B is 2"]
    with diskcache.Cache(str(directory)) as raw:
        assert '"name":"B"' in raw.get(extract.cache_key("B is 2"))


# A trigger whose body cross-joins a planted table of 3,000 rows: 2.7e10 rows
# to count, hours of work for SQLite, run inside whatever write fires it.
SLOW_TRIGGER = """
CREATE TABLE Big (x INTEGER);
WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 2999)
INSERT INTO Big SELECT x FROM n;
CREATE TRIGGER slow AFTER INSERT ON Cache BEGIN
SELECT count(*) FROM Big a, Big b, Big c WHERE a.x + b.x + c.x = -1; END;
"""

PLANTED = """
import asyncio, json, os, sqlite3, sys, time
from pydantic import BaseModel
from instructor_cache import DiskCache, instructor_cache
from instructor_cache.errors import BackendError

class Detail(BaseModel):
    text: str

directory, flavour, settings, *steps = sys.argv[1:]
backend = DiskCache(directory, **json.loads(settings))
paid = []

def extract(text: str) -> Detail:
    paid.append(text)
    return Detail(text=text.upper())

if flavour == "sync":
    call = instructor_cache(backend)(extract)
    info = call.cache_info
else:
    async def aextract(text: str) -> Detail:
        return extract(text)
    decorated = instructor_cache(backend)(aextract)
    info = decorated.cache_info
    def call(text):
        return asyncio.run(decorated(text))

report = {"results": [], "seconds": [], "refused": None}
for step in steps:
    started = time.monotonic()
    if step.startswith("sql:"):  # planted while the cache is open
        with sqlite3.connect(directory + "/cache.db") as con:
            con.executescript(step[4:])
        continue
    if step.startswith("fifo:"):  # planted while the cache is open
        os.mkfifo(os.path.join(directory, step[5:]))
        continue
    if step == "explicit":  # the backend API says why
        try:
            backend.set("explicit", "v")
        except BackendError as exc:
            report["refused"] = str(exc)
    else:
        report["results"].append(call(step).text)
    report["seconds"].append(time.monotonic() - started)
backend.close()
print(json.dumps({**report, "errors": info().errors, "hits": info().hits, "paid": paid}))
"""


def _run_planted(
    directory: Path, flavour: str, *steps: str, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run ``steps`` on a DiskCache at ``directory`` in a process killed if it hangs."""
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            PLANTED,
            str(directory),
            flavour,
            json.dumps(settings or {}),
            *steps,
        ],
        capture_output=True,
        text=True,
        timeout=30,  # before the fix it never returned
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def _create(disk: Any, directory: Path) -> None:
    """A working cache at ``directory``, closed again."""
    backend = disk(directory)
    backend.set("warm", "up")
    backend.close()


def _schema(database: Path) -> set[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(database)) as con:
        return set(con.execute("SELECT type, name FROM sqlite_master"))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_database_with_a_planted_trigger_is_refused_not_run(
    flavour: str, disk: Any, tmp_path: Path
) -> None:
    """A database holding a trigger diskcache never creates is refused at open, and left as is."""
    directory = tmp_path / "cache"
    for policy in diskcache.core.EVICTION_POLICY:  # every index diskcache makes is its own
        diskcache.Cache(str(directory), eviction_policy=policy, tag_index=True).close()
    backend = disk(directory)
    backend.set("warm", "up")
    assert backend.get("warm") == "up"
    backend.close()
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con:
        con.executescript(SLOW_TRIGGER)
    planted = _schema(directory / "cache.db")

    report = _run_planted(directory, flavour, "A is 1", "explicit", "A is 1")
    assert report["results"] == ["A IS 1", "A IS 1"]
    assert max(report["seconds"]) < 3.0  # the write would run the trigger for hours
    assert "diskcache does not create" in report["refused"]
    assert report["errors"] >= 1
    assert report["paid"] == ["A is 1", "A is 1"]  # refused, not cached
    assert _schema(directory / "cache.db") == planted  # not ours to repair


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_statement_slowed_by_a_trigger_planted_while_open_is_interrupted(
    flavour: str, tmp_path: Path
) -> None:
    """A trigger planted after the database was checked cannot hold a write past its budget."""
    directory = tmp_path / "cache"
    report = _run_planted(
        directory, flavour, "A is 1", "sql:" + SLOW_TRIGGER, "B is 2", "explicit", "A is 1"
    )
    assert report["results"] == ["A IS 1", "B IS 2", "A IS 1"]
    assert max(report["seconds"]) < 3.0  # 0.25 s timeout + 1 s margin, not hours
    # The write was interrupted; in the async flavour the explicit set runs on
    # this thread, whose new connection checks the database and refuses it.
    refused = "interrupted" if flavour == "sync" else "diskcache does not create"
    assert refused in report["refused"]
    assert report["errors"] >= 1
    assert report["hits"] == 1  # a read fires no trigger: what was cached is still served
    assert report["paid"] == ["A is 1", "B is 2"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("eviction_policy", "least-recently-used"), ("statistics", 1), ("size_limit", 0)],
)
def test_setting_planted_in_the_directory_does_not_replace_ours(
    name: str, value: object, disk: Any, tmp_path: Path
) -> None:
    """A Settings row that would make every hit a write, or evict every entry, is not taken."""
    directory = tmp_path / "cache"
    _create(disk, directory)
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con, con:
        con.execute("UPDATE Settings SET value = ? WHERE key = ?", (value, name))
    backend = disk(directory)
    keys = [f"k{i}" for i in range(15)]
    for key in keys:
        backend.set(key, key.upper())
    assert [backend.get(key) for key in keys] == [key.upper() for key in keys]
    assert getattr(backend.cache, name) == diskcache.core.DEFAULT_SETTINGS[name]

    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con:
        reads = con.execute("SELECT count(*) FROM Cache WHERE access_time != store_time")
        counted = con.execute("SELECT value FROM Settings WHERE key = 'hits'")
        assert (reads.fetchone(), counted.fetchone()) == ((0,), (0,))  # a hit wrote nothing


@pytest.mark.parametrize(
    ("name", "planted"),
    [
        ("cache.db-journal", "fifo"),
        ("cache.db-wal", "fifo"),
        ("cache.db-shm", "fifo"),
        ("cache.db", "fifo"),
        ("cache.db", "link"),
        ("cache.db-journal", "directory"),
    ],
)
def test_database_file_that_is_not_a_regular_file_is_refused(
    name: str, planted: str, disk: Any, tmp_path: Path
) -> None:
    """A FIFO, link or directory in place of a database file is refused, never waited on."""
    directory, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    _create(disk, elsewhere)
    if name != "cache.db":
        _create(disk, directory)  # a working cache first; closing removes the -wal and -shm
    else:
        directory.mkdir()
    path = directory / name
    if planted == "fifo":
        os.mkfifo(path)
    elif planted == "link":
        path.symlink_to(elsewhere / "cache.db")  # reads and writes would go elsewhere
    else:
        path.mkdir()

    report = _run_planted(directory, "sync", "A is 1", "explicit", "A is 1")
    assert report["results"] == ["A IS 1", "A IS 1"]
    assert max(report["seconds"]) < 3.0  # SQLite would block reading a FIFO journal
    assert f"refusing {path}: not a regular file" in report["refused"]
    assert report["errors"] >= 1
    assert report["paid"] == ["A is 1", "A is 1"]
    assert os.path.lexists(path)  # left as it was found
    with diskcache.Cache(str(elsewhere)) as other:
        assert list(other) == ["warm"]  # nothing went through the link


def test_hits_long_after_the_last_write_are_never_interrupted(disk: Any, tmp_path: Path) -> None:
    """Each lookup gets a deadline of its own: SQLite counts VM steps across repeated lookups."""
    backend = disk(tmp_path / "cache")
    backend.set("k", "v")
    time.sleep(1.5)  # past the write's deadline (0.25 s timeout + 1 s)
    assert [backend.get("k") for _ in range(500)] == ["v"] * 500


def test_journal_planted_while_open_is_refused_outside_wal_mode(tmp_path: Path) -> None:
    """Outside WAL mode SQLite opens the journal at every transaction: a FIFO there is refused."""
    directory = tmp_path / "cache"
    report = _run_planted(
        directory,
        "sync",
        "A is 1",
        "fifo:cache.db-journal",
        "A is 1",
        "explicit",
        "B is 2",
        settings={"sqlite_journal_mode": "delete"},
    )
    assert report["results"] == ["A IS 1", "A IS 1", "B IS 2"]
    assert max(report["seconds"]) < 3.0  # SQLite would block opening the FIFO
    assert "cache.db-journal: not a regular file" in report["refused"]
    assert report["errors"] >= 1
    assert report["paid"] == ["A is 1", "A is 1", "B is 2"]


@contextlib.contextmanager
def _call_in_progress(
    backend: DiskCache, database: Path, call: Callable[[DiskCache], object]
) -> Iterator[list[object]]:
    """``call(backend)`` on another thread, held mid-call (waiting for a lock) inside the block.

    That thread has used ``backend`` before, so it has a connection of its
    own. The list yielded gets the call's outcome: what it returned, or raised.
    """
    outcome: list[object] = []
    ready, go = threading.Event(), threading.Event()

    def run() -> None:
        backend.get("warm")
        ready.set()
        go.wait(timeout=30)
        try:
            outcome.append(call(backend))
        except BackendError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    locker = sqlite3.connect(database, timeout=5, isolation_level=None)
    try:
        assert ready.wait(timeout=30)
        locker.execute("BEGIN EXCLUSIVE")
        go.set()
        deadline = time.monotonic() + 30
        while backend.cache.calls_in_progress == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert backend.cache.calls_in_progress == 1
        yield outcome
    finally:
        go.set()
        locker.execute("ROLLBACK")
        locker.close()
        thread.join(timeout=30)


def test_close_during_another_threads_write_lets_it_finish(disk: Any, tmp_path: Path) -> None:
    """close() closes no connection under a call in progress: the call closes them as it ends."""
    backend = disk(tmp_path / "cache", timeout=10.0)
    backend.set("k", "v")  # this thread's connection
    cache = backend.cache
    with _call_in_progress(
        backend, tmp_path / "cache" / "cache.db", lambda backend: backend.set("late", "written")
    ) as outcome:
        backend.close()
        assert not cache.all_closed
    assert outcome == [None]
    assert cache.all_closed
    assert backend.get("late") == "written"  # the next call reopens
    assert backend.get("k") == "v"


def test_database_removed_under_a_call_is_reopened_only_after_it(disk: Any, tmp_path: Path) -> None:
    """No new database opens at the path of a deleted one while a call still uses the old one."""
    directory = tmp_path / "cache"
    # Outside WAL mode, so that a lock holds up a read too.
    backend = disk(directory, timeout=10.0, sqlite_journal_mode="delete")
    backend.set("k", "v")
    old = backend.cache
    with _call_in_progress(
        backend, directory / "cache.db", lambda backend: backend.get("k")
    ) as outcome:
        (directory / "cache.db").unlink()
        with pytest.raises(BackendError, match="FileNotFoundError"):
            backend.set("k", "new")  # finds it deleted: retired
        with pytest.raises(BackendError, match="still uses the deleted database"):
            backend.get("k")
        assert not old.all_closed
    assert outcome == ["v"]  # read from the deleted database, where the read began
    assert old.all_closed
    assert backend.get("k") is None  # a fresh database
    backend.set("k", "new")
    assert backend.get("k") == "new"
    assert backend.cache is not old
