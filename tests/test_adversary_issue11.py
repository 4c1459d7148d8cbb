"""Adversarial reproducers for issue 11 (one small store contract): each fails today."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import diskcache
import pytest
import redis

from instructor_cache import (
    DiskCache,
    MemoryCache,
    RedisCache,
    TieredCache,
    instructor_cache,
    make_cache_key,
)
from tests._locks import locked
from tests._stores import DictStore, PausingTTLStore, SwitchableStore
from tests._subprocess import waiting_for_the_child
from tests.conftest import Clock, FakeLLM, UserDetail


async def test_concurrent_async_calls_on_a_locked_disk_do_not_queue_behind_each_timeout(
    tmp_path: Path, llm: FakeLLM
) -> None:
    """40 concurrent async calls on a locked database each pay a 0.25 s write in line, 10 s total.

    The breaker opens after three failures, but every write was let through
    before it was queued on the store's single worker thread, so the last
    caller waits for 40 timeouts: the wait grows with the load, unbounded.
    """
    backend = DiskCache(tmp_path / "cache")
    backend.set("warm", "up")

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    texts = [f"N{i} is {i}" for i in range(40)]
    with locked(tmp_path / "cache" / "cache.db", release_after=60.0):
        started = time.monotonic()
        results = await asyncio.gather(*(extract(text) for text in texts))
        elapsed = time.monotonic() - started
    assert results == [UserDetail(name=f"N{i}", age=i) for i in range(40)]
    assert elapsed < 3.0  # a few timeouts until the breaker opens, not one per caller


def test_redis_tier_that_may_not_run_scripts_still_serves_its_hits(
    redis_without_scripting: str, llm: FakeLLM
) -> None:
    """A Redis tier whose ACL denies EVAL (as managed Redis may) turns every hit into a paid call.

    The tier reads through ``get_with_ttl``, a Lua script; its NOPERM error
    is a failed read, so the entry that GET would have returned is never
    served, the function is paid again, and the breaker then skips Redis.
    """
    memory = MemoryCache()
    shared = RedisCache(redis_without_scripting, prefix=f"adv-{uuid.uuid4().hex[:8]}")
    shared.set("probe", "ok")
    assert shared.get("probe") == "ok"  # the user may read and write plain keys

    @instructor_cache(TieredCache(memory, shared), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    try:
        assert extract("A is 1") == UserDetail(name="A", age=1)
        memory.clear()  # a restarted process: its memory tier is empty, Redis still holds it
        assert extract("A is 1") == UserDetail(name="A", age=1)
        assert len(llm.calls) == 1
    finally:
        shared.clear()
        shared.close()


class TimedeltaTTLStore(DictStore):
    """A user's tier that tells the remaining TTL as a ``timedelta`` rather than float seconds."""

    def get_with_ttl(self, key: str) -> tuple[str, Any] | None:
        text = self.get(key)
        return None if text is None else (text, datetime.timedelta(seconds=60))


class BareTextTTLStore(DictStore):
    """A user's tier whose ``get_with_ttl`` returns the bare text (a user's mistake)."""

    def get_with_ttl(self, key: str) -> Any:
        return self.get(key)


@pytest.mark.parametrize(
    "lower", [TimedeltaTTLStore, BareTextTTLStore], ids=["timedelta-ttl", "bare-text"]
)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_malformed_get_with_ttl_of_a_user_tier_does_not_reach_the_caller(
    lower: type[DictStore], flavour: str, llm: FakeLLM
) -> None:
    """A lower tier's malformed ``get_with_ttl`` answer raises out of the decorated call.

    The guard returns the store's answer unchecked and ``Tiers.get`` unpacks
    it and compares ``ttl > 0`` outside any guard: a TypeError or ValueError
    from the cache layer reaches the caller instead of a fail-open miss.
    """
    store = lower()
    memory = MemoryCache()
    tiers = TieredCache(memory, store)
    if flavour == "sync":

        @instructor_cache(tiers, ignore=("llm",))
        def extract(text: str) -> UserDetail:
            return llm(text)

        call = extract
    else:

        @instructor_cache(tiers, ignore=("llm",))
        async def aextract(text: str) -> UserDetail:
            return llm(text)

        def call(text: str) -> UserDetail:
            return asyncio.run(aextract(text))

    assert call("A is 1") == UserDetail(name="A", age=1)
    memory.clear()
    assert call("A is 1") == UserDetail(name="A", age=1)


