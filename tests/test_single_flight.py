"""Single-flight in one process: concurrent calls with one key pay the provider once."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from instructor_cache import CircuitBreaker, MemoryCache, instructor_cache
from instructor_cache.backends import Store
from instructor_cache.errors import ConfigurationError
from tests._fakes import UserDetail
from tests._stores import aclose_clients
from tests._subprocess import PROJECT_ROOT, waiting_for_the_child

TEXTS = [f"user{i} is {20 + i}" for i in range(10)]


def _answer(text: str) -> UserDetail:
    name, _, age = text.partition(" is ")
    return UserDetail(name=name, age=int(age))


async def test_100_concurrent_async_calls_over_10_inputs_pay_10(
    make_backend: Callable[..., Store],
) -> None:
    """Identical async calls that arrive together share one provider call, on every backend."""
    calls: list[str] = []
    store = make_backend()

    @instructor_cache(store, ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        await asyncio.sleep(0.05)
        return _answer(text)

    texts = TEXTS * 10
    results = await asyncio.gather(*(extract(t) for t in texts))
    await aclose_clients(store)
    assert results == [_answer(t) for t in texts]
    assert sorted(calls) == sorted(TEXTS)
    info = extract.cache_info()
    assert (info.hits, info.misses) == (90, 10)


def test_8_threads_over_10_inputs_pay_10(make_backend: Callable[..., Store]) -> None:
    """Threads calling a sync function with the same inputs at once pay once per input."""
    calls: list[str] = []
    start = threading.Barrier(8)

    @instructor_cache(make_backend(), ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        time.sleep(0.05)
        return _answer(text)

    def worker(offset: int) -> list[UserDetail]:
        start.wait()
        order = TEXTS[offset:] + TEXTS[:offset]
        return [extract(t) for t in order]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, [i % 3 for i in range(8)]))
    for offset, got in zip([i % 3 for i in range(8)], results, strict=True):
        assert got == [_answer(t) for t in TEXTS[offset:] + TEXTS[:offset]]
    assert sorted(calls) == sorted(TEXTS)


def test_single_flight_false_lets_every_concurrent_call_pay() -> None:
    """With single_flight=False, concurrent identical calls each call the function (the old way)."""
    calls: list[str] = []
    start = threading.Barrier(4)

    @instructor_cache(MemoryCache(), single_flight=False, ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        time.sleep(0.1)
        return _answer(text)

    def worker(_: int) -> UserDetail:
        start.wait()
        return extract(TEXTS[0])

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(worker, range(4))) == [_answer(TEXTS[0])] * 4
    assert len(calls) == 4


async def test_a_leaders_exception_reaches_every_follower_and_is_not_cached() -> None:
    """Followers of a failed call get its exception; the next call tries again."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        await asyncio.sleep(0.05)
        if len(calls) == 1:
            raise RuntimeError("provider is down")
        return _answer(text)

    outcomes = await asyncio.gather(*(extract(TEXTS[0]) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    assert len(calls) == 1
    assert await extract(TEXTS[0]) == _answer(TEXTS[0])
    assert len(calls) == 2


async def test_a_cancelled_leader_hands_the_call_to_a_follower() -> None:
    """Cancelling the call that is computing does not leave the waiting calls hanging."""
    calls: list[str] = []
    started = asyncio.Event()

    @instructor_cache(MemoryCache(), ignore=("calls", "started"))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        started.set()
        await asyncio.sleep(0.2)
        return _answer(text)

    leader = asyncio.create_task(extract(TEXTS[0]))
    await started.wait()
    followers = [asyncio.create_task(extract(TEXTS[0])) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()
    results = await asyncio.wait_for(asyncio.gather(*followers), timeout=5)
    assert results == [_answer(TEXTS[0])] * 5
    assert len(calls) == 2  # the cancelled one, and one follower that took over
    assert leader.cancelled()


async def test_a_cancelled_follower_does_not_cancel_the_leader() -> None:
    """A waiting call that is cancelled stops waiting; the call it waited on goes on."""
    calls: list[str] = []
    started = asyncio.Event()

    @instructor_cache(MemoryCache(), ignore=("calls", "started"))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        started.set()
        await asyncio.sleep(0.1)
        return _answer(text)

    leader = asyncio.create_task(extract(TEXTS[0]))
    await started.wait()
    follower = asyncio.create_task(extract(TEXTS[0]))
    await asyncio.sleep(0.01)
    follower.cancel()
    assert await leader == _answer(TEXTS[0])
    assert follower.cancelled()
    assert await extract(TEXTS[0]) == _answer(TEXTS[0])
    assert len(calls) == 1


def test_calls_from_several_event_loops_in_several_threads_share_one_call() -> None:
    """Tasks of different event loops, each in its own thread, wait on one leader."""
    calls: list[str] = []
    start = threading.Barrier(4)

    @instructor_cache(MemoryCache(), ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        await asyncio.sleep(0.1)
        return _answer(text)

    async def burst() -> list[UserDetail]:
        return list(await asyncio.gather(*(extract(t) for t in TEXTS[:5] * 5)))

    def in_own_loop(_: int) -> list[UserDetail]:
        start.wait()
        return asyncio.run(burst())

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(in_own_loop, range(4)))
    assert all(r == [_answer(t) for t in TEXTS[:5] * 5] for r in results)
    assert sorted(calls) == sorted(TEXTS[:5])


def test_a_wait_is_bounded_by_single_flight_seconds(caplog: pytest.LogCaptureFixture) -> None:
    """A call that waited its bound for a slow leader calls the function itself, and says so."""
    calls: list[str] = []
    leader_started = threading.Event()

    @instructor_cache(MemoryCache(), single_flight=0.2, ignore=("calls", "leader_started"))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        leader_started.set()
        time.sleep(1.0 if len(calls) == 1 else 0)
        return _answer(text)

    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(extract, TEXTS[0])
        leader_started.wait(5)
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="instructor_cache"):
            assert extract(TEXTS[0]) == _answer(TEXTS[0])
        waited = time.monotonic() - began
        assert leader.result() == _answer(TEXTS[0])
    assert len(calls) == 2
    assert 0.15 < waited < 0.9
    assert "single_flight" in caplog.text


async def test_a_result_that_is_not_stored_is_not_shared() -> None:
    """A result cache_if refuses is not handed to the waiting calls: each calls the function."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), cache_if=lambda _: False, ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        await asyncio.sleep(0.05)
        return _answer(text)

    assert await asyncio.gather(*(extract(TEXTS[0]) for _ in range(3))) == [_answer(TEXTS[0])] * 3
    assert len(calls) == 3


async def test_followers_get_their_own_copies() -> None:
    """Each waiting call gets its own model, as a hit would: mutating one changes no other."""

    @instructor_cache(MemoryCache())
    async def extract(text: str) -> UserDetail:
        await asyncio.sleep(0.05)
        return _answer(text)

    first, second, third = await asyncio.gather(*(extract(TEXTS[0]) for _ in range(3)))
    first.age = -1
    assert second.age == third.age == 20
    assert second is not third


async def test_a_call_that_waits_on_its_own_key_inside_the_leader_does_not_deadlock() -> None:
    """A leader whose own subtask calls the same key computes it instead of waiting on itself."""
    depth: list[int] = []

    @instructor_cache(MemoryCache(), single_flight=30, ignore=("depth",))
    async def extract(text: str, nested: bool = True) -> UserDetail:
        depth.append(1)
        if len(depth) == 1:
            inner = asyncio.create_task(extract(text))
            return await inner
        return _answer(text)

    assert await asyncio.wait_for(extract(TEXTS[0]), timeout=5) == _answer(TEXTS[0])


@pytest.mark.parametrize("value", ["yes", 0, -1.0, float("nan"), float("inf"), None])
def test_single_flight_takes_true_false_or_positive_seconds(value: object) -> None:
    """A wrong single_flight is refused when decorating, naming the option."""
    with pytest.raises(ConfigurationError, match="single_flight"):
        instructor_cache(MemoryCache(), single_flight=value)  # type: ignore[arg-type]


def test_first_concurrent_calls_compute_one_key() -> None:
    """Threads building a function's first keys at once agree (linecache raced, keys split)."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        return _answer(text)

    start = threading.Barrier(8)

    def first_key(_: int) -> str:
        start.wait()
        return extract.cache_key(TEXTS[0])

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(first_key, range(8)))
    assert keys == {extract.cache_key(TEXTS[0])}


CALL_IN_A_CHILD_FORKED_MID_FLIGHT = """
import os, signal, sys, threading, time, warnings
from pydantic import BaseModel
from instructor_cache import CircuitBreaker, MemoryCache, instructor_cache

warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: what we test

class Doc(BaseModel):
    text: str

inside = threading.Event()

@instructor_cache(MemoryCache(), single_flight=60)
def extract(text: str) -> Doc:
    inside.set()
    time.sleep(3 if os.getpid() == parent else 0)
    return Doc(text=text)

parent = os.getpid()
threading.Thread(target=extract, args=("x",)).start()
inside.wait()
pid = os.fork()  # while the parent's call of "x" is in flight
if pid == 0:
    extract("x")  # the child has no such call running: it must not wait for one
    os._exit(0)
""" + waiting_for_the_child(2.5, "the child waited on its parent's call")


def test_a_child_forked_mid_flight_does_not_wait_on_its_parents_call() -> None:
    """A flight inherited through fork() has no leader in the child: the child computes at once."""
    run = subprocess.run(
        [sys.executable, "-c", CALL_IN_A_CHILD_FORKED_MID_FLIGHT],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-1500:]


async def test_a_task_spawned_by_a_leader_waits_like_anyone_for_a_later_flight() -> None:
    """A task started while a call led an input is not that call: later it waits, not pays."""
    calls: list[str] = []
    background: list[asyncio.Task[UserDetail]] = []

    @instructor_cache(MemoryCache(), ignore=("calls", "background"))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        if len(calls) == 1:  # the first call leaves a task behind that asks again later

            async def later() -> UserDetail:
                await asyncio.sleep(0.2)
                return await extract(text)

            background.append(asyncio.create_task(later()))
        await asyncio.sleep(0.4 if len(calls) == 2 else 0)
        return _answer(text)

    await extract(TEXTS[0])
    await extract.invalidate(TEXTS[0])
    second = asyncio.create_task(extract(TEXTS[0]))  # computes for 0.4 s
    assert await background[0] == _answer(TEXTS[0])  # asked at 0.2 s: waited for the second
    assert await second == _answer(TEXTS[0])
    assert calls == [TEXTS[0], TEXTS[0]]


async def test_waiters_on_a_dead_store_get_their_own_copies() -> None:
    """With the breaker open, identical calls still pay once, and each gets its own model."""
    calls: list[str] = []
    breaker = CircuitBreaker(failures=1, cooldown=3600)
    breaker.failed()  # open: the store is skipped

    @instructor_cache(MemoryCache(), circuit_breaker=breaker, ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        await asyncio.sleep(0.05)
        return _answer(text)

    first, second, third = await asyncio.gather(*(extract(TEXTS[0]) for _ in range(3)))
    assert calls == [TEXTS[0]]
    assert first == second == third == _answer(TEXTS[0])
    second.age = -1
    assert third.age == 20
