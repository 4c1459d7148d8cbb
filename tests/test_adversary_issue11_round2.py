"""Adversarial reproducers for issue 11, second round: each fails on the code it was written for."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from instructor_cache import CircuitBreaker, DiskCache, TieredCache, instructor_cache
from instructor_cache.errors import BackendError
from tests._disk_race import A_READ_PAUSED_INSIDE_ITS_SELECT
from tests._stores import DictStore
from tests._subprocess import waiting_for_the_child
from tests.conftest import Clock, FakeLLM, UserDetail

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (a crash there must not take pytest with it)."""
    path = os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code, *args],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# A writer waits inside SQLite for a lock another connection holds, so its
# call is in progress. close() retires the cache; between retire's read of
# the "entered" counter and its read of the "left" counter, a caller that
# had read ``backend._cache`` just before close() counts itself in, finds
# the cache retiring and backs out. The trace function below makes that
# interleaving (one the GIL allows between any two bytecodes) happen every
# run instead of once in a long while.
CLOSE_AS_A_LATE_CALLER_BACKS_OUT = """
import os, sqlite3, sys, threading, time
from instructor_cache import DiskCache
from instructor_cache.errors import BackendError

directory = os.path.join(sys.argv[1], "cache")
backend = DiskCache(directory, timeout=10.0)
backend.set("k", "v")
cache = backend.cache
locker = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
locker.execute("BEGIN IMMEDIATE")
outcome = []

def write():
    try:
        backend.set("late", "written")
        outcome.append("written")
    except BackendError as exc:
        outcome.append(repr(exc))

writer = threading.Thread(target=write)
writer.start()
while cache.calls_in_progress == 0:
    time.sleep(0.001)
time.sleep(0.3)  # the writer is now waiting in SQLite's busy handler

reads = []

def late_caller_backs_out(frame, event, arg):
    caller = frame.f_back.f_code.co_name if frame.f_back else None
    if event == "call" and frame.f_code.co_name == "_count" and caller == "retire":
        reads.append(frame)
        if len(reads) == 2:  # after retire read "entered", before it reads "left"
            assert cache.enter() is False

sys.settrace(late_caller_backs_out)
backend.close()
sys.settrace(None)
print("all closed under the writer:", cache.all_closed, flush=True)
locker.execute("ROLLBACK")
locker.close()
writer.join(30)
print("writer:", outcome, flush=True)
print("read back:", backend.get("late"), flush=True)
"""


def test_close_never_closes_connections_under_a_call_in_progress_when_a_late_caller_backs_out(
    tmp_path: Path,
) -> None:
    """``retire`` reads the call counters apart: a caller backing out between makes them equal.

    ``retire`` (and ``leave``) read ``_entered`` and then ``_left``; a call
    that had found the cache just before ``close()`` counts itself in and
    out in between, adding one to ``_left`` only. With one call in progress,
    entered-then (1) equals left-now (1): ``_close_all`` closes every
    connection, the in-progress writer's too, while it is inside SQLite.
    Here the write is lost; a reader mid-statement crashes the process (the
    first round's segfault). Fix: read ``_left`` before ``_entered`` in
    ``retire`` and ``leave`` (a later "entered" can only be larger, so equal
    counts then do mean no call was in progress).
    """
    run = _run(CLOSE_AS_A_LATE_CALLER_BACKS_OUT, str(tmp_path))
    assert run.returncode == 0, run.stderr[-1500:]
    assert run.stdout.splitlines() == [
        "all closed under the writer: False",
        "writer: ['written']",
        "read back: written",
    ]


class TTLDictStore(DictStore):
    """A lower tier that tells the remaining TTL with its read, so tiers backfill from it."""

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        text = self.get(key)
        return None if text is None else (text, None)


