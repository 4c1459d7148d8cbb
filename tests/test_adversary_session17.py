"""Adversary reproducers (session 17: per-call control, refresh tracking, streams, under load)."""

from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import BaseModel

from instructor_cache import MemoryCache, TieredCache, _flight, cache_control, instructor_cache

# What the test functions capture to pause a call: never part of an answer.
_GATES = ("source", "entered", "release")


class User(BaseModel):
    name: str
    age: int


def _in_thread(target: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(target(*args)), name="slow")
    thread.start()
    return thread, out


def test_without_single_flight_a_call_begun_before_a_refresh_does_not_store_over_it() -> None:
    """A refresh's newer answer must survive a slower call of the same key begun before it."""
    source = {"age": 1}
    entered, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), single_flight=False, ignore=_GATES)
    def extract(text: str) -> User:
        age = source["age"]
        if threading.current_thread().name == "slow":
            entered.set()
            assert release.wait(10)
        return User(name=text, age=age)

    thread, out = _in_thread(extract, "Ann")
    assert entered.wait(10)
    source["age"] = 2
    assert extract.refresh("Ann").age == 2
    release.set()
    thread.join(10)
    assert out[0].age == 1  # the slow call read the source before the refresh
    assert extract("Ann").age == 2


def test_without_single_flight_a_call_begun_before_invalidate_does_not_store_after_it() -> None:
    """An invalidation must outdate a call of that key still computing, as with single-flight."""
    source = {"age": 1}
    entered, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), single_flight=False, ignore=_GATES)
    def extract(text: str) -> User:
        age = source["age"]
        if threading.current_thread().name == "slow":
            entered.set()
            assert release.wait(10)
        return User(name=text, age=age)

    thread, _ = _in_thread(extract, "Ann")
    assert entered.wait(10)
    source["age"] = 2
    extract.invalidate("Ann")
    release.set()
    thread.join(10)
    assert extract("Ann").age == 2


def _waiting_or_done(key: str, caller: threading.Thread) -> None:
    """Until ``caller`` waits on the flight of ``key`` or has finished: no guessed delay."""
    deadline = time.monotonic() + 10
    while caller.is_alive() and time.monotonic() < deadline:
        flights = [table._flying.get(key) for table in list(_flight._EVERY_TABLE)]
        if any(flight is not None and flight._wakers for flight in flights):
            return
        time.sleep(0.001)


def _joined_after(outdate: str) -> None:
    """Lead a slow call, ``outdate`` its key, then call again: the new call must not get the old
    answer by joining the outdated flight."""
    source = {"age": 1}
    entered, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), ignore=_GATES)
    def extract(text: str) -> User:
        age = source["age"]
        if threading.current_thread().name == "slow":
            entered.set()
            assert release.wait(10)
        return User(name=text, age=age)

    slow, _ = _in_thread(extract, "Ann")
    assert entered.wait(10)
    source["age"] = 2
    if outdate == "invalidate":
        extract.invalidate("Ann")
    else:
        extract.cache_clear()
    later: list[User] = []
    caller = threading.Thread(target=lambda: later.append(extract("Ann")))
    caller.start()
    _waiting_or_done(extract.cache_key("Ann"), caller)
    release.set()
    slow.join(10)
    caller.join(10)
    assert later[0].age == 2


def test_a_call_made_after_invalidate_does_not_get_the_answer_computing_before_it() -> None:
    """After invalidate returns, a call of that key never gets an answer begun before it."""
    _joined_after("invalidate")


def test_a_call_made_after_cache_clear_does_not_get_the_answer_computing_before_it() -> None:
    """After cache_clear returns, a call never gets an answer begun before it."""
    _joined_after("cache_clear")


def test_a_call_made_after_a_refresh_that_stored_nothing_does_not_get_the_older_answer() -> None:
    """A refresh whose answer is not kept drops the entry; a call after it must not get older."""
    source = {"age": 1}
    entered, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), ignore=_GATES, cache_if=lambda user: user.age != 2)
    def extract(text: str) -> User:
        age = source["age"]
        if threading.current_thread().name == "slow":
            entered.set()
            assert release.wait(10)
        return User(name=text, age=age)

    slow, _ = _in_thread(extract, "Ann")
    assert entered.wait(10)
    source["age"] = 2
    assert extract.refresh("Ann").age == 2
    later: list[User] = []
    caller = threading.Thread(target=lambda: later.append(extract("Ann")))
    caller.start()
    _waiting_or_done(extract.cache_key("Ann"), caller)
    release.set()
    slow.join(10)
    caller.join(10)
    assert later[0].age == 2


def test_a_new_tiered_store_at_a_dropped_ones_address_is_not_served_its_entries() -> None:
    """A store routed to must be read itself, never a dropped store that had its id."""
    source = {"age": 1}

    @instructor_cache(MemoryCache(), ignore=("source",))
    def extract(text: str) -> User:
        return User(name=text, age=source["age"])

    for _ in range(200):  # CPython hands a freed object's address to the next one of its size
        first = TieredCache(MemoryCache(), MemoryCache())
        with cache_control(store=first):
            extract("Ann")
        address, tiers = id(first), (MemoryCache(), MemoryCache())
        del first
        second = TieredCache(*tiers)
        if id(second) != address:
            continue
        source["age"] += 1  # the second store is empty: its call must compute the new answer
        with cache_control(store=second):
            assert extract("Ann").age == source["age"]


class _PausingCache(MemoryCache):
    """A memory store whose reads in the thread named ``slow`` pause once they have missed."""

    def __init__(self) -> None:
        super().__init__()
        self.missed, self.resume = threading.Event(), threading.Event()

    def get(self, key: str) -> str | None:
        text = super().get(key)
        if text is None and threading.current_thread().name == "slow":
            self.missed.set()
            assert self.resume.wait(10)
        return text


def test_a_call_that_missed_just_before_a_refresh_stored_is_served_the_refresh() -> None:
    """A miss followed by a refresh's write reads again before paying, as after a flight."""
    store, paid = _PausingCache(), []

    @instructor_cache(store, ignore=("paid",))
    def extract(text: str) -> User:
        paid.append(text)
        return User(name=text, age=len(paid))

    slow, out = _in_thread(extract, "Ann")
    assert store.missed.wait(10)
    refreshed = extract.refresh("Ann")
    store.resume.set()
    slow.join(10)
    assert out[0] == refreshed
    assert len(paid) == 1