BROKEN_STORES = '''
import time

import diskcache
import pytest

from instructor_cache.testing import StoreContract


class TTLStore:
    """A dict store with expiry, right in everything the subclasses below do not break."""

    def __init__(self):
        self.data = {}

    def _live(self, key):
        entry = self.data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= time.monotonic():
            del self.data[key]
            return None
        return entry

    def get(self, key):
        entry = self._live(key)
        return None if entry is None else entry[0]

    def set(self, key, value, ttl=None):
        self.data[key] = (value, None if ttl is None else time.monotonic() + ttl, ttl)

    def delete(self, key):
        return self._live(key) is not None and self.data.pop(key) is not None

    def clear_prefix(self, prefix):
        doomed = [key for key in list(self.data) if key.startswith(prefix)]
        live = sum(self._live(key) is not None for key in doomed)
        for key in doomed:
            self.data.pop(key, None)
        return live


class OriginalTTLStore(TTLStore):
    """get_with_ttl tells the TTL the entry was set with, not the TTL it has left."""

    def get_with_ttl(self, key):
        entry = self._live(key)
        return None if entry is None else (entry[0], entry[2])


class AsyncSetIgnoresTTL(TTLStore):
    """Native async twins whose aset keeps every entry forever."""

    async def aget(self, key):
        return self.get(key)

    async def aset(self, key, value, ttl=None):
        self.set(key, value, None)

    async def adelete(self, key):
        return self.delete(key)

    async def aclear_prefix(self, prefix):
        return self.clear_prefix(prefix)


class TestBroken(StoreContract):
    @pytest.fixture
    def store(self):
        return {broken}()
'''


@pytest.mark.parametrize("broken", ["OriginalTTLStore", "AsyncSetIgnoresTTL"])
def test_conformance_suite_fails_a_store_that_breaks_its_ttls(broken: str, tmp_path: Path) -> None:
    """The exported suite passes a store whose TTLs are wrong, so its copies outlive the original.

    ``OriginalTTLStore.get_with_ttl`` reports the TTL an entry was written
    with, not what it has left (the suite reads it right after writing, when
    the two agree), so each backfill of a faster tier restarts the entry's
    life; ``AsyncSetIgnoresTTL.aset`` stores forever (the suite never lets an
    async write expire), so an async function's expired results are served.
    """
    (tmp_path / "test_broken_store.py").write_text(BROKEN_STORES.replace("{broken}", broken))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_broken_store.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "passed" in run.stdout  # the suite did run against the store
    assert run.returncode == 1, run.stdout[-2000:]  # some test of the suite caught the bug


