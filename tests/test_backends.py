"""The exported store contract, run on each built-in store, and what memory and disk add."""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import random
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diskcache
import pytest

from instructor_cache import DiskCache, MemoryCache, RedisCache, TieredCache, instructor_cache
from instructor_cache.backends._contract import (
    AsyncBulkStore,
    AsyncReadsWithTTL,
    AsyncStore,
    BulkStore,
    ReadsWithTTL,
    SizedStore,
)
from instructor_cache.backends.disk import TextOnlyDisk
from instructor_cache.errors import BackendError, ConfigurationError, CorruptEntryError
from instructor_cache.testing import StoreContract
from tests.conftest import Clock, UserDetail, run_in_two_processes


class TestMemoryCache(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryCache:
        return MemoryCache(maxsize=1024)

    # Locks between processes are for a shared store: within one process the
    # decorator's own single-flight is enough.
    test_lock_is_exclusive_and_released_only_by_its_holder = None
    test_lock_frees_itself_after_its_ttl = None
    test_lock_is_never_read_as_an_entry = None
    test_clear_prefix_leaves_locking_working = None
    test_async_lock_twins_match_the_sync_ones = None
    test_async_callers_lock_through_the_adapter = None


class TestDiskCache(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[DiskCache]:
        cache = DiskCache(tmp_path / "cache")
        yield cache
        cache.close()

    # A blocking store has no async twins of its own: the async adapter runs
    # its sync methods on a worker thread, and is tested with it.
    test_async_twins_match_the_sync_methods = None
    test_async_get_with_ttl_matches_the_sync_one = None
    test_async_bulk_twins_match_the_sync_ones = None
    test_async_lock_twins_match_the_sync_ones = None


class TestRedisCache(StoreContract):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[RedisCache]:
        # The contract is behaviour, not latency (fault tests time the timeouts):
        # a loaded CI machine must not fail it with a 0.25 s command timeout.
        cache = RedisCache(redis_url, prefix=f"contract-{uuid.uuid4().hex}:", timeout=2.0)
        yield cache
        cache.clear()
        cache.close()

    # Counting keys under a prefix is a SCAN of the whole database: too dear to offer.
    test_len_counts_the_entries = None


class TestRedisCluster(TestRedisCache):
    @pytest.fixture
    def store(self, redis_cluster_url: str) -> Iterator[RedisCache]:
        cache = RedisCache(
            redis_cluster_url, cluster=True, prefix=f"contract-{uuid.uuid4().hex}:", timeout=2.0
        )
        yield cache
        cache.clear()
        cache.close()


class TestTieredCache(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[TieredCache]:
        cache = TieredCache(MemoryCache(), DiskCache(tmp_path / "cache"))
        yield cache
        cache.close()

    # A tiered store is read through its tiers: its own reads do not tell a TTL.
    test_get_with_ttl_tells_the_remaining_ttl = None
    test_get_with_ttl_counts_down_and_forgets_expired_entries = None
    test_async_get_with_ttl_matches_the_sync_one = None
    # Used directly, a tiered store has no lock of its own: a decorated function's
    # tiers lock in their shared tier (see _tiers).
    test_lock_is_exclusive_and_released_only_by_its_holder = None
    test_lock_frees_itself_after_its_ttl = None
    test_lock_is_never_read_as_an_entry = None
    test_clear_prefix_leaves_locking_working = None
    test_async_lock_twins_match_the_sync_ones = None
    test_async_callers_lock_through_the_adapter = None


def test_memory_cache_has_every_capability() -> None:
    """MemoryCache reads with TTL, in bulk, counts itself and has inline async twins."""
    capabilities = (
        ReadsWithTTL,
        BulkStore,
        SizedStore,
        AsyncStore,
        AsyncReadsWithTTL,
        AsyncBulkStore,
    )
    cache = MemoryCache()
    assert [c.__name__ for c in capabilities if not isinstance(cache, c)] == []


def test_disk_cache_is_a_sync_store_with_ttl_reads_bulk_and_size(tmp_path: Path) -> None:
    """DiskCache has every sync capability and no async methods, which would block a loop."""
    cache = DiskCache(tmp_path)
    assert all(isinstance(cache, c) for c in (ReadsWithTTL, BulkStore, SizedStore))
    assert not any(isinstance(cache, c) for c in (AsyncStore, AsyncReadsWithTTL, AsyncBulkStore))
    assert not hasattr(cache, "circuit_breaker")  # the guard around a store owns the breaker


@pytest.mark.parametrize("ttl", [60, 60.0, datetime.timedelta(seconds=60)], ids=repr)
def test_memory_default_ttl_accepts_seconds_and_timedelta(clock: Clock, ttl: object) -> None:
    """A default ttl in int or float seconds or a timedelta expires entries on time."""
    cache = MemoryCache(timer=clock, ttl=ttl)  # type: ignore[arg-type]
    cache.set("k", "v")
    clock.advance(59.9)
    assert cache.get("k") == "v"
    clock.advance(0.2)
    assert cache.get("k") is None


def test_memory_ttl_of_set_overrides_the_default(clock: Clock) -> None:
    """A ttl given to set (seconds) wins over the default; None keeps the default."""
    cache = MemoryCache(timer=clock, ttl=60)
    cache.set("short", "v", ttl=10.0)
    cache.set("default", "v")
    assert cache.get_with_ttl("short") == ("v", 10.0)
    assert cache.get_with_ttl("default") == ("v", 60.0)
    clock.advance(10.0)
    assert cache.get_many(["short", "default"]) == [None, "v"]
    assert cache.get_with_ttl("default") == ("v", 50.0)


def test_memory_expired_entries_are_dropped_by_every_read(clock: Clock) -> None:
    """get_with_ttl and get_many free the slot of an entry they find expired."""
    cache = MemoryCache(timer=clock)
    cache.set_many({"a": "1", "b": "2"}, ttl=5.0)
    cache.set("c", "3")
    clock.advance(5.0)
    assert cache.get_with_ttl("a") is None
    assert cache.get_many(["b", "c", "b"]) == [None, "3", None]
    assert len(cache) == 1


def test_memory_set_many_keeps_the_size_bound_and_recency() -> None:
    """set_many evicts the least recently used entries beyond maxsize, as many sets would."""
    cache = MemoryCache(maxsize=3)
    cache.set("old", "0")
    cache.set("kept", "1")
    cache.get("kept")
    cache.set_many({"a": "a", "b": "b"})
    assert cache.get_many(["old", "kept", "a", "b"]) == [None, "1", "a", "b"]
    cache.set_many({str(i): str(i) for i in range(5)})
    assert cache.get_many(["kept", "2", "3", "4"]) == [None, "2", "3", "4"]
    assert len(cache) == 3


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), "60", True], ids=repr)
def test_nonsense_ttl_is_rejected(ttl: object) -> None:
    """A ttl that cannot mean a duration is a ConfigurationError (a ValueError)."""
    with pytest.raises(ConfigurationError):
        MemoryCache(ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        instructor_cache(ttl=ttl)  # type: ignore[arg-type]


def test_memory_is_bounded_lru() -> None:
    """MemoryCache evicts the least recently used entry beyond maxsize."""
    cache = MemoryCache(maxsize=2)
    cache.set("a", "1")
    cache.set("b", "2")
    cache.get("a")
    cache.set("c", "3")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("1", None, "3")
    assert (cache.maxsize, len(cache)) == (2, 2)


def test_disk_directory_opens_with_diskcache_itself(tmp_path: Path) -> None:
    """Entries are plain text under their cache key, readable with diskcache directly."""
    backend = DiskCache(tmp_path)

    @instructor_cache(backend)
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=1)

    extract("Ann")
    with diskcache.Cache(str(tmp_path)) as raw:
        stored = raw.get(extract.cache_key("Ann"))
    assert isinstance(stored, str)
    assert '"value":{"name":"Ann","age":1}' in stored
    backend.close()