class SlowWritingStore(DictStore):
    """A faster tier whose write, once armed, takes a while (I/O) between starting and storing."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.writing = threading.Event()
        self.release = threading.Event()

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if self.armed:
            self.writing.set()
            self.release.wait(10)
        super().set(key, value, ttl)


def test_invalidate_during_a_backfill_write_is_not_undone_by_it(llm: FakeLLM) -> None:
    """An entry invalidated while its backfill copy is being written comes back from that copy.

    ``TieredCache.get`` compares the write counter once, before it copies
    the lower tier's hit up; ``invalidate`` that lands while the copy is
    being written (any store with I/O takes that long) deletes every tier,
    then the copy lands in the faster tier, which serves the invalidated
    result and the function is never called again. Fix: check the counter
    again after each copy, and delete the copy if a write or invalidation
    came in meanwhile (or hold a per-key generation the copy must match).
    """
    upper, lower = SlowWritingStore(), TTLDictStore()

    @instructor_cache(TieredCache(upper, lower), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("A is 1")
    upper.data.clear()  # only the lower tier has it: the next read backfills
    upper.armed = True
    reader = threading.Thread(target=extract, args=("A is 1",))
    reader.start()
    assert upper.writing.wait(10)
    assert extract.invalidate("A is 1") is True
    upper.armed = False
    upper.release.set()
    reader.join(10)
    assert extract("A is 1") == UserDetail(name="A", age=1)
    assert len(llm.calls) == 2  # the call after invalidate() reaches the function


def test_database_deleted_after_close_is_not_reopened_while_a_call_still_uses_it(
    tmp_path: Path,
) -> None:
    """After ``close()``, a deleted database is reopened at once, though a call still uses the old.

    ``DiskCache._open`` waits for the connections of a cache retired as
    *moved*, but ``close()`` retires without recording it: when the
    directory is then removed (an app shutting down and cleaning up while
    a worker still writes, or a test fixture), the next call opens a new
    database at the same path while the old cache's connections are open,
    the case ``TextCache._check_identity`` says shares ``-wal`` and ``-shm``
    files by name (the SIGBUS test below shows the crash). Fix: keep every
    retired, not yet closed cache in ``_moved`` (or refuse in ``_open``
    while a retired cache that ``moved()`` still has a connection open).
    """
    directory = tmp_path / "cache"
    backend = DiskCache(directory, timeout=10.0)
    backend.set("k", "v")  # this thread's connection to the database about to be deleted
    old = backend.cache
    locker = sqlite3.connect(directory / "cache.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    outcome: list[object] = []

    def write() -> None:
        try:
            backend.set("late", "written")
            outcome.append("written")
        except BackendError as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while old.calls_in_progress == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        backend.close()  # the call in progress keeps the old connections open
        assert not old.all_closed
        (directory / "cache.db").unlink()
        with pytest.raises(BackendError, match="still uses the deleted database"):
            backend.set("new", "value")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        writer.join(30)
    assert old.all_closed
    backend.set("new", "value")
    assert backend.get("new") == "value"


class FlakySyncStore(DictStore):
    """A user's blocking store (sync methods only) that fails while ``down``, as a dead server."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def get(self, key: str) -> str | None:
        if self.down:
            raise ConnectionError("store is down")
        return super().get(key)


async def test_async_calls_close_the_breaker_of_a_blocking_store_that_recovered(
    llm: FakeLLM, clock: Clock
) -> None:
    """Once a blocking store's breaker opens, async calls never close it again: every call pays.

    After the cooldown, ``allow()`` makes the caller the probe and moves
    ``open_until`` a cooldown ahead; the probe then queues on the store's
    worker thread, where ``runnable`` (``breaker.closed``) finds the breaker
    not closed and turns the probe away as ``Turned``, which counts neither
    as a failure nor as a success. So the breaker stays half-open forever:
    each cooldown's probe is turned away, every other call skips the store,
    and an async app pays for every call although the store is back (the
    same for ``DiskCache`` after one locked spell). Fix: let the operation
    that claimed the probe run (pass ``runnable`` only to operations queued
    while the breaker was closed, or check ``is_open`` against the moment
    the operation was queued).
    """
    store = FlakySyncStore()
    breaker = CircuitBreaker(failures=1, cooldown=5.0, timer=clock)

    @instructor_cache(store, ignore=("llm",), circuit_breaker=breaker)
    async def extract(text: str) -> UserDetail:
        return llm(text)

    await extract("A is 1")
    store.down = True
    await extract("B is 2")  # the failed read opens the breaker
    store.down = False
    clock.advance(60)  # long past the cooldown: the store is back
    for _ in range(3):
        assert await extract("A is 1") == UserDetail(name="A", age=1)
        clock.advance(60)
    assert [text for text, *_ in llm.calls] == ["A is 1", "B is 2"]