class SameNameStore(SwitchableStore):
    """A user's store that compares (and hashes) by its configured name, as config objects do."""

    def __init__(self, name: str, *, down: bool = False) -> None:
        super().__init__(down=down)
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SameNameStore) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def test_failures_of_one_store_do_not_open_the_breaker_of_an_equal_other(llm: FakeLLM) -> None:
    """A dead store opens the breaker of a healthy one that merely compares equal to it.

    ``breaker_for`` (and the worker registry) key a WeakKeyDictionary by the
    store, that is by ``__eq__``/``__hash__``: two distinct stores that
    compare equal share one breaker, and the healthy one's hits are skipped.
    """
    healthy, dead = SameNameStore("cache"), SameNameStore("cache", down=True)

    @instructor_cache(healthy, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(dead, ignore=("llm",))
    def other(text: str) -> UserDetail:
        return llm(text)

    assert extract("A is 1") == UserDetail(name="A", age=1)
    for n in range(3):
        other(f"B is {n}")
    assert extract("A is 1") == UserDetail(name="A", age=1)
    assert extract.cache_info().hits == 1
    assert [text for text, *_ in llm.calls].count("A is 1") == 1


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_cache_clear_resets_the_statistics_of_every_tier(flavour: str, llm: FakeLLM) -> None:
    """After cache_clear() a tiered function's per-tier counts, and the errors they add, remain.

    ``cache_clear`` resets the function's own ``Stats`` but not the tiers'
    (``guarded_tiers`` made them), so ``cache_info().tiers`` and the
    ``errors`` total summed from them survive the reset.
    """
    memory, lower = MemoryCache(), SwitchableStore()
    if flavour == "sync":

        @instructor_cache(TieredCache(memory, lower), ignore=("llm",))
        def extract(text: str) -> UserDetail:
            return llm(text)

        call, clear = extract, extract.cache_clear
    else:

        @instructor_cache(TieredCache(memory, lower), ignore=("llm",))
        async def aextract(text: str) -> UserDetail:
            return llm(text)

        def call(text: str) -> UserDetail:
            return asyncio.run(aextract(text))

        extract, clear = aextract, aextract.cache_clear  # type: ignore[assignment]

    call("A is 1")
    call("A is 1")
    lower.down = True
    memory.clear()
    call("A is 1")  # the lower tier fails: an error
    lower.down = False
    assert extract.cache_info().errors >= 1
    clear()
    info = extract.cache_info()
    assert (info.hits, info.misses, info.errors) == (0, 0, 0)
    assert [(tier.hits, tier.misses, tier.errors) for tier in info.tiers] == [(0, 0, 0)] * 2


def test_invalidate_during_a_lower_tier_read_is_not_undone_by_the_backfill(llm: FakeLLM) -> None:
    """An entry invalidated while a lower-tier hit is in flight comes back through the backfill.

    The reader copies the text it read into the faster tier after
    ``invalidate`` has deleted it from every tier, so the invalidated result
    is served from memory for the rest of its life, and the function is not
    called again although ``invalidate`` returned True.
    """
    memory, lower = MemoryCache(), PausingTTLStore()

    @instructor_cache(TieredCache(memory, lower), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("A is 1")
    memory.clear()
    lower.armed = True
    reader = threading.Thread(target=extract, args=("A is 1",))
    reader.start()
    assert lower.reading.wait(10)
    assert extract.invalidate("A is 1") is True  # gone from every tier, as far as it knows
    lower.armed = False
    lower.release.set()
    reader.join(10)
    assert extract("A is 1") == UserDetail(name="A", age=1)
    assert len(llm.calls) == 2  # the call after invalidate() reaches the function


def test_backfill_keeps_the_faster_tiers_own_ttl_bound(llm: FakeLLM, clock: Clock) -> None:
    """A copy backfilled into ``MemoryCache(ttl=60)`` lives as long as Redis's day, not a minute.

    "Memory for a minute, the shared tier for a day": an entry this process
    wrote itself leaves memory after 60 s, but one copied up from the lower
    tier gets the lower tier's remaining TTL, which overrides the faster
    tier's own bound, so an invalidation made by another process through
    the shared tier is not seen here for a day.
    """
    shared = MemoryCache(ttl=86400, timer=clock)  # stands in for RedisCache(url, ttl=86400)

    def process() -> Any:
        @instructor_cache(TieredCache(MemoryCache(ttl=60, timer=clock), shared), ignore=("llm",))
        def extract(text: str) -> UserDetail:
            return llm(text)

        return extract

    here, elsewhere = process(), process()
    elsewhere("A is 1")
    here("A is 1")  # a hit in the shared tier, copied into this process's memory
    assert elsewhere.invalidate("A is 1") is True
    clock.advance(120)  # past memory's minute
    here("A is 1")
    assert len(llm.calls) == 2


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_tiered_clear_does_not_empty_a_redis_database_the_cache_shares(
    flavour: str, redis_url: str
) -> None:
    """``TieredCache.clear()`` over a prefix-less ``RedisCache`` deletes every key of the database.

    ``RedisCache.clear()`` refuses exactly this ("would delete every key in
    the database"), but ``TieredCache.clear()`` now calls each tier's
    ``clear_prefix("")``, which on Redis is SCAN MATCH * and UNLINK: the
    application's own keys (sessions, queues) in that database are gone.
    """
    url = redis_url.rsplit("/", 1)[0] + "/7"  # a database of this test's own
    app = redis.Redis.from_url(url)
    app.set("app:session:42", "the user's login")
    shared = RedisCache(url)
    tiered = TieredCache(MemoryCache(), shared)
    tiered.set("k", "v")
    try:
        with contextlib.suppress(Exception):  # refusing, as RedisCache.clear() does, is right
            if flavour == "sync":
                tiered.clear()
            else:
                asyncio.run(tiered.aclear())
        assert app.get("app:session:42") == b"the user's login"
    finally:
        app.flushdb()
        app.close()
        shared.close()


def test_one_corrupt_row_does_not_make_a_bulk_read_miss_every_key(tmp_path: Path) -> None:
    """One refused row among many turns the whole ``get_many`` into misses, every time.

    The disk store raises ``CorruptEntryError`` for the batch; the guard then
    answers ``None`` for every key, good ones included, and deletes nothing,
    so the next bulk read of those keys misses them all again.
    """
    directory = tmp_path / "cache"
    backend = DiskCache(directory)
    backend.set("good", "kept")
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con, con:
        con.execute(
            "INSERT OR REPLACE INTO Cache (key, raw, store_time, expire_time, access_time,"
            " access_count, tag, size, mode, filename, value)"
            " VALUES ('bad', 1, 0, NULL, 0, 0, NULL, 0, ?, 'ab/cd/planted.val', NULL)",
            (diskcache.core.MODE_TEXT,),
        )
    (directory / "ab" / "cd").mkdir(parents=True)
    (directory / "ab" / "cd" / "planted.val").write_bytes(b"\xff\xfe not text")
    tiered = TieredCache(backend)
    assert tiered.get_many(["good", "bad"]) == ["kept", None]
    assert tiered.get_many(["good", "bad"]) == ["kept", None]


CLOSE_UNDER_READERS = """
import contextlib, os, sys, threading, time
from pydantic import BaseModel
from instructor_cache import CircuitBreaker, DiskCache, instructor_cache

class Doc(BaseModel):
    text: str

root, how = sys.argv[1], sys.argv[2]
backend = DiskCache(os.path.join(root, "cache"))

@instructor_cache(backend, circuit_breaker=CircuitBreaker(failures=10**9))  # never skip it
def extract(text: str) -> Doc:
    return Doc(text=text)

extract("hit")
stop = threading.Event()

def serve_hits():
    while not stop.is_set():
        assert extract("hit") == Doc(text="hit")

threads = [threading.Thread(target=serve_hits) for _ in range(6)]
for thread in threads:
    thread.start()
deadline, n = time.monotonic() + (3 if how == "close" else 8), 0
while time.monotonic() < deadline:
    n += 1
    if how == "close":  # the app shuts the store down, or an async app closes it from its loop
        backend.close()
    else:  # the database is removed while the app runs: the next write retires it
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(root, "cache", "cache.db"))
        for _ in range(2):
            with contextlib.suppress(Exception):  # the first write fails, the next reopens
                backend.set(f"miss {n}", "text")
stop.set()
for thread in threads:
    thread.join()
print("survived", n)
"""


@pytest.mark.parametrize("how", ["close", "database-removed"])
def test_closing_a_disk_store_while_other_threads_read_does_not_crash_the_process(
    how: str, tmp_path: Path
) -> None:
    """``TextCache.close()`` closes other threads' SQLite connections mid-query: a segfault.

    ``close()`` (called by the app, from an event loop while the adapter's
    worker reads, or by ``DiskCache._writable`` when it finds the database
    removed) closes every thread's connection at once, including ones
    another thread is executing a statement on; CPython's sqlite3 then
    crashes the whole process (SIGSEGV) within a few hundred closes.
    """
    run = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", CLOSE_UNDER_READERS, str(tmp_path), how],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-1500:]
    assert run.stdout.startswith("survived")


ASYNC_CALL_IN_A_FORKED_CHILD = """
import asyncio, os, signal, sys, time
from pydantic import BaseModel
from instructor_cache import DiskCache, instructor_cache

class Doc(BaseModel):
    text: str

backend = DiskCache(sys.argv[1])

@instructor_cache(backend)
async def extract(text: str) -> Doc:
    return Doc(text=text)

asyncio.run(extract("warm"))  # the parent warms the cache, then forks workers
pid = os.fork()
if pid == 0:
    asyncio.run(extract("in the child"))
    os._exit(0)
""" + waiting_for_the_child(10, "the child's async call never finished")


def test_async_call_in_a_forked_child_does_not_hang(tmp_path: Path) -> None:
    """An async call on a blocking store in a child forked after the parent used it hangs forever.

    The store's worker is a ThreadPoolExecutor kept in a module dict: the
    child inherits it without its thread, and since that thread had gone
    idle in the parent, the executor starts no new one, so the child's work
    waits in a queue nobody reads (``multiprocessing``'s default on Linux).
    """
    run = subprocess.run(
        [sys.executable, "-c", ASYNC_CALL_IN_A_FORKED_CHILD, str(tmp_path / "cache")],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-1500:]


@dataclasses.dataclass
class ByParameter:
    """A key function written as a (mutable, so unhashable) dataclass: a common callable shape."""

    parameter: str

    def __call__(self, args: dict[str, Any]) -> Any:
        return args[self.parameter]


def test_make_cache_key_takes_the_key_function_the_decorator_takes() -> None:
    """``make_cache_key(..., key=<unhashable callable>)`` raises TypeError; the decorator takes it.

    ``_builder`` is an ``lru_cache`` over ``Options``, whose hash hashes the
    key function: a non-frozen dataclass callable is unhashable, so the
    explicit API crashes where the decorated function's ``cache_key`` works.
    (Present before this change too.)
    """

    def extract(text: str, trace: int = 0) -> UserDetail:
        return UserDetail(name=text, age=0)

    decorated = instructor_cache(extract, key=ByParameter("text"))
    assert make_cache_key(extract, ("A",), key=ByParameter("text")) == decorated.cache_key("A")