def _write_pickle_row(directory: Path, key: str, marker: Path) -> None:
    """Write, as an attacker with write access would, a pickled row that runs os.mkdir."""

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.mkdir, (str(marker),))

    with diskcache.Cache(str(directory)) as raw:
        raw.set(key, Payload())


def test_pickled_row_is_a_miss_and_runs_no_code(tmp_path: Path) -> None:
    """A pickle-mode row under our key is refused unread: a miss, an error, then deleted."""
    calls: list[str] = []
    backend = DiskCache(tmp_path / "cache")

    @instructor_cache(backend, ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        return UserDetail(name=text, age=2)

    marker = tmp_path / "pwned"
    key = extract.cache_key("Eve")
    _write_pickle_row(tmp_path / "cache", key, marker)

    with pytest.raises(CorruptEntryError):
        backend.get(key)  # the explicit backend API raises
    assert extract("Eve") == UserDetail(name="Eve", age=2)
    assert not marker.exists()
    assert calls == ["Eve"]
    assert extract.cache_info().errors == 1
    assert extract("Eve") == UserDetail(name="Eve", age=2)
    assert calls == ["Eve"]  # replaced by a good entry
    backend.close()

    # The payload is live: plain diskcache would have run it.
    _write_pickle_row(tmp_path / "cache", key, marker)
    with diskcache.Cache(str(tmp_path / "cache")) as raw:
        raw.get(key)
    assert marker.exists()


# Each way DiskCache reads a row, given a key.
READERS: dict[str, Callable[[DiskCache, str], object]] = {
    "get": lambda cache, key: cache.get(key),
    "get_with_ttl": lambda cache, key: cache.get_with_ttl(key),
    "get_many": lambda cache, key: cache.get_many(["absent", key]),
}


# The reads of one key, which raise for a refused row (get_many answers a miss for it).
SINGLE_READERS = {name: READERS[name] for name in ("get", "get_with_ttl")}


@pytest.mark.parametrize("read", SINGLE_READERS.values(), ids=SINGLE_READERS.keys())
def test_binary_row_is_refused(tmp_path: Path, read: Callable[[DiskCache, str], object]) -> None:
    """A bytes row is not text this library wrote, so every read of it raises CorruptEntryError."""
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set("k", b"\x80\x04bytes")
    backend = DiskCache(tmp_path)
    with pytest.raises(CorruptEntryError):
        read(backend, "k")
    backend.close()


@pytest.mark.parametrize("read", SINGLE_READERS.values(), ids=SINGLE_READERS.keys())
def test_pickled_row_runs_no_code_on_any_read(
    tmp_path: Path, read: Callable[[DiskCache, str], object]
) -> None:
    """get and get_with_ttl refuse a pickle-mode row without unpickling it."""
    marker = tmp_path / "pwned"
    _write_pickle_row(tmp_path / "cache", "k", marker)
    backend = DiskCache(tmp_path / "cache")
    with pytest.raises(CorruptEntryError):
        read(backend, "k")
    backend.close()
    assert not marker.exists()


@pytest.mark.parametrize("policy", ["none", "least-recently-used"])
@pytest.mark.parametrize("row", ["pickle", "bytes"])
def test_disk_bulk_read_misses_a_refused_row_alone(tmp_path: Path, row: str, policy: str) -> None:
    """get_many answers None for a refused row, never unpickled, and the good rows' texts."""
    directory, marker = tmp_path / "cache", tmp_path / "pwned"
    if row == "pickle":
        _write_pickle_row(directory, "bad", marker)
    else:
        with diskcache.Cache(str(directory)) as raw:
            raw.set("bad", b"\x80\x04bytes")
    backend = DiskCache(directory, eviction_policy=policy)  # LRU: each key read through get
    backend.set_many({"good": "kept", "large": "x" * 100_000})
    keys = ["good", "bad", "absent", "large", "bad"]
    assert backend.get_many(keys) == ["kept", None, None, "x" * 100_000, None]
    assert not marker.exists()
    backend.set("bad", "replaced")  # a miss the next write replaces
    assert backend.get_many(keys) == ["kept", "replaced", None, "x" * 100_000, "replaced"]
    backend.close()


def test_disk_persists_across_processes(tmp_path: Path) -> None:
    """An entry written by one process is a hit in the next one."""
    runs = run_in_two_processes(tmp_path, f"DiskCache({str(tmp_path / 'cache')!r})")
    assert runs[0] == ['{"name":"Jason","age":5}', "1", "0"]
    assert runs[1] == ['{"name":"Jason","age":5}', "0", "1"]


def test_memory_cache_under_concurrent_use() -> None:
    """Many threads reading, writing, deleting and clearing never corrupt it or exceed maxsize."""
    cache = MemoryCache(maxsize=50)
    errors: list[BaseException] = []
    wrong: list[tuple[str, str]] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                key = f"k{rng.randrange(120)}"
                action = rng.random()
                if action < 0.5:
                    value = cache.get(key)
                    if value is not None and value != key.upper():
                        wrong.append((key, value))
                elif action < 0.9:
                    cache.set(key, key.upper(), ttl=None if rng.random() < 0.8 else 1e-9)
                elif action < 0.98:
                    cache.delete(key)
                else:
                    cache.clear_prefix("k1")
        except BaseException as exc:  # noqa: BLE001  (reported to the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert wrong == []
    assert len(cache) <= 50


def test_decorated_function_statistics_add_up_under_threads(tmp_path: Path) -> None:
    """Concurrent callers always get the right result and hits + misses equals the calls made."""

    @instructor_cache(MemoryCache(maxsize=16))
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=len(text))

    results: list[bool] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(500):
            text = "x" * rng.randrange(1, 30)
            results.append(extract(text) == UserDetail(name=text, age=len(text)))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    info = extract.cache_info()
    assert all(results)
    assert len(results) == 3000
    assert info.hits + info.misses == 3000
    assert info.hits > 0


