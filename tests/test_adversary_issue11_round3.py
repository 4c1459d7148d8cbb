"""Adversarial reproducers for issue 11, third round: each fails on the code it was written for."""

from __future__ import annotations

import asyncio
import dis
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from instructor_cache import CircuitBreaker, DiskCache, TieredCache, instructor_cache
from tests._disk_race import A_READ_PAUSED_INSIDE_ITS_SELECT
from tests._stores import DictStore, PausingTTLStore
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


# The round-2 SIGBUS script, except that the new database is opened by a
# second DiskCache at the same directory (two decorated functions, each
# given ``DiskCache("./cache")``), not by the first one after close().
SECOND_STORE_REOPENS_UNDER_A_RUNNING_SELECT = (
    A_READ_PAUSED_INSIDE_ITS_SELECT
    + """
other = DiskCache(directory)  # another function's store, same directory
try:
    other.set("new", "value")
except BackendError:
    pass
resume.set()
reader.join(30)
print("reader:", outcome)
"""
)


def test_a_second_store_at_the_same_directory_does_not_crash_a_read_on_a_removed_database(
    tmp_path: Path,
) -> None:
    """Two ``DiskCache`` objects at one directory: the second opens a new database under the first.

    The guard against opening a new database while connections to a
    deleted one are open (``DiskCache._retired`` and ``_check_identity``)
    is per ``DiskCache`` object, but SQLite shares ``-wal`` and ``-shm``
    by path, per process. So another ``DiskCache`` at the same directory
    (two decorated functions each given ``DiskCache("./cache")``, or one
    made per request) opens the new database, takes the old ``-shm`` for
    its own (same process: the old connections' locks do not conflict)
    and truncates it; the read still running on the deleted database
    touches its mapping past the end of the file: SIGBUS, exit 135. Fix:
    keep the retired caches (or the open identities) per process, keyed by
    the resolved directory, shared by every ``DiskCache`` at that path.
    """
    run = _run(SECOND_STORE_REOPENS_UNDER_A_RUNNING_SELECT, str(tmp_path))
    assert run.returncode == 0, run.stderr[-1500:]
    assert run.stdout.splitlines() == ["reader: [6000]"]


class SlowFailingReadStore(DictStore):
    """A user's blocking store whose reads, once ``armed``, fail (the first one after a hang)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.reading = threading.Event()
        self.release = threading.Event()

    def get(self, key: str) -> str | None:
        if self.armed:
            if not self.reading.is_set():
                self.reading.set()
                self.release.wait(10)
            raise ConnectionError("read timed out")
        return super().get(key)


async def test_an_explicit_async_invalidate_queued_while_a_read_hangs_reaches_the_store(
    llm: FakeLLM, clock: Clock
) -> None:
    """An async invalidate queued while the breaker is closed is turned away if it opens meanwhile.

    ``watch()`` records ``open_until`` when the operation is queued on the
    store's worker thread (0.0, closed); a read on another thread (a sync
    call on the same store) fails meanwhile and opens the breaker, so the
    invalidate finds ``open_until`` changed and the breaker open, and is
    turned away as ``Turned`` without the store being asked (its delete
    works: only reads fail). ``_unreachable`` then raises ``BackendError``
    to the caller of ``invalidate`` and counts the ``Turned`` as one more
    breaker failure. Explicit operations are meant to go to the store
    whatever the breaker says. Fix: adapt explicit operations without the
    ``watch`` check, and never count ``Turned`` as a failure.
    """
    store = SlowFailingReadStore()
    breaker = CircuitBreaker(failures=1, cooldown=5.0, timer=clock)

    @instructor_cache(store, ignore=("llm",), circuit_breaker=breaker)
    async def extract(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(store, ignore=("llm",), circuit_breaker=breaker)
    def extract_sync(text: str) -> UserDetail:
        return llm(text)

    await extract("A is 1")
    store.armed = True
    read = asyncio.ensure_future(extract("B is 2"))  # its read hangs on the worker thread
    assert await asyncio.to_thread(store.reading.wait, 10)
    invalidate = asyncio.ensure_future(extract.invalidate("A is 1"))  # queued behind the read
    await asyncio.sleep(0)
    await asyncio.to_thread(extract_sync, "C is 3")  # its read fails: the breaker opens
    store.release.set()
    await read
    assert await invalidate is True
    assert extract.cache_key("A is 1") not in store.data


# A writer thread waits inside SQLite for a lock another connection holds:
# sqlite3_step holds its connection's mutex while it waits. The main thread
# forks; the child reports what a read gives it. The parent gives the child
# a few seconds, then kills it and says so.
FORK_WHILE_A_CALL_WAITS_IN_SQLITE = """
import os, signal, sqlite3, sys, threading, time
from instructor_cache import DiskCache
from instructor_cache.errors import BackendError

