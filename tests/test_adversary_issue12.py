"""Adversarial reproducers for issue 12 (one call per distinct input): each shows a bug."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from instructor_cache import DiskCache, MemoryCache, RedisCache, instructor_cache
from instructor_cache.backends import Store
from tests._fakes import UserDetail
from tests._stores import AsyncDictStore, aclose_clients

TEXTS = [f"user{i} is {20 + i}" for i in range(10)]


def _answer(text: str) -> UserDetail:
    name, _, age = text.partition(" is ")
    return UserDetail(name=name, age=int(age))


async def test_an_amap_cancelled_again_while_winding_down_leaves_no_flight_behind() -> None:
    """A batch cancelled a second time while it cancels its running calls still lands the flights
    of the calls it finished, so a later call of those inputs does not wait out single_flight."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), single_flight=30, ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        if text == TEXTS[1]:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                await asyncio.sleep(0.3)  # cleanup on cancel (closing a stream) takes a moment
                raise
        return _answer(text)

    batch = asyncio.ensure_future(extract.amap([TEXTS[0], TEXTS[1]]))
    while len(calls) < 2:  # the fast item has finished, the slow one is running
        await asyncio.sleep(0.01)
    batch.cancel()
    await asyncio.sleep(0.1)  # the batch is now cancelling the slow call and waiting for it
    batch.cancel()  # cancelled again, as anyio's cancel scopes do at every await
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert await asyncio.wait_for(extract(TEXTS[0]), timeout=10) == _answer(TEXTS[0])
    assert calls.count(TEXTS[0]) == 1  # the finished call's result was stored, not paid again


def test_a_flight_that_started_before_a_refresh_does_not_overwrite_the_refreshed_entry() -> None:
    """A call computing when refresh() stores a new result must not store its older one over it,
    or every later call is answered with the result the refresh replaced."""
    version = [1]
    started, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), ignore=("version", "started", "release"))
    def extract(text: str) -> UserDetail:
        answer = version[0]
        if answer == 1:
            started.set()
            release.wait(10)
        return UserDetail(name=text, age=answer)

    with ThreadPoolExecutor(1) as pool:
        older = pool.submit(extract, "Ann")
        assert started.wait(10)
        version[0] = 2  # the provider's answer changes; the user refreshes
        assert extract.refresh("Ann") == UserDetail(name="Ann", age=2)
        release.set()
        assert older.result(10) == UserDetail(name="Ann", age=1)
    assert extract("Ann") == UserDetail(name="Ann", age=2)


@pytest.fixture(params=["disk", "redis"])
def locking_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A store with a lock shared between processes."""
    if request.param == "disk":
        return lambda: DiskCache(tmp_path / "cache")
    url = request.getfixturevalue("redis_url")
    return lambda: RedisCache(url, prefix=f"test:{uuid.uuid4().hex}:")


async def test_a_waiter_behind_a_leader_that_took_over_a_dead_holders_lock_does_not_pay_too(
    locking_store: Callable[[], Store],
) -> None:
    """When another process died holding the lock, the call that takes it over computes once:
    the calls waiting on it in this process must not time out meanwhile and pay again."""
    calls: list[str] = []
    store = locking_store()

    @instructor_cache(store, single_flight=1, ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        await asyncio.sleep(0.5)
        return _answer(text)

    # Another process took the lock (with the same single_flight) and was SIGKILLed.
    assert store.lock(extract.cache_key(TEXTS[0]), "a-killed-process", 1.0)  # type: ignore[attr-defined]
    results = await asyncio.gather(extract(TEXTS[0]), extract(TEXTS[0]))
    await aclose_clients(store)
    assert results == [_answer(TEXTS[0])] * 2
    assert calls == [TEXTS[0]]  # one process died: one call replaces its, not two


def test_a_call_that_recurses_through_a_worker_thread_waits_its_bound_then_computes() -> None:
    """Known limit, documented in README: a function that calls itself with the same input on a
    plain worker thread (which does not inherit the context that marks the leader) cannot be told
    from another caller, so the inner call waits single_flight out, then computes: bounded."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), single_flight=1, ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        if len(calls) == 1:
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(extract, text).result()
        return _answer(text)

    started = time.monotonic()
    assert extract(TEXTS[0]) == _answer(TEXTS[0])
    assert 0.9 < time.monotonic() - started < 5  # its bound, then the call; never a hang
    assert calls == [TEXTS[0], TEXTS[0]]


def test_a_map_interrupted_again_while_winding_down_leaves_no_flight_behind() -> None:
    """A second Ctrl-C while map waits for its running calls still lands the flights of the calls
    it finished, so a later call of those inputs does not wait out single_flight."""
    calls: list[str] = []
    main = threading.get_ident()

    @instructor_cache(MemoryCache(), single_flight=30, ignore=("calls", "main"))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        if text == TEXTS[1]:
            time.sleep(0.3)  # the fast item has finished by now
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C ...
            time.sleep(0.3)
            signal.pthread_kill(main, signal.SIGINT)  # ... and again, while map winds down
            time.sleep(0.3)
        return _answer(text)

    with pytest.raises(KeyboardInterrupt):
        extract.map([TEXTS[0], TEXTS[1]], concurrency=2)
    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(extract, TEXTS[0])
        assert later.result(timeout=10) == _answer(TEXTS[0])