def test_planted_text_row_pointing_outside_the_directory_is_refused(tmp_path: Path) -> None:
    """A text-mode row naming a file elsewhere is neither read nor, on cleanup, deleted."""
    victim = tmp_path / "victim" / "important.txt"
    victim.parent.mkdir()
    victim.write_text("secret\n")
    backend = DiskCache(tmp_path / "cache")

    @instructor_cache(backend)
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=3)

    key = extract.cache_key("Mal")
    backend.set(key, "placeholder")
    with contextlib.closing(sqlite3.connect(tmp_path / "cache" / "cache.db")) as con, con:
        con.execute(
            "UPDATE Cache SET mode = ?, filename = ?, value = NULL WHERE key = ?",
            (diskcache.core.MODE_TEXT, str(victim), key),
        )
    with pytest.raises(CorruptEntryError):
        backend.get(key)
    assert extract("Mal") == UserDetail(name="Mal", age=3)
    assert extract.cache_info().errors == 1
    assert victim.read_text() == "secret\n"
    assert extract("Mal") == UserDetail(name="Mal", age=3)
    assert extract.cache_info().hits == 1
    backend.close()


def test_disk_failures_raise_backend_error_from_the_explicit_api(tmp_path: Path) -> None:
    """Used on its own, a failing DiskCache raises BackendError naming the cause, in every call."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    backend = DiskCache(blocker / "cache")
    operations: list[Callable[[], object]] = [
        lambda: backend.get("k"),
        lambda: backend.get_with_ttl("k"),
        lambda: backend.get_many(["k"]),
        lambda: backend.set("k", "v"),
        lambda: backend.set_many({"k": "v"}),
        lambda: backend.delete("k"),
        lambda: backend.clear_prefix("k"),
        lambda: len(backend),
        backend.clear,
    ]
    for operation in operations:
        with pytest.raises(BackendError, match=r"NotADirectoryError|FileExistsError|OSError"):
            operation()


@pytest.mark.parametrize("read", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("policy", ["least-recently-used", "least-frequently-used", "none"])
def test_disk_reads_honour_the_eviction_policy(
    tmp_path: Path, policy: str, read: Callable[[DiskCache, str], object]
) -> None:
    """Under a policy that tracks reads, each read still records itself, as diskcache's get does."""
    backend = DiskCache(tmp_path, eviction_policy=policy)
    backend.set("k", "v", ttl=60.0)
    assert read(backend, "k") in ("v", ("v", pytest.approx(60.0, abs=5)), [None, "v"])
    assert read(backend, "missing") in (None, [None, None])
    with diskcache.Cache(str(tmp_path)) as raw:
        (count,) = raw._sql("SELECT access_count FROM Cache WHERE key = 'k'").fetchone()
    assert count == (1 if policy == "least-frequently-used" else 0)
    backend.close()