async def test_async_calls_on_a_disk_store_hit_again_after_a_locked_spell(
    llm: FakeLLM, clock: Clock, tmp_path: Path
) -> None:
    """A database locked for a moment opens the breaker, and async hits never come back after it.

    The same as above on a real ``DiskCache``: another process (here a
    connection) holds the database locked once, the async read fails and
    opens the breaker, and from then on every async call pays, the
    unlocked database untouched.
    """
    directory = tmp_path / "cache"
    # Outside WAL mode, so that the lock holds up a read too.
    backend = DiskCache(directory, sqlite_journal_mode="delete")
    breaker = CircuitBreaker(failures=1, cooldown=5.0, timer=clock)

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=breaker)
    async def extract(text: str) -> UserDetail:
        return llm(text)

    await extract("A is 1")
    locker = sqlite3.connect(directory / "cache.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        await extract("B is 2")  # the read waits out the timeout, fails, opens the breaker
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    clock.advance(60)
    for _ in range(3):
        assert await extract("A is 1") == UserDetail(name="A", age=1)
        clock.advance(60)
    assert [text for text, *_ in llm.calls] == ["A is 1", "B is 2"]


@pytest.mark.parametrize("operation", ["invalidate", "acache_clear", "refresh"])
async def test_explicit_async_operations_reach_a_blocking_store_while_its_breaker_is_open(
    operation: str, llm: FakeLLM, clock: Clock
) -> None:
    """An async invalidate, clear or refresh is turned away unasked while the breaker is open.

    Explicit operations go to the store "whatever the breaker says" (the
    sync ones do), but on a blocking store the async ones run on its worker
    thread through ``runnable``, which turns them away as ``Turned``: the
    store is never asked, ``invalidate``/``acache_clear`` raise
    ``BackendError`` (and count a failure that keeps the breaker open), and
    ``refresh`` stores nothing. Fix: no ``runnable`` check for explicit
    operations (an ``Adapted`` twin without it).
    """
    store = FlakySyncStore()
    breaker = CircuitBreaker(failures=1, cooldown=5.0, timer=clock)

    @instructor_cache(store, ignore=("llm",), circuit_breaker=breaker)
    async def extract(text: str) -> UserDetail:
        return llm(text)

    await extract("A is 1")
    store.down = True
    await extract("B is 2")  # the failed read opens the breaker
    store.down = False  # back, but the breaker is still open
    if operation == "invalidate":
        assert await extract.invalidate("A is 1") is True
        assert extract.cache_key("A is 1") not in store.data
    elif operation == "acache_clear":
        await extract.acache_clear()
        assert store.data == {}
    else:
        assert await extract.refresh("C is 3") == UserDetail(name="C", age=3)
        assert extract.cache_key("C is 3") in store.data


def test_threads_that_connect_after_the_directory_was_removed_resume_caching(
    llm: FakeLLM, clock: Clock, tmp_path: Path
) -> None:
    """After the cache directory is removed, calls on threads new to the store never cache again.

    A thread's first connection checks the database's identity and fails
    with ``FileNotFoundError`` ("deleted or replaced while open"), but only
    a *write* retires the cache (``DiskCache._call``). Each new thread's
    read fails and counts towards the breaker; once the breaker opens the
    writes are skipped, and every probe is another read that fails the
    same way (the failed thread reconnects each time): the store is dead
    for good and a thread-per-request server pays for every call. Here the
    breaker opens at one failure; at the default three it takes three new
    threads reading at once. Fix: retire the cache as moved when
    ``_reconnect``'s identity check fails, so the next call opens afresh.
    """
    directory = tmp_path / "cache"
    backend = DiskCache(directory)
    breaker = CircuitBreaker(failures=1, cooldown=5.0, timer=clock)

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=breaker)
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("A is 1")
    shutil.rmtree(directory)
    for _ in range(4):  # requests, each on a thread of its own, cooldowns apart
        request = threading.Thread(target=extract, args=("A is 1",))
        request.start()
        request.join(10)
        clock.advance(60)
    assert extract.cache_info().hits >= 1  # caching resumed in a fresh database