def test_a_huge_single_flight_does_not_crash_a_waiting_thread() -> None:
    """single_flight accepts any finite number of seconds; a thread waiting that long must not
    raise OverflowError instead of getting the result."""
    started, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), single_flight=1e10, ignore=("started", "release"))
    def extract(text: str) -> UserDetail:
        started.set()
        release.wait(10)
        return _answer(text)

    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(extract, TEXTS[0])
        assert started.wait(10)
        follower = pool.submit(extract, TEXTS[0])
        time.sleep(0.1)  # the follower is waiting on the leader's flight
        release.set()
        assert leader.result(10) == _answer(TEXTS[0])
        assert follower.result(10) == _answer(TEXTS[0])


def test_a_function_of_one_keyword_only_parameter_maps_its_items() -> None:
    """For a function of one parameter each item is that argument (README), also when the
    parameter is keyword-only; today every item fails with TypeError, dicts included."""

    @instructor_cache(MemoryCache())
    def extract(*, text: str) -> UserDetail:
        return _answer(text)

    assert extract.map(TEXTS[:2]) == [_answer(t) for t in TEXTS[:2]]


async def test_a_follower_cancelled_as_its_flight_lands_is_cancelled() -> None:
    """A waiting task cancelled in the tick its flight lands must end cancelled, not swallow the
    cancellation and return (asyncio.wait_for does that on Python 3.11)."""
    started, returned = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), ignore=("started",))
    async def extract(text: str) -> UserDetail:
        started.set()
        await asyncio.sleep(0.2)
        return _answer(text)

    def lead() -> None:  # the leader, on an event loop of another thread
        asyncio.run(extract(TEXTS[0]))
        returned.set()

    leader = threading.Thread(target=lead)
    leader.start()
    assert started.wait(10)
    follower = asyncio.create_task(extract(TEXTS[0]))
    await asyncio.sleep(0.05)  # the follower waits on the leader's flight

    def cancel_once_landed() -> None:  # holds this loop until the flight has landed
        assert returned.wait(10)
        follower.cancel()

    asyncio.get_running_loop().call_soon(cancel_once_landed)
    with pytest.raises(asyncio.CancelledError):
        await follower
    leader.join(10)


def test_a_flight_that_started_before_an_invalidation_does_not_store_its_result_back() -> None:
    """A call computing when invalidate() removes the entry must not store its result after it,
    or the entry the user invalidated comes back from a call that began before."""
    version = [1]
    started, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), ignore=("version", "started", "release"))
    def extract(text: str) -> UserDetail:
        answer = version[0]
        if answer == 1:
            started.set()
            release.wait(10)
        return UserDetail(name=text, age=answer)

    with ThreadPoolExecutor(1) as pool:
        older = pool.submit(extract, "Ann")
        assert started.wait(10)
        version[0] = 2  # the provider's answer changes; the user invalidates
        extract.invalidate("Ann")
        release.set()
        assert older.result(10) == UserDetail(name="Ann", age=1)
    assert extract("Ann") == UserDetail(name="Ann", age=2)


def test_a_process_forked_while_a_call_computes_does_not_wait_on_that_call() -> None:
    """A child forked while a thread of its parent computes a call has no such thread: its own
    calls of that input must compute at once, not wait single_flight out on a flight that never
    lands there (each of them, for ever)."""
    started, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), single_flight=30, ignore=("started", "release"))
    def extract(text: str) -> UserDetail:
        started.set()
        release.wait(10)
        return _answer(text)

    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(extract, TEXTS[0])
        assert started.wait(10)
        with warnings.catch_warnings():  # 3.12+ warns of fork() in a process with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            release.set()  # the child's copy: a call computed here need not block
            began = time.monotonic()
            right = extract(TEXTS[0]) == _answer(TEXTS[0])
            os._exit(0 if right and time.monotonic() - began < 5 else 1)
        deadline = time.monotonic() + 15
        while (finished := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if finished[0] == 0:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        release.set()
        assert leader.result(10) == _answer(TEXTS[0])
    assert finished[0] == child, "the child still waited after 15 s"
    assert os.waitstatus_to_exitcode(finished[1]) == 0


class _SlowWrites(AsyncDictStore):
    """A user's async store whose writes take a while (a far, busy server)."""

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        await asyncio.sleep(0.3)
        self.set(key, value, ttl)


async def test_a_call_cancelled_while_its_paid_result_is_stored_still_stores_it() -> None:
    """A caller that gives up (a timeout) after the provider answered, while the result is being
    written, must not lose that paid result: the next call is a hit, not a second payment."""
    calls: list[str] = []
    store = _SlowWrites()

    @instructor_cache(store, ignore=("calls",))
    async def extract(text: str) -> UserDetail:
        calls.append(text)
        return _answer(text)

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(extract(TEXTS[0]), timeout=0.1)
    await asyncio.sleep(0.5)  # the write would have finished by now
    assert await extract(TEXTS[0]) == _answer(TEXTS[0])
    assert calls == [TEXTS[0]]


def test_a_flight_that_started_before_cache_clear_does_not_store_its_result_back() -> None:
    """A call computing when cache_clear() empties the cache must not store its result after it,
    or an entry from before the clear is served after it."""
    version = [1]
    started, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), ignore=("version", "started", "release"))
    def extract(text: str) -> UserDetail:
        answer = version[0]
        if answer == 1:
            started.set()
            release.wait(10)
        return UserDetail(name=text, age=answer)

    with ThreadPoolExecutor(1) as pool:
        older = pool.submit(extract, "Ann")
        assert started.wait(10)
        version[0] = 2  # a new model, say: the user clears the cache
        extract.cache_clear()
        release.set()
        assert older.result(10) == UserDetail(name="Ann", age=1)
    assert extract("Ann") == UserDetail(name="Ann", age=2)


