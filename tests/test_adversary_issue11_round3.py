"""Adversarial reproducers for issue 11, third round: each fails on the code it was written for."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from instructor_cache import CircuitBreaker, instructor_cache
from tests._stores import DictStore
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
SECOND_STORE_REOPENS_UNDER_A_RUNNING_SELECT = """
import os, sys, threading
from instructor_cache import DiskCache
from instructor_cache.errors import BackendError

directory = os.path.join(sys.argv[1], "cache")
database = os.path.join(directory, "cache.db")
backend = DiskCache(directory, sqlite_wal_autocheckpoint=0)  # a WAL that keeps its frames
keys = [f"k{i}" for i in range(6000)]
backend.set_many({key: "x" * 3000 for key in keys})
paused, resume = threading.Event(), threading.Event()

def pause_once(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "__call__" and not paused.is_set():
        if frame.f_code.co_filename.endswith("_planted.py"):  # the Watchdog's tick
            paused.set()
            resume.wait(30)

outcome = []

def read():
    sys.settrace(pause_once)
    try:
        outcome.append(sum(text is not None for text in backend.get_many(keys)))
    except BackendError as exc:
        outcome.append(repr(exc))

reader = threading.Thread(target=read)
reader.start()
assert paused.wait(30)
os.remove(database)  # the database file goes; its -wal and -shm stay
other = DiskCache(directory)  # another function's store, same directory
try:
    other.set("new", "value")
except BackendError:
    pass
resume.set()
reader.join(30)
print("reader:", outcome)
"""


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