# A thread opens the store (its first call) while another process holds the
# database locked, so it waits inside DiskCache._open, under _open_lock; the
# main thread forks a worker meanwhile, as multiprocessing does on Linux.
FORK_WHILE_ANOTHER_THREAD_OPENS = """
import contextlib, os, signal, sqlite3, sys, threading, time
from pydantic import BaseModel
from instructor_cache import DiskCache, instructor_cache

class Doc(BaseModel):
    text: str

directory = sys.argv[1]
first = DiskCache(directory)
first.set("warm", "up")  # the database exists
first.close()
backend = DiskCache(directory, timeout=3.0)

@instructor_cache(backend)
def extract(text: str) -> Doc:
    return Doc(text=text)

locker = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
locker.execute("BEGIN EXCLUSIVE")
opener = threading.Thread(target=extract, args=("in the parent",))
opener.start()
time.sleep(0.5)  # the opener now waits for the lock inside DiskCache._open
pid = os.fork()
if pid == 0:
    extract("in the child")
    os._exit(0)
locker.execute("ROLLBACK")
locker.close()
opener.join()
""" + waiting_for_the_child(20, "the child's call never returned")


def test_call_in_a_child_forked_while_another_thread_opens_the_store_returns(
    tmp_path: Path,
) -> None:
    """A child forked while another thread holds ``DiskCache._open_lock`` hangs on its first call.

    The fork hook gives each ``TextCache`` a fresh ``_calls_lock``, but
    ``DiskCache._open_lock`` is inherited as it was: held by a thread that
    does not exist in the child. A thread holds it while it opens the
    database, which waits up to ``timeout`` when another process has it
    locked; a worker forked in that window blocks on its first decorated
    call forever (``cache`` waits for the lock; ``_retire`` would too).
    Fix: replace every ``DiskCache``'s ``_open_lock`` after a fork (a
    WeakSet of DiskCaches and the existing ``register_at_fork`` hook).
    """
    run = _run(FORK_WHILE_ANOTHER_THREAD_OPENS, str(tmp_path / "cache"))
    assert run.returncode == 0, run.stderr[-1500:]


# One get_many (a single SELECT over 998 keys) on a database whose WAL index
# spans two 32 KiB regions of the -shm file; the trace function holds it at
# its first progress-handler tick, inside the statement, while the database
# file is removed, the store closed, and the next call made.
REOPEN_UNDER_A_RUNNING_SELECT = (
    A_READ_PAUSED_INSIDE_ITS_SELECT
    + """
backend.close()  # the app closes the store; the next call reopens
try:
    backend.set("new", "value")
except BackendError:
    pass
resume.set()
reader.join(30)
print("reader:", outcome)
"""
)


def test_reopening_after_close_and_a_removed_database_does_not_crash_a_running_read(
    tmp_path: Path,
) -> None:
    """A read in progress on a removed database dies of SIGBUS when close() lets a new one open.

    The same hole as the test above, shown as the crash it causes: the new
    database at the path opens the old one's ``-shm`` by name, takes it for
    its own (the old connections' locks are this process's, so they do not
    conflict) and truncates it to one region; the read still running on the
    old database then touches the second region of its mapping, past the
    end of the file: the process dies (SIGBUS, exit 135). A thread pool
    under load with close() and a cleanup removing ``*.db`` hits it within
    seconds without any pausing.
    """
    run = _run(REOPEN_UNDER_A_RUNNING_SELECT, str(tmp_path))
    assert run.returncode == 0, run.stderr[-1500:]
    assert run.stdout.splitlines() == ["reader: [6000]"]