def _live_connections() -> list[sqlite3.Connection]:
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, sqlite3.Connection)]


def _is_closed(con: sqlite3.Connection) -> bool:
    try:
        con.execute("SELECT 1")
    except sqlite3.ProgrammingError as exc:
        if "closed" in str(exc):
            return True
        raise  # e.g. "created in a thread can only be used in that same thread"
    return False


def _opened_since(before: set[int]) -> list[sqlite3.Connection]:
    return [con for con in _live_connections() if id(con) not in before]


def _assert_none_left_open(before: set[int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()  # an unclosed connection collected here warns (Python 3.13+)
    assert [con for con in _opened_since(before) if not _is_closed(con)] == []


def test_disk_close_from_another_thread_closes_an_idle_threads_connection(tmp_path: Path) -> None:
    """DiskCache.close() on the main thread closes an idle worker thread's connection too."""
    before = {id(con) for con in _live_connections()}
    backend = DiskCache(tmp_path / "cache")
    used, release = threading.Event(), threading.Event()

    def worker() -> None:
        backend.set("k", "v")
        assert backend.get("k") == "v"
        used.set()
        release.wait(timeout=30)
        assert backend.get("k") == "v"  # a closed cache reopens on the next use
        backend.close()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert used.wait(timeout=30)
        assert backend.get("k") == "v"  # the main thread's connection too
        opened = _opened_since(before)
        assert len(opened) >= 2
        backend.close()  # no call is in progress: the cache goes, and every connection with it
        assert [_is_closed(con) for con in opened] == [True] * len(opened)
    finally:
        release.set()
        thread.join(timeout=30)
    _assert_none_left_open(before)


def test_disk_connection_is_closed_by_its_own_thread_on_next_use_or_end(tmp_path: Path) -> None:
    """close() leaves a live thread's connection (maybe mid-statement) to that thread to close."""
    before = {id(con) for con in _live_connections()}
    backend = DiskCache(tmp_path / "cache")
    used, closed, reused, release = (threading.Event() for _ in range(4))

    def worker() -> None:
        backend.set("k", "v")
        used.set()
        assert closed.wait(timeout=30)
        assert backend.get("k") == "v"  # finds its connection stale: closes it, reconnects
        reused.set()
        release.wait(timeout=30)  # then ends, still holding its fresh connection

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert used.wait(timeout=30)
        (first,) = _opened_since(before)  # the worker's, idle now, so safe to look at here
        backend.cache.close()  # the store stays open: only the connections go stale
        assert not _is_closed(first)
        closed.set()
        assert reused.wait(timeout=30)
        assert _is_closed(first)
        (fresh,) = [con for con in _opened_since(before) if not _is_closed(con)]
    finally:
        closed.set()
        release.set()
        thread.join(timeout=30)
    assert _is_closed(fresh)  # its thread ended: closed without another close()
    del first, fresh
    _assert_none_left_open(before)
    backend.close()


def test_disk_get_many_reads_more_keys_than_one_query_binds(tmp_path: Path) -> None:
    """get_many answers thousands of keys, beyond SQLite's 999 bound parameters, in key order."""
    backend = DiskCache(tmp_path)
    items = {f"k{i}": f"v{i}" for i in range(2500)}
    backend.set_many(items)
    keys = [f"k{i}" for i in reversed(range(2600))] + ["k7", "k7"]
    expected = [items.get(key) for key in keys]
    assert backend.get_many(keys) == expected
    backend.close()


def test_disk_get_many_skips_expired_entries(tmp_path: Path) -> None:
    """An entry whose expire_time has passed is None to get_many and get_with_ttl."""
    backend = DiskCache(tmp_path)
    backend.set_many({"a": "1", "b": "2"}, ttl=60.0)
    with contextlib.closing(sqlite3.connect(tmp_path / "cache.db")) as con, con:
        con.execute("UPDATE Cache SET expire_time = 1 WHERE key = 'a'")
    assert backend.get_many(["a", "b"]) == [None, "2"]
    assert backend.get_with_ttl("a") is None
    backend.close()


def _value_files(directory: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(parent, name), directory)
        for parent, _, names in os.walk(directory)
        for name in names
        if name.endswith(".val")
    }


def test_disk_set_many_stores_nothing_when_one_value_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch with a value over the bound stores no item and leaves no value file behind."""
    monkeypatch.setattr(TextOnlyDisk, "max_file_size", 100_000)
    backend = DiskCache(tmp_path)
    backend.set("kept", "old")
    with pytest.raises(BackendError, match="over the bound"):
        backend.set_many({"kept": "new", "big": "b" * 50_000, "huge": "h" * 100_001})
    assert backend.get_many(["kept", "big", "huge"]) == ["old", None, None]
    assert _value_files(tmp_path) == set()
    backend.close()


def test_disk_set_many_replaces_value_files_it_overwrites(tmp_path: Path) -> None:
    """Overwriting large entries in a batch removes their old value files once it commits."""
    backend = DiskCache(tmp_path)
    backend.set_many({"a": "a" * 50_000, "b": "b" * 50_000})
    old = _value_files(tmp_path)
    backend.set_many({"a": "A" * 50_000, "b": "short"})
    assert backend.get_many(["a", "b"]) == ["A" * 50_000, "short"]
    assert len(_value_files(tmp_path)) == 1
    assert not old & _value_files(tmp_path)
    backend.close()


def test_disk_clear_prefix_removes_value_files_and_only_text_keys(tmp_path: Path) -> None:
    """clear_prefix deletes prefixed rows and their value files, in batches, and no other row."""
    backend = DiskCache(tmp_path)
    backend.set_many({f"ns:{i:05}": f"v{i}" for i in range(2500)})
    backend.set_many({"ns:big1": "x" * 50_000, "ns:big2": "y" * 50_000, "other": "z" * 50_000})
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set(b"ns:bytes", "planted")  # a key this library never writes: left alone
    assert backend.clear_prefix("ns:") == 2502
    assert len(_value_files(tmp_path)) == 1
    assert backend.get("other") == "z" * 50_000
    assert len(backend) == 2
    assert backend.clear_prefix("") == 1
    with diskcache.Cache(str(tmp_path)) as raw:
        assert list(raw) == [b"ns:bytes"]
    backend.close()


def test_disk_clear_prefix_counts_only_unexpired_entries(tmp_path: Path) -> None:
    """An expired entry is removed by clear_prefix but not counted, as get no longer sees it."""
    backend = DiskCache(tmp_path)
    backend.set_many({"p:a": "1", "p:b": "2"})
    with contextlib.closing(sqlite3.connect(tmp_path / "cache.db")) as con, con:
        con.execute("UPDATE Cache SET expire_time = 1 WHERE key = 'p:a'")
    assert backend.clear_prefix("p:") == 1
    assert len(backend) == 0
    backend.close()


@pytest.mark.parametrize("kind", ["memory", "disk", "redis"])
def test_a_stores_own_ttl_bounds_a_longer_ttl_asked_for(
    kind: str, tmp_path: Path, redis_url: str
) -> None:
    """A store made with ttl=0.3 keeps nothing longer, whatever TTL a write asks for."""
    store: Any
    if kind == "memory":
        store = MemoryCache(ttl=0.3)
    elif kind == "disk":
        store = DiskCache(tmp_path / "bounded", ttl=0.3)
    else:
        store = RedisCache(redis_url, prefix=f"bounded-{uuid.uuid4().hex}:", ttl=0.3)
    store.set("asked-a-day", "v", 86400.0)
    store.set_many({"many": "w"}, 86400.0)
    store.set("shorter", "x", 0.1)
    found = store.get_with_ttl("asked-a-day")
    assert found is not None
    assert found[1] is not None
    assert found[1] <= 0.3
    time.sleep(0.5)
    assert [store.get(key) for key in ("asked-a-day", "many", "shorter")] == [None, None, None]
    if kind != "memory":
        store.close()
