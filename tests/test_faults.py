"""When the backend fails, results stay right, failures are counted, and no call hangs."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instructor_cache import CircuitBreaker, DiskCache, instructor_cache
from instructor_cache.errors import BackendError, ConfigurationError
from tests._stores import AsyncDictStore, BrokenStore, DictStore, SwitchableStore
from tests.conftest import Clock, FakeLLM, UserDetail


def test_failing_backend_falls_back_to_the_function(
    llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """Every call returns the right result; errors are counted and logged, rate-limited."""
    backend = BrokenStore()

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=CircuitBreaker(failures=1000))
    def extract(text: str) -> UserDetail:
        return llm(text)

    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        results = [extract(f"P{i % 3} is {i % 3}") for i in range(30)]
    assert results == [UserDetail(name=f"P{i % 3}", age=i % 3) for i in range(30)]
    assert len(llm.calls) == 30
    info = extract.cache_info()
    assert (info.hits, info.misses, info.errors) == (0, 30, 60)  # a failed get and set per call
    records = [r for r in caplog.records if r.name == "instructor_cache"]
    assert len(records) == 1
    assert "ConnectionError" in records[0].getMessage()
    assert "extract" in records[0].getMessage()
    assert "get on BrokenStore()" in records[0].getMessage()  # names the operation


@pytest.mark.parametrize("store", [BrokenStore, DictStore], ids=["native-async", "sync-only"])
def test_failing_backend_falls_back_for_async_functions(llm: FakeLLM, store: type[Any]) -> None:
    """The async path absorbs the same failures, natively or on the store's worker thread."""
    backend = store()
    if isinstance(backend, DictStore) and not isinstance(backend, BrokenStore):
        backend.get = backend.set = _raise_connection_error  # type: ignore[method-assign]

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=CircuitBreaker(failures=1000))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> list[UserDetail]:
        return [await extract("Q is 1") for _ in range(3)]

    assert asyncio.run(scenario()) == [UserDetail(name="Q", age=1)] * 3
    assert extract.cache_info().errors == 6


def _raise_connection_error(*args: Any) -> Any:
    raise ConnectionError("store is down")


def test_a_users_failing_store_gets_the_default_breaker(llm: FakeLLM) -> None:
    """Without circuit_breaker=, a store that fails 3 times running is skipped for a cooldown."""
    backend = BrokenStore()

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    for _ in range(10):
        assert extract("Q is 1") == UserDetail(name="Q", age=1)
    assert backend.attempts == 3  # get, set, get: then the breaker opened
    # 3 failures, the skipped set, then one error for each of the 8 calls bypassed whole
    assert extract.cache_info().errors == 12


