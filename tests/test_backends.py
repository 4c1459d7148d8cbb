"""The backend contract, which every built-in backend passes, and disk-specific safety."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import random
import sqlite3
import threading
from pathlib import Path

import diskcache
import pytest
from instructor_cache.backends._protocol import PrefixClearable, Sized

from instructor_cache import DiskCache, MemoryCache, instructor_cache
from instructor_cache.backends import Store
from instructor_cache.errors import ConfigurationError, CorruptEntryError
from tests.conftest import Clock, UserDetail, run_in_two_processes


def test_backend_satisfies_the_protocol(backend: Store) -> None:
    """Every built-in backend is a Store and can clear by prefix."""
    assert isinstance(backend, Store)
    assert isinstance(backend, PrefixClearable)


def test_get_set_delete(backend: Store) -> None:
    """A stored string reads back; delete removes it and reports whether it existed."""
    assert backend.get("k") is None
    backend.set("k", "value ü \u2603")
    assert backend.get("k") == "value ü \u2603"
    backend.set("k", "replaced")
    assert backend.get("k") == "replaced"
    assert backend.delete("k") is True
    assert backend.delete("k") is False
    assert backend.get("k") is None


def test_empty_string_is_a_value(backend: Store) -> None:
    """An empty string is stored and returned, not confused with a missing entry."""
    backend.set("k", "")
    assert backend.get("k") == ""


def test_clear_and_clear_prefix(backend: Store) -> None:
    """clear_prefix removes exactly the keys under the prefix; clear removes all."""
    for key in ["ns:f:1", "ns:f:2", "ns:fg:1", "ns:g:1"]:
        backend.set(key, key)
    assert isinstance(backend, PrefixClearable)
    assert backend.clear_prefix("ns:f:") == 2
    assert [backend.get(k) for k in ["ns:f:1", "ns:fg:1", "ns:g:1"]] == [None, "ns:fg:1", "ns:g:1"]
    backend.clear()
    assert backend.get("ns:g:1") is None
    if isinstance(backend, Sized):  # Redis does not count: a SCAN of the db is too dear
        assert len(backend) == 0


def test_large_value_roundtrips(backend: Store) -> None:
    """A value larger than diskcache's in-database limit (32 KB) round-trips as text."""
    big = "x" * 100_000 + "ü"
    backend.set("big", big)
    assert backend.get("big") == big


def test_async_twins(backend: Store) -> None:
    """aget/aset/adelete/aclear behave like their sync twins."""

    async def scenario() -> None:
        await backend.aset("k", "v")
        assert await backend.aget("k") == "v"
        assert backend.get("k") == "v"
        assert await backend.adelete("k") is True
        await backend.aset("k2", "v2")
        await backend.aclear()
        assert await backend.aget("k2") is None

    asyncio.run(scenario())


@pytest.mark.parametrize("ttl", [60, 60.0, datetime.timedelta(seconds=60)], ids=repr)
def test_memory_ttl_accepts_seconds_and_timedelta(clock: Clock, ttl: object) -> None:
    """A per-entry ttl in int or float seconds or a timedelta expires the entry on time."""
    cache = MemoryCache(timer=clock)
    cache.set("k", "v", ttl=ttl)  # type: ignore[arg-type]
    clock.advance(59.9)
    assert cache.get("k") == "v"
    clock.advance(0.2)
    assert cache.get("k") is None


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


def test_binary_row_is_refused(tmp_path: Path) -> None:
    """A bytes row is not text this library wrote, so reading it raises CorruptEntryError."""
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set("k", b"\x80\x04bytes")
    backend = DiskCache(tmp_path)
    with pytest.raises(CorruptEntryError):
        backend.get("k")
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
    """Used on its own, a failing DiskCache raises BackendError naming the cause."""
    from instructor_cache.errors import BackendError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    backend = DiskCache(blocker / "cache")
    for operation in (lambda: backend.get("k"), lambda: backend.set("k", "v"), backend.clear):
        with pytest.raises(BackendError, match=r"NotADirectoryError|FileExistsError|OSError"):
            operation()


@pytest.mark.parametrize("policy", ["least-recently-used", "least-frequently-used", "none"])
def test_disk_reads_honour_the_eviction_policy(tmp_path: Path, policy: str) -> None:
    """Under a policy that tracks reads, a read still records itself, as diskcache's get does."""
    backend = DiskCache(tmp_path, eviction_policy=policy)
    backend.set("k", "v")
    assert backend.get("k") == "v"
    assert backend.get("missing") is None
    with diskcache.Cache(str(tmp_path)) as raw:
        (count,) = raw._sql("SELECT access_count FROM Cache WHERE key = 'k'").fetchone()
    assert count == (1 if policy == "least-frequently-used" else 0)
    backend.close()
