"""Events: one record per decorated call, per decorator and global, for metrics exporters."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from instructor_cache import (
    CacheEvent,
    DiskCache,
    MemoryCache,
    TieredCache,
    add_event_hook,
    cache_control,
    instructor_cache,
    pricing,
    remove_event_hook,
)
from instructor_cache._decorator import MEMO_ATTRIBUTE
from instructor_cache.backends import Store
from instructor_cache.errors import ConfigurationError
from tests._stores import BrokenStore
from tests.conftest import FakeLLM, UserDetail


@pytest.fixture
def events() -> Iterator[list[CacheEvent]]:
    """A global hook collecting every event while the test runs."""
    seen: list[CacheEvent] = []
    add_event_hook(seen.append)
    yield seen
    remove_event_hook(seen.append)


def test_a_hook_sees_a_miss_then_a_hit_with_the_key_and_what_the_hit_saved(llm: FakeLLM) -> None:
    """The decorator's on_event gets each call's outcome, key, latency and the original duration."""
    seen: list[CacheEvent] = []

    @instructor_cache(MemoryCache(), ignore=("llm",), on_event=seen.append)
    def extract(text: str) -> UserDetail:
        time.sleep(0.02)
        return llm(text)

    extract("Ann is 31")
    extract("Ann is 31")
    assert [e.outcome for e in seen] == ["miss", "hit"]
    assert {e.key for e in seen} == {extract.cache_key("Ann is 31")}
    assert all(e.function.endswith("extract") for e in seen)
    miss, hit = seen
    assert miss.latency >= 0.02 > hit.latency
    assert miss.saved.seconds == 0.0
    assert hit.saved.seconds == pytest.approx(extract.cache_info().time_saved)
    assert hit.saved.seconds >= 0.02
    assert hit.tier is None
    assert not hit.raised


def test_a_global_hook_added_after_decoration_sees_calls_until_removed(llm: FakeLLM) -> None:
    """add_event_hook reaches functions decorated before it; remove_event_hook stops it."""

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("Bo is 2")
    seen: list[CacheEvent] = []
    add_event_hook(seen.append)
    try:
        extract("Bo is 2")
        extract("Cy is 3")
    finally:
        remove_event_hook(seen.append)
    extract("Cy is 3")
    assert [e.outcome for e in seen] == ["hit", "miss"]
    with pytest.raises(ValueError, match="not an event hook"):
        remove_event_hook(seen.append)


def test_a_function_without_hooks_stops_watching_when_the_last_global_hook_goes(
    llm: FakeLLM,
) -> None:
    """Only a function with a hook to call runs its calls in a record; removing the hook ends it."""

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def plain(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(MemoryCache(), ignore=("llm",), on_event=print)
    def watched(text: str) -> UserDetail:
        return llm(text)

    plain_watch, own_watch = (getattr(f, MEMO_ATTRIBUTE).watch for f in (plain, watched))
    assert not plain_watch.on
    assert own_watch.on
    add_event_hook(print)
    assert plain_watch.on
    assert all(c.watched for c in plain_watch.counters)
    remove_event_hook(print)
    assert not plain_watch.on
    assert not any(c.watched for c in plain_watch.counters)
    assert own_watch.on


def test_a_hook_that_raises_is_logged_and_the_call_still_answers(
    llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """Metrics must never break the app: the hook's exception is logged, the result returned."""

    def broken(event: CacheEvent) -> None:
        raise RuntimeError("exporter down")

    @instructor_cache(MemoryCache(), ignore=("llm",), on_event=broken)
    def extract(text: str) -> UserDetail:
        return llm(text)

    with caplog.at_level(logging.WARNING):
        assert extract("Di is 4") == UserDetail(name="Di", age=4)
        assert extract("Di is 4") == UserDetail(name="Di", age=4)
    assert "exporter down" in caplog.text
    assert len(llm.calls) == 1