def test_functions_over_one_store_share_its_breaker(llm: FakeLLM) -> None:
    """Once one function has found the store dead, another does not pay to find out again."""
    backend = BrokenStore()

    @instructor_cache(backend, ignore=("llm",))
    def first(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(backend, ignore=("llm",))
    def second(text: str) -> UserDetail:
        return llm(text)

    first("Q is 1")
    first("Q is 1")
    attempts = backend.attempts
    assert second("Q is 1") == UserDetail(name="Q", age=1)
    assert backend.attempts == attempts  # skipped: the breaker is the store's


def test_invalidate_and_clear_on_a_dead_backend_say_so() -> None:
    """invalidate() and cache_clear() raise BackendError (entries may remain); stats are kept."""

    @instructor_cache(BrokenStore())
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    with pytest.raises(BackendError, match=r"invalidate.*may still be there"):
        extract.invalidate("x")
    assert extract.cache_info().errors == 1
    with pytest.raises(BackendError, match=r"cache_clear.*may still be there"):
        extract.cache_clear()
    assert extract.cache_info().errors == 2  # not reset: nothing was cleared


def test_async_functions_clear_with_an_awaitable_clear() -> None:
    """``await fn.acache_clear()`` removes the function's entries through the async path."""
    backend = AsyncDictStore()
    backend.data["other"] = "kept"

    @instructor_cache(backend)
    async def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    async def scenario() -> None:
        await extract("a")
        assert len(backend.data) == 2
        await extract.acache_clear()

    asyncio.run(scenario())
    assert backend.data == {"other": "kept"}
    assert extract.cache_info() == extract.cache_info()._replace(hits=0, misses=0, errors=0)


def test_store_without_clear_prefix_is_rejected_at_decoration() -> None:
    """clear_prefix is required: without it cache_clear() could not work, so decorating fails."""

    class NoPrefix:
        def get(self, key: str) -> str | None:
            return None

        def set(self, key: str, value: str, ttl: float | None = None) -> None:
            pass

        def delete(self, key: str) -> bool:
            return False

    with pytest.raises(ConfigurationError, match="lacks clear_prefix"):
        instructor_cache(NoPrefix())  # type: ignore[call-overload]


def test_object_without_backend_methods_is_rejected_at_decoration() -> None:
    """Passing something that is not a backend fails when decorating, naming what is missing."""

    class HalfBackend:
        def get(self, key: str) -> str | None:
            return None

    with pytest.raises(ConfigurationError, match="lacks set, delete"):
        instructor_cache(HalfBackend())  # type: ignore[call-overload]


def test_disk_path_that_cannot_be_a_directory_falls_back(llm: FakeLLM, tmp_path: Path) -> None:
    """A DiskCache whose directory cannot be created costs nothing but counted errors."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    @instructor_cache(DiskCache(blocker / "cache"), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    assert [extract("R is 2") for _ in range(3)] == [UserDetail(name="R", age=2)] * 3
    # get and set fail, get fails (the breaker opens) and set is skipped, then
    # the third call goes straight through: one error for the whole call.
    assert extract.cache_info().errors == 5


LOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
if sys.argv[2] == "exclusive-mode":  # readers are locked out too, even in WAL mode
    con.execute("PRAGMA locking_mode=EXCLUSIVE")
con.execute("BEGIN EXCLUSIVE")
con.execute("SELECT count(*) FROM Cache").fetchall()
print("locked", flush=True)
sys.stdin.readline()
con.execute("ROLLBACK")
con.close()
print("released", flush=True)
"""


@pytest.fixture(params=["begin-exclusive", "exclusive-mode"])
def lock_holder(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A DiskCache directory whose database another process holds locked."""
    directory = tmp_path / "locked"
    setup = DiskCache(directory)
    setup.set("warm", "up")  # create the database
    setup.close()
    process = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(directory / "cache.db"), request.param],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        yield directory, process
    finally:
        process.kill()
        process.communicate(timeout=10)  # reaps it and closes both pipes


def test_locked_database_never_freezes_the_app(
    llm: FakeLLM, lock_holder: tuple[Path, subprocess.Popen[str]], disk: Any
) -> None:
    """While another process locks the database calls stay fast; caching resumes after."""
    directory, process = lock_holder
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown=0.5, timer=clock)
    backend = disk(directory)  # timeout: sub-second, not 60 s

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=breaker)
    def extract(text: str) -> UserDetail:
        return llm(text)

    durations = []
    for i in range(6):
        started = time.monotonic()
        assert extract(f"S is {i}") == UserDetail(name="S", age=i)
        durations.append(time.monotonic() - started)
    assert max(durations) < 1.5  # diskcache's own default would wait 60 s, twice
    assert breaker.is_open
    assert durations[-1] < 0.05  # the open breaker costs no timeout at all
    # The first call's get and set fail (the breaker opens); five calls go straight through.
    assert extract.cache_info().errors == 7
    assert len(llm.calls) == 6

    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "released"
    clock.advance(breaker.cooldown)

    extract("S is 0")
    calls = len(llm.calls)
    assert extract("S is 0") == UserDetail(name="S", age=0)
    assert len(llm.calls) == calls  # caching resumed once the lock was gone
    assert extract.cache_info().hits == 1
    assert not breaker.is_open
    backend.close()


def test_breaker_skips_a_failing_backend_then_probes_it(llm: FakeLLM, clock: Clock) -> None:
    """After N failures the backend is not called until the cooldown passes; then it is again."""
    backend = SwitchableStore(down=True)
    breaker = CircuitBreaker(failures=3, cooldown=10, timer=clock)

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=breaker)
    def extract(text: str) -> UserDetail:
        return llm(text)

    for _ in range(5):
        extract("T is 1")
    assert backend.attempts == 3  # get, set, get: then the breaker opened
    # 3 failures, the skipped set, then one error for each call bypassed whole
    assert extract.cache_info().errors == 7
    clock.advance(10)
    backend.down = False
    extract("T is 1")  # probe succeeds: stored
    assert extract("T is 1") == UserDetail(name="T", age=1)
    assert extract.cache_info().hits == 1
    assert len(llm.calls) == 6


@pytest.mark.parametrize(("failures", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_breaker_rejects_nonsense_settings(failures: int, cooldown: float) -> None:
    """A breaker that could never close or never open is a configuration error."""
    with pytest.raises(ConfigurationError):
        CircuitBreaker(failures=failures, cooldown=cooldown)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_refresh_and_invalidate_reach_the_backend_while_its_breaker_is_open(flavour: str) -> None:
    """Explicit calls are not skipped by an open breaker: the entry is replaced, then removed."""
    backend = SwitchableStore()
    breaker = CircuitBreaker(failures=1, cooldown=60)
    answers = iter(["old", "other", "new"])

    def extract(text: str) -> UserDetail:
        return UserDetail(name=next(answers), age=0)

    async def extract_async(text: str) -> UserDetail:
        return extract(text)

    cached = instructor_cache(backend, ignore=("answers",), circuit_breaker=breaker)(
        extract if flavour == "sync" else extract_async
    )

    def run(result: Any) -> Any:
        return asyncio.run(result) if asyncio.iscoroutine(result) else result

    run(cached("x"))
    key = cached.cache_key("x")
    backend.down = True
    run(cached("y"))  # the failed read opens the breaker
    assert breaker.is_open
    backend.down = False  # healthy again, but its breaker stays open for a minute
    assert run(cached.refresh("x")) == UserDetail(name="new", age=0)
    assert "new" in backend.data[key]
    assert run(cached.invalidate("x")) is True
    assert key not in backend.data


def test_async_calls_queued_behind_a_locked_database_do_not_each_pay_its_timeout(
    llm: FakeLLM, lock_holder: tuple[Path, subprocess.Popen[str]], disk: Any
) -> None:
    """Once the breaker opens, reads still queued for the disk's worker thread are turned away."""
    directory, _ = lock_holder

    @instructor_cache(disk(directory), ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def burst() -> list[UserDetail]:
        return await asyncio.gather(*(extract(f"U is {i}") for i in range(40)))

    started = time.monotonic()
    assert asyncio.run(burst()) == [UserDetail(name="U", age=i) for i in range(40)]
    # Three reads pay the 0.25 s timeout and open the breaker; one at a time,
    # the forty queued reads would take ten seconds.
    assert time.monotonic() - started < 4.0
    assert extract.cache_info().errors == 80  # 40 reads failed or turned away, 40 writes skipped


class TornDownBackend(AsyncDictStore):
    """An async backend whose calls die with their event loop, as tasks on a closed loop do."""

    async def aget(self, key: str) -> str | None:
        raise RuntimeError("Event loop is closed")

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        raise RuntimeError("coroutine ignored GeneratorExit")


def test_calls_torn_down_with_their_event_loop_never_open_the_breaker() -> None:
    """Counted and logged, but a closed loop says nothing of the backend: the breaker stays shut."""
    backend = TornDownBackend()
    breaker = CircuitBreaker(failures=2, cooldown=60)

    @instructor_cache(backend, circuit_breaker=breaker)
    async def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    for _ in range(5):
        asyncio.run(extract("x"))
    assert not breaker.is_open
    assert extract.cache_info().errors == 10  # a failed read and write per call
