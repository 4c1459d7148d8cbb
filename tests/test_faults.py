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
from tests.conftest import Clock, FakeLLM, UserDetail


class DictBackend:
    """A minimal user backend: the Backend protocol exactly (no clear_prefix)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.data[key] = value

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def clear(self) -> None:
        self.data.clear()

    async def aget(self, key: str) -> str | None:
        return self.get(key)

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        self.set(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        return self.delete(key)

    async def aclear(self) -> None:
        self.clear()


class BrokenBackend(DictBackend):
    """A user-supplied backend whose every call raises, as a dead server's client would."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def _fail(self) -> None:
        self.attempts += 1
        raise ConnectionError("backend is down")

    def get(self, key: str) -> str | None:
        self._fail()
        return None

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._fail()

    def delete(self, key: str) -> bool:
        self._fail()
        return False

    def clear(self) -> None:
        self._fail()

    def clear_prefix(self, prefix: str) -> int:
        self._fail()
        return 0


def test_failing_backend_falls_back_to_the_function(
    llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """Every call returns the right result; errors are counted and logged, rate-limited."""
    backend = BrokenBackend()

    @instructor_cache(backend, ignore=("llm",))
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


def test_failing_backend_falls_back_for_async_functions(llm: FakeLLM) -> None:
    """The async path absorbs the same failures."""

    @instructor_cache(BrokenBackend(), ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> list[UserDetail]:
        return [await extract("Q is 1") for _ in range(3)]

    assert asyncio.run(scenario()) == [UserDetail(name="Q", age=1)] * 3
    assert extract.cache_info().errors == 6


def test_invalidate_on_a_dead_backend_says_so_and_clear_fails_open() -> None:
    """invalidate() raises BackendError (the entry may remain); cache_clear() counts an error."""

    @instructor_cache(BrokenBackend())
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    with pytest.raises(BackendError, match=r"invalidate.*may still be there"):
        extract.invalidate("x")
    assert extract.cache_info().errors == 1
    extract.cache_clear()  # logged and absorbed; it resets the statistics as functools' does
    assert extract.cache_info().errors == 0


def test_cache_clear_without_clear_prefix_removes_nothing_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A protocol-only backend cannot clear one function's entries: nothing goes; a log says why."""
    backend = DictBackend()

    @instructor_cache(backend)
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    extract("a")
    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        extract.cache_clear()
    assert len(backend.data) == 1
    assert any("clear_prefix" in r.getMessage() for r in caplog.records)
    assert extract("a") == UserDetail(name="a", age=0)
    assert extract.cache_info().hits == 1


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
    breaker = CircuitBreaker(failures=2, cooldown=0.5)
    backend = disk(directory, circuit_breaker=breaker)  # timeout: sub-second, not 60 s

    @instructor_cache(backend, ignore=("llm",))
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
    assert extract.cache_info().errors >= 6
    assert len(llm.calls) == 6

    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "released"
    time.sleep(breaker.cooldown)

    extract("S is 0")
    calls = len(llm.calls)
    assert extract("S is 0") == UserDetail(name="S", age=0)
    assert len(llm.calls) == calls  # caching resumed once the lock was gone
    assert extract.cache_info().hits >= 1
    assert not breaker.is_open
    backend.close()


class Toggle(BrokenBackend):
    """A backend that fails while ``down`` is set, and otherwise stores in a dict."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__()
        self.circuit_breaker = breaker
        self.down = True
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        if self.down:
            self._fail()
        return self.data.get(key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if self.down:
            self._fail()
        self.data[key] = value


def test_breaker_skips_a_failing_backend_then_probes_it(llm: FakeLLM, clock: Clock) -> None:
    """After N failures the backend is not called until the cooldown passes; then it is again."""
    backend = Toggle(CircuitBreaker(failures=3, cooldown=10, timer=clock))

    @instructor_cache(backend, ignore=("llm",))
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


class SwitchableBackend(DictBackend):
    """A backend that fails while ``down`` is set, so its breaker can be opened at will."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.deletes = 0

    def get(self, key: str) -> str | None:
        if self.down:
            raise ConnectionError("down")
        return super().get(key)

    def delete(self, key: str) -> bool:
        self.deletes += 1
        return super().delete(key)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_refresh_and_invalidate_reach_the_backend_while_its_breaker_is_open(flavour: str) -> None:
    """Explicit calls are not skipped by an open breaker: the entry is replaced, then removed."""
    backend = SwitchableBackend()
    backend.circuit_breaker = CircuitBreaker(failures=1, cooldown=60)  # type: ignore[attr-defined]
    answers = iter(["old", "other", "new"])

    def extract(text: str) -> UserDetail:
        return UserDetail(name=next(answers), age=0)

    async def extract_async(text: str) -> UserDetail:
        return extract(text)

    cached = instructor_cache(backend, ignore=("answers",))(
        extract if flavour == "sync" else extract_async
    )

    def run(result: Any) -> Any:
        return asyncio.run(result) if asyncio.iscoroutine(result) else result

    run(cached("x"))
    key = cached.cache_key("x")
    backend.down = True
    run(cached("y"))  # the failed read opens the breaker
    assert backend.circuit_breaker.is_open  # type: ignore[attr-defined]
    assert run(cached.refresh("x")) == UserDetail(name="new", age=0)
    assert "new" in backend.data[key]
    assert run(cached.invalidate("x")) is True
    assert key not in backend.data


class TornDownBackend(DictBackend):
    """An async backend whose calls die with their event loop, as tasks on a closed loop do."""

    async def aget(self, key: str) -> str | None:
        raise RuntimeError("Event loop is closed")

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        raise RuntimeError("coroutine ignored GeneratorExit")


def test_calls_torn_down_with_their_event_loop_never_open_the_breaker() -> None:
    """Counted and logged, but a closed loop says nothing of the backend: the breaker stays shut."""
    backend = TornDownBackend()
    backend.circuit_breaker = CircuitBreaker(failures=2, cooldown=60)  # type: ignore[attr-defined]

    @instructor_cache(backend)
    async def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    for _ in range(5):
        asyncio.run(extract("x"))
    assert not backend.circuit_breaker.is_open  # type: ignore[attr-defined]
    assert extract.cache_info().errors == 10  # a failed read and write per call