directory = os.path.join(sys.argv[1], "cache")
backend = DiskCache(directory, timeout=3.0)
backend.set("k", "v")
cache = backend.cache
locker = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
locker.execute("BEGIN IMMEDIATE")

def write():
    try:
        backend.set("late", "x")
    except BackendError:
        pass

writer = threading.Thread(target=write)
writer.start()
while cache.calls_in_progress == 0:
    time.sleep(0.001)
time.sleep(0.3)  # inside SQLite's busy wait, holding its connection's mutex
if sys.argv[2] == "close":
    backend.close()  # retiring: the last call out would close every connection
pid = os.fork()
if pid == 0:
    try:
        answer = repr(backend.get("k"))
    except BackendError:  # a new database cannot be opened while the lock is held: fail open
        answer = "BackendError"
    os.write(1, f"child: {answer}\\n".encode())
    os._exit(0)
deadline = time.monotonic() + 6
while time.monotonic() < deadline:
    if os.waitpid(pid, os.WNOHANG)[0]:
        break
    time.sleep(0.02)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("child hung")
locker.execute("ROLLBACK")
writer.join(10)
"""


@pytest.mark.parametrize("closing", ["open", "close"])
def test_a_child_forked_while_another_thread_waits_in_sqlite_does_not_hang(
    closing: str, tmp_path: Path
) -> None:
    """A child forked while another thread is inside a DiskCache statement hangs before it runs.

    ``sqlite3_step`` holds its connection's mutex (serialized mode) for
    the whole statement, a busy wait on another process's lock included.
    In the child that mutex stays locked forever, held by a thread that is
    not there; yet the child closes that connection: the thread's slot of
    ``TextCache._local`` goes with the thread state at the fork, so
    ``_Held.__del__`` calls ``con.close()``, which finalizes its statements
    and waits on the mutex (and the fork hook's ``_close_all`` does the
    same for a cache ``close()`` was retiring). The child never gets to
    its first line: a ``multiprocessing`` worker (fork start method) or a
    pre-forking server started while a request thread reads the cache is
    stuck for good. Fix: never close a connection in another process than
    the one that opened it (``_Held.close`` checks ``pid`` and leaks the
    parent's connection, as SQLite asks: no use of it across a fork, close
    included), and let the fork hook mark a retiring cache closed without
    closing anything.
    """
    run = _run(FORK_WHILE_A_CALL_WAITS_IN_SQLITE, str(tmp_path), closing)
    assert run.returncode == 0, run.stderr[-1500:]
    # After close() the child opens the database anew, which the lock holds
    # up until the timeout: failing open is right there; hanging never is.
    answers = ["child: 'v'"] if closing == "open" else ["child: 'v'", "child: BackendError"]
    assert run.stdout.splitlines() in [[answer] for answer in answers]


def test_an_invalidate_whose_count_races_another_write_still_stops_a_backfill(
    llm: FakeLLM,
) -> None:
    """``_writes += 1`` is a read, an add and a store: two writers at once count as one.

    An ``invalidate`` reads ``Tiers._writes`` (n), the GIL passes to
    another thread whose write moves it to n + 1, a read then takes n + 1
    as its starting count and reads the lower tier's entry; the
    invalidate stores n + 1 (the other write's count is lost) and deletes
    every tier. The read finds the count unchanged, copies the entry it
    read up and does not undo it: the invalidated result is served from
    the faster tier from then on and the function is never called again.
    The pause below (in the invalidate, right after it reads the counter)
    is one the GIL allows between any two bytecodes. Fix: count with
    ``itertools.count`` (``next()`` is one atomic step) or under a lock.
    """
    upper, lower = DictStore(), PausingTTLStore(on_misses=True)

    @instructor_cache(TieredCache(upper, lower), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("A is 1")
    upper.data.clear()  # only the lower tier has it: the next read backfills
    counted, resume = threading.Event(), threading.Event()

    def pause_between_read_and_store(frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code.co_name != "invalidate" or not code.co_filename.endswith("_tiers.py"):
            return None
        # The instruction right after the first read of ``self._writes``.
        instructions = list(dis.get_instructions(code))
        read = next(i for i, ins in enumerate(instructions) if ins.argval == "_writes")
        after_read = instructions[read + 1].offset
        frame.f_trace_opcodes = True

        def opcodes(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode" and frame.f_lasti == after_read and not counted.is_set():
                counted.set()
                resume.wait(10)
            return opcodes

        return opcodes

    def invalidate() -> None:
        sys.settrace(pause_between_read_and_store)
        extract.invalidate("A is 1")

    invalidator = threading.Thread(target=invalidate)
    invalidator.start()
    assert counted.wait(10)
    extract.invalidate("B is 2")  # another write, counted meanwhile
    lower.armed = True
    reader = threading.Thread(target=extract, args=("A is 1",))
    reader.start()
    assert lower.reading.wait(10)
    lower.armed = False
    resume.set()
    invalidator.join(10)
    lower.release.set()
    reader.join(10)
    assert extract("A is 1") == UserDetail(name="A", age=1)
    assert [text for text, *_ in llm.calls] == ["A is 1", "A is 1"]


@pytest.mark.xfail(
    strict=True,
    reason="known, left open: removing -wal and -shm under a live database (see the closing "
    "note of issue 11); a fix must tell a removed -wal from one SQLite itself deleted",
)
def test_threads_that_connect_after_the_wal_and_shm_were_removed_resume_caching(
    llm: FakeLLM, clock: Clock, tmp_path: Path
) -> None:
    """After the database's ``-wal`` and ``-shm`` are removed, threads new to the store never cache.

    The database file itself stays, so ``moved()`` is false and nothing
    retires the cache; the connection opened before keeps the deleted
    ``-shm`` mapped, and SQLite gives every later thread's connection
    "disk I/O error" for as long as that one is open (until ``close()``).
    Each new thread's read and write fail, the breaker opens, each probe
    fails the same way: a thread-per-request server pays for every call
    from then on (a cleanup removing ``*-wal`` files, a backup tool moving
    them). Fix: when a new thread's connection fails with an I/O error
    while ``-wal`` or ``-shm`` is missing (or their identity changed since
    the cache opened), retire the cache so that the next call reopens.
    """
    directory = tmp_path / "cache"
    backend = DiskCache(directory)
    breaker = CircuitBreaker(failures=1, cooldown=5.0, timer=clock)

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=breaker)
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("A is 1")  # this thread's connection stays open
    for suffix in ("-wal", "-shm"):
        (directory / f"cache.db{suffix}").unlink()
    for _ in range(4):  # requests, each on a thread of its own, cooldowns apart
        request = threading.Thread(target=extract, args=("B is 2",))
        request.start()
        request.join(10)
        clock.advance(60)
    assert extract.cache_info().hits >= 1  # caching resumed


# One process of the app: reads commands ("set k v", "get k") from stdin and
# answers each on a line: "ok", the value read, or "error" (BackendError).
WORKER = """
import os, sys
from instructor_cache import DiskCache
from instructor_cache.errors import BackendError

backend = DiskCache(os.path.join(sys.argv[1], "cache"))
for line in sys.stdin:
    operation, *args = line.split()
    try:
        answer = "ok" if operation == "set" else repr(backend.get(*args))
        if operation == "set":
            backend.set(*args)
    except BackendError:
        answer = "error"
    print(answer, flush=True)
"""


class Worker:
    """A process of the app using the cache directory, driven one command at a time."""

    def __init__(self, root: Path) -> None:
        path = os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root)],
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def stop(self) -> None:
        self.process.communicate(timeout=10)  # closes stdin, reads to the end, closes stdout


@pytest.mark.xfail(
    strict=True,
    reason="known, left open: removing -wal and -shm under a live database (see the closing "
    "note of issue 11); a fix must tell a removed -wal from one SQLite itself deleted",
)
def test_a_write_after_the_wal_and_shm_were_removed_is_not_lost_to_other_processes(
    tmp_path: Path,
) -> None:
    """A process whose connection outlived the removal of ``-wal`` and ``-shm`` writes to no one.

    Its connection keeps the deleted ``-wal`` open and the deleted
    ``-shm`` mapped; ``moved()`` looks at the database file only, which
    is still there, so each write is reported stored, and that process
    reads it back, while every other process (which opened a new
    ``-wal``) never sees it; once the writer exits, it cannot checkpoint
    (the other process holds the database) and the write is gone for
    good: each of those results is paid for again. Fix: let the write
    check (``moved()``) also notice that ``-wal`` is missing or another
    file than the one this cache's connections use, and fail the write
    and retire the cache, as for a removed database.
    """
    writer = Worker(tmp_path)
    other = Worker(tmp_path)
    try:
        assert writer.ask("set a 1") == "ok"  # the writer's connection is open
        for suffix in ("-wal", "-shm"):
            (tmp_path / "cache" / f"cache.db{suffix}").unlink()
        assert other.ask("get a") in ("None", "'1'")  # connects anew
        answers = [writer.ask("set x 1") for _ in range(3)]  # the first may fail, counted
        assert "ok" in answers
    finally:
        writer.stop()
    try:
        assert other.ask("get x") == "'1'"
    finally:
        other.stop()