def test_on_event_must_be_callable() -> None:
    """A wrong on_event is refused when decorating, not on the first call."""
    with pytest.raises(ConfigurationError, match="on_event"):

        @instructor_cache(MemoryCache(), on_event="print")  # type: ignore[arg-type]
        def extract(text: str) -> UserDetail:
            raise AssertionError


def test_an_unreadable_entry_is_an_error_outcome(llm: FakeLLM, events: list[CacheEvent]) -> None:
    """A corrupt entry makes the function run: the event says error, not miss."""
    store = MemoryCache()

    @instructor_cache(store, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    store.set(extract.cache_key("Ed is 5"), '{"v": 2, "value": "garbage"')
    extract("Ed is 5")
    extract("Ed is 5")
    assert [e.outcome for e in events] == ["error", "hit"]


def test_a_failing_store_is_an_error_then_a_bypass_once_its_breaker_opens(
    llm: FakeLLM, events: list[CacheEvent]
) -> None:
    """Failed reads are errors; calls the open breaker keeps away from the store are bypasses."""

    @instructor_cache(BrokenStore(), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    for _ in range(4):
        assert extract("Fa is 6") == UserDetail(name="Fa", age=6)
    assert [e.outcome for e in events] == ["error", "error", "bypass", "bypass"]


def test_a_tiered_hit_names_the_tier_that_served_it(
    llm: FakeLLM, tmp_path: Path, events: list[CacheEvent]
) -> None:
    """tier is the index into cache_info().tiers of the store that answered."""
    memory, disk = MemoryCache(), DiskCache(tmp_path)
    store = TieredCache(memory, disk)

    @instructor_cache(store, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("Gu is 7")
    extract("Gu is 7")
    memory.clear_prefix("")
    extract("Gu is 7")
    assert [(e.outcome, e.tier) for e in events] == [("miss", None), ("hit", 0), ("hit", 1)]
    disk.close()


def test_a_hit_from_a_tiered_store_a_block_routes_to_names_its_tier(
    llm: FakeLLM, tmp_path: Path, events: list[CacheEvent]
) -> None:
    """Routed tiers are watched too: while the route is kept, and for hooks added later."""
    memory, disk = MemoryCache(), DiskCache(tmp_path)
    routed = TieredCache(memory, disk)

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    with cache_control(store=routed):
        extract("Ri is 9")
        extract("Ri is 9")
        memory.clear_prefix("")
        extract("Ri is 9")
    assert [(e.outcome, e.tier) for e in events] == [("miss", None), ("hit", 0), ("hit", 1)]
    disk.close()


def test_calls_inside_a_cached_function_report_as_their_own_events(
    llm: FakeLLM, events: list[CacheEvent]
) -> None:
    """A cached call made by the function is its own event and does not change its caller's."""

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def inner(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def outer(text: str) -> UserDetail:
        inner(text)
        return inner(text)  # a hit of inner, inside a miss of outer

    outer("Hu is 8")
    assert [(e.function.rsplit(".", 1)[-1], e.outcome) for e in events] == [
        ("inner", "miss"),
        ("inner", "hit"),
        ("outer", "miss"),
    ]


def test_a_call_that_raises_reports_a_raised_miss(llm: FakeLLM, events: list[CacheEvent]) -> None:
    """The function's own exception still produces its event, marked raised, and propagates."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        raise ValueError("provider said no")

    with pytest.raises(ValueError, match="provider said no"):
        extract("Io is 9")
    assert [(e.outcome, e.raised) for e in events] == [("miss", True)]


def test_threads_waiting_on_one_call_report_hits(events: list[CacheEvent]) -> None:
    """Single-flight: the one call that ran is the miss, the callers that waited for it are hits."""
    started = threading.Event()

    @instructor_cache(MemoryCache(), ignore=("started",))
    def extract(text: str) -> UserDetail:
        started.set()
        time.sleep(0.2)
        return UserDetail(name=text, age=1)

    threads = [threading.Thread(target=extract, args=("Jo",)) for _ in range(4)]
    threads[0].start()
    started.wait(5)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(e.outcome for e in events) == ["hit", "hit", "hit", "miss"]


async def test_concurrent_tasks_each_report_their_own_outcome(
    events: list[CacheEvent],
) -> None:
    """Records live in each task's context: a hit and a miss running at once are not mixed up."""

    @instructor_cache(MemoryCache())
    async def extract(text: str) -> UserDetail:
        await asyncio.sleep(0.05)
        return UserDetail(name=text, age=len(text))

    await extract("Ka")
    events.clear()
    await asyncio.gather(extract("Ka"), extract("Lee"), extract("Ka"), extract("Mo"))
    outcomes = {e.key: e.outcome for e in events}
    assert outcomes == {
        extract.cache_key("Ka"): "hit",
        extract.cache_key("Lee"): "miss",
        extract.cache_key("Mo"): "miss",
    }
    assert len(events) == 4


def test_a_stream_reports_once_it_ends_however_it_ends(events: list[CacheEvent]) -> None:
    """A stream's event comes when it completes, is closed early or fails, with its outcome."""

    @instructor_cache(MemoryCache())
    def users(text: str) -> Iterator[UserDetail]:
        for age in range(3):
            if text == "boom" and age == 1:
                raise RuntimeError("stream broke")
            yield UserDetail(name=text, age=age)

    assert len(list(users("Ann"))) == 3
    assert [e.outcome for e in events] == ["miss"]
    assert len(list(users("Ann"))) == 3
    early = users("Bo")
    next(early)
    assert len(events) == 2  # not before the stream ends
    early.close()
    with pytest.raises(RuntimeError, match="stream broke"):
        list(users("boom"))
    assert [(e.outcome, e.raised) for e in events] == [
        ("miss", False),
        ("hit", False),
        ("miss", False),
        ("miss", True),
    ]
    assert events[1].saved.seconds == pytest.approx(users.cache_info().time_saved)
    assert events[1].key == users.cache_key("Ann")


async def test_an_async_stream_reports_its_hit_and_miss(events: list[CacheEvent]) -> None:
    """Async generator functions report like sync ones, once consumed."""

    @instructor_cache(MemoryCache())
    async def users(text: str) -> AsyncIterator[UserDetail]:
        for age in range(2):
            await asyncio.sleep(0)
            yield UserDetail(name=text, age=age)

    assert [u.age async for u in users("Cy")] == [0, 1]
    assert [u.age async for u in users("Cy")] == [0, 1]
    assert [e.outcome for e in events] == ["miss", "hit"]


def test_a_hit_event_carries_the_original_calls_tokens_and_cost(events: list[CacheEvent]) -> None:
    """saved holds the tokens and price of the call behind the entry, as cache_info() adds up."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        user = UserDetail(name=text, age=1)
        usage = {"prompt_tokens": 900, "completion_tokens": 100, "total_tokens": 1000}
        object.__setattr__(user, "_raw_response", {"model": "gpt-4o-mini", "usage": usage})
        return user

    extract("Ann")
    extract("Ann")
    hit = events[-1]
    price = pricing.price_of("gpt-4o-mini")
    assert price is not None
    assert hit.outcome == "hit"
    assert hit.saved.tokens == 1000 == extract.cache_info().tokens_saved
    assert hit.saved.cost == pytest.approx((900 * price.input + 100 * price.output) / 1e6)
    assert hit.saved.cost == pytest.approx(extract.cache_info().cost_saved)


def test_a_miss_then_a_hit_report_alike_on_every_store(
    backend: Store, llm: FakeLLM, events: list[CacheEvent]
) -> None:
    """Each store's hit reports its key and the original call's duration as saved."""

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("Jo is 4")
    extract("Jo is 4")
    key = extract.cache_key("Jo is 4")
    assert [(e.outcome, e.key) for e in events] == [("miss", key), ("hit", key)]
    assert events[1].saved.seconds == pytest.approx(extract.cache_info().time_saved)
    extract.cache_clear()