HUGE = 16_000  # distinct inputs; at 8 calls at a time each taking 1 ms, some 2 s of calls


async def test_a_huge_amap_takes_time_linear_in_its_items() -> None:
    """amap of many distinct misses must not rewatch every unfinished call each time one
    finishes (quadratic: 16,000 items took some 30 s where 2 s of calls were needed)."""

    @instructor_cache(MemoryCache(maxsize=HUGE))
    async def extract(text: str) -> UserDetail:
        await asyncio.sleep(0.001)
        return _answer(text)

    texts = [f"user{i} is {i % 100}" for i in range(HUGE)]
    began = time.monotonic()
    assert await extract.amap(texts) == [_answer(t) for t in texts]
    assert time.monotonic() - began < 20  # generous: linear takes 2-3 s here, quadratic 30-50


def test_a_huge_map_takes_time_linear_in_its_items() -> None:
    """map of many distinct misses must not rewatch every unfinished call each time one
    finishes (quadratic: 16,000 items took some 30 s where 2 s of calls were needed)."""

    @instructor_cache(MemoryCache(maxsize=HUGE))
    def extract(text: str) -> UserDetail:
        time.sleep(0.001)
        return _answer(text)

    texts = [f"user{i} is {i % 100}" for i in range(HUGE)]
    began = time.monotonic()
    assert extract.map(texts) == [_answer(t) for t in texts]
    assert time.monotonic() - began < 20  # generous: linear takes 2-3 s here, quadratic 30-50


class _LockingStore(AsyncDictStore):
    """A user's async store with a lock shared between processes; its second read is slow."""

    def __init__(self) -> None:
        super().__init__()
        self.locks: dict[str, str] = {}
        self.reads = 0
        self.rechecking = asyncio.Event()

    async def aget(self, key: str) -> str | None:
        self.reads += 1
        if self.reads == 2:  # the recheck of a leader that has just taken the lock
            self.rechecking.set()
            await asyncio.sleep(5)
        return self.get(key)

    def lock(self, key: str, token: str, ttl: float) -> bool:
        return self.locks.setdefault(key, token) == token

    def unlock(self, key: str, token: str) -> bool:
        if self.locks.get(key) != token:
            return False
        del self.locks[key]
        return True

    async def alock(self, key: str, token: str, ttl: float) -> bool:
        return self.lock(key, token, ttl)

    async def aunlock(self, key: str, token: str) -> bool:
        return self.unlock(key, token)


async def test_a_leader_cancelled_right_after_taking_the_lock_releases_it() -> None:
    """A leader cancelled while it reads the entry again under the lock it just took must release
    that lock, or every call of its input, here and in other processes, waits single_flight out
    on a lock no one holds any more."""
    store = _LockingStore()

    @instructor_cache(store, single_flight=30)
    async def extract(text: str) -> UserDetail:
        return _answer(text)

    first = asyncio.create_task(extract(TEXTS[0]))
    await store.rechecking.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(extract(TEXTS[0]), timeout=10) == _answer(TEXTS[0])
    assert store.locks == {}


def test_waiters_that_wait_out_a_hung_call_pay_once_between_them() -> None:
    """When the call they wait on outlasts single_flight (a hung provider, a long reasoning
    call), the waiters that give up on it must not all pay at once: one takes over, the others
    wait for it."""
    calls: list[str] = []
    hang, arrived = threading.Event(), threading.Barrier(5)

    @instructor_cache(MemoryCache(), single_flight=1, ignore=("calls", "hang"))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        if len(calls) == 1:
            hang.wait(20)  # the provider does not answer
        time.sleep(0.2)
        return _answer(text)

    def waiter() -> UserDetail:
        arrived.wait()
        return extract(TEXTS[0])

    with ThreadPoolExecutor(6) as pool:
        hung = pool.submit(extract, TEXTS[0])
        time.sleep(0.1)  # it leads
        waiters = [pool.submit(waiter) for _ in range(5)]
        results = [w.result(10) for w in waiters]
        hang.set()
        hung.result(10)
    assert results == [_answer(TEXTS[0])] * 5
    assert len(calls) == 2  # the hung call, and one that took over from it
