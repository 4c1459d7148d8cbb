"""Per-call control: modes, TTL and store for the calls made inside a ``cache_control`` block."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from instructor_cache import (
    CacheEvent,
    DiskCache,
    MemoryCache,
    Store,
    TieredCache,
    _events,
    cache_control,
    instructor_cache,
    track_calls,
)
from instructor_cache._control import set_default_control
from instructor_cache.errors import CacheMissError, ConfigurationError
from tests._fakes import Counting, FakeLLM, UserDetail
from tests._subprocess import json_under_hash_seed


def sync_and_async(store: MemoryCache, llm: Counting, **options: Any) -> tuple[Any, Any]:
    """The same function decorated over ``store``, sync and async."""

    @instructor_cache(store, ignore=("llm",), **options)
    def extract(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(store, ignore=("llm",), **options)
    async def aextract(text: str) -> UserDetail:
        return llm(text)

    return extract, aextract


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Callable[[Any, str], UserDetail]:
    """Call a decorated function, awaiting it when it is async (a fresh loop per call)."""
    if request.param == "sync":
        return lambda fn, text: fn(text)
    return lambda fn, text: asyncio.run(fn(text))


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
def pick(request: pytest.FixtureRequest, counting: Counting) -> Callable[[MemoryCache], Any]:
    """The sync or async function (as ``call`` is), decorated over a given store."""
    flavour = request.node.callspec.params["call"]

    def make(store: MemoryCache, **options: Any) -> Any:
        extract, aextract = sync_and_async(store, counting, **options)
        return extract if flavour == "sync" else aextract

    return make


def test_off_calls_the_function_without_reading_or_writing(
    call: Any, pick: Any, counting: Counting
) -> None:
    """Mode off pays every call, even one that is cached, stores nothing, and reports a bypass."""
    store = MemoryCache()
    fn = pick(store)
    first = call(fn, "Ann")
    with track_calls() as calls, cache_control("off"):
        assert call(fn, "Ann").age == 2
        assert call(fn, "Bob").age == 3
    assert [c.outcome for c in calls] == ["bypass", "bypass"]
    assert store.get(fn.cache_key("Bob")) is None
    assert call(fn, "Ann") == first  # the entry is still the first answer


def test_read_only_serves_hits_and_stores_nothing(call: Any, pick: Any, counting: Counting) -> None:
    """Read-only serves a cached answer and pays a miss each time without storing it."""
    store = MemoryCache()
    fn = pick(store)
    first = call(fn, "Ann")
    with cache_control("read-only"):
        assert call(fn, "Ann") == first
        assert call(fn, "Bob").age == 2
        assert call(fn, "Bob").age == 3
    assert counting.calls == ["Ann", "Bob", "Bob"]
    assert store.get(fn.cache_key("Bob")) is None


def test_write_only_pays_and_stores_never_serving_the_entry(
    call: Any, pick: Any, counting: Counting
) -> None:
    """Write-only is a refresh: the function runs although cached, and its answer is stored."""
    fn = pick(MemoryCache())
    call(fn, "Ann")
    with cache_control("write-only"):
        assert call(fn, "Ann").age == 2
        assert call(fn, "Ann").age == 3
    assert call(fn, "Ann").age == 3  # served: the last write
    assert counting.calls == ["Ann"] * 3


def test_replay_serves_hits_and_a_miss_raises_naming_the_call(
    call: Any, pick: Any, counting: Counting
) -> None:
    """Replay serves what is stored; a miss raises CacheMissError naming function, args and key."""
    fn = pick(MemoryCache())
    first = call(fn, "Ann")
    with cache_control("replay"):
        assert call(fn, "Ann") == first
        with pytest.raises(CacheMissError) as raised:
            call(fn, "Bob")
    assert counting.calls == ["Ann"]
    message = str(raised.value)
    assert "extract(text='Bob')" in message
    assert fn.cache_key("Bob") in message
    assert raised.value.key == fn.cache_key("Bob")
    assert isinstance(raised.value, LookupError)


def test_replay_message_truncates_a_huge_argument(counting: Counting) -> None:
    """A long argument is cut in the message, so the error stays readable."""
    extract, _ = sync_and_async(MemoryCache(), counting)
    with cache_control("replay"), pytest.raises(CacheMissError) as raised:
        extract("x" * 10_000)
    assert len(str(raised.value)) < 1500
    assert counting.calls == []


def test_nested_blocks_merge_field_by_field_the_innermost_winning(counting: Counting) -> None:
    """An inner block's mode replaces the outer's while the outer's TTL still applies."""
    store = MemoryCache()
    extract, _ = sync_and_async(store, counting, ttl=3600)
    with cache_control("off", ttl=5):
        extract("Ann")
        with cache_control("normal"):
            extract("Ann")
            extract("Ann")
        extract("Ann")
    assert counting.calls == ["Ann", "Ann", "Ann"]
    entry = store.get_with_ttl(extract.cache_key("Ann"))
    assert entry is not None
    assert entry[1] is not None
    assert 0 < entry[1] <= 5


def test_ttl_applies_to_the_writes_made_inside(call: Any, pick: Any) -> None:
    """A block's TTL replaces the decorator's for entries written inside, and only those."""
    store = MemoryCache()
    fn = pick(store, ttl=3600)
    with cache_control(ttl=5):
        call(fn, "Ann")
    call(fn, "Bob")
    inside, outside = (
        store.get_with_ttl(fn.cache_key("Ann")),
        store.get_with_ttl(fn.cache_key("Bob")),
    )
    assert inside is not None
    assert outside is not None
    assert inside[1] is not None
    assert outside[1] is not None
    assert 0 < inside[1] <= 5
    assert outside[1] > 60


def test_ttl_none_inside_means_no_expiry(counting: Counting) -> None:
    """``ttl=None`` in a block stores entries without expiry, though the decorator has a TTL."""
    store = MemoryCache()
    extract, _ = sync_and_async(store, counting, ttl=3600)
    with cache_control(ttl=None):
        extract("Ann")
    assert store.get_with_ttl(extract.cache_key("Ann")) == (
        store.get(extract.cache_key("Ann")),
        None,
    )


def test_store_routes_reads_and_writes_to_the_other_store(
    call: Any, pick: Any, counting: Counting
) -> None:
    """Calls inside ``store=`` read and write that store; the decorator's is left alone."""
    own, other = MemoryCache(), MemoryCache()
    fn = pick(own)
    with cache_control(store=other):
        call(fn, "Ann")
        call(fn, "Ann")
    assert counting.calls == ["Ann"]
    assert other.get(fn.cache_key("Ann")) is not None
    assert own.get(fn.cache_key("Ann")) is None
    call(fn, "Ann")  # outside: the decorator's store, which has nothing
    assert counting.calls == ["Ann", "Ann"]
    assert fn.cache_info().hits == 1


def test_stores_routed_to_once_are_not_kept_alive_by_the_function(
    call: Any, pick: Any, counting: Counting
) -> None:
    """A store made per request and routed to once is let go: the function keeps a few routes."""
    fn = pick(MemoryCache())
    released: list[weakref.ref[MemoryCache]] = []
    for number in range(200):
        store = MemoryCache()
        with cache_control(store=store):
            call(fn, f"call {number}")
        released.append(weakref.ref(store))
        del store
    gc.collect()
    alive = sum(ref() is not None for ref in released)
    assert alive <= 80, f"{alive} of 200 routed stores are still alive"
    last = released[-1]()
    assert last is not None  # the newest route is kept, and still serves
    with cache_control(store=last):
        call(fn, "call 199")
    assert len(counting.calls) == 200


def test_store_and_replay_serve_only_from_the_other_store(
    counting: Counting, disk: Callable[..., DiskCache]
) -> None:
    """A replay routed to a store answers from it alone: the decorator's entry is not used."""
    own, fixtures = MemoryCache(), disk()
    extract, _ = sync_and_async(own, counting)
    extract("Ann")
    with cache_control("write-only", store=fixtures):
        recorded = extract("Bob")
    with cache_control("replay", store=fixtures):
        assert extract("Bob") == recorded
        with pytest.raises(CacheMissError):
            extract("Ann")
    assert counting.calls == ["Ann", "Bob"]


def test_refresh_and_uncached_follow_the_blocks_store(
    call: Any, pick: Any, counting: Counting
) -> None:
    """``refresh`` writes to the store a block routes to; the decorator's store is left alone."""
    own, other = MemoryCache(), MemoryCache()
    fn = pick(own)
    with cache_control(store=other):
        call(fn.refresh, "Ann")
        call(fn.uncached, "Ann")
        assert call(fn, "Ann").age == 1
    assert own.get(fn.cache_key("Ann")) is None
    assert counting.calls == ["Ann", "Ann"]


def test_a_bad_mode_or_store_is_refused_when_the_block_is_made() -> None:
    """A misspelt mode or a non-store fails at once, naming what is allowed."""
    with pytest.raises(ConfigurationError, match="read-only"):
        cache_control("readonly")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        cache_control(store=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        cache_control(ttl=-1)


SWITCH_SCRIPT = """
import json
from pydantic import BaseModel
from instructor_cache import MemoryCache, cache_control, instructor_cache
from instructor_cache._control import SWITCH

class User(BaseModel):
    name: str

@instructor_cache(MemoryCache())
def extract(text: str) -> User:
    return User(name=text)

extract("Ann")
before = SWITCH.on
with cache_control("off"):
    inside = SWITCH.on
print(json.dumps([before, inside, SWITCH.on]))
"""


def test_the_switch_is_down_until_a_block_opens_then_stays_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unused, a call tests one flag only; once used, a task copied in a block may outlive it."""
    monkeypatch.delenv("INSTRUCTOR_CACHE_MODE", raising=False)
    assert json_under_hash_seed(SWITCH_SCRIPT, "0") == [False, True, True]


def test_a_mode_set_in_one_task_does_not_reach_a_concurrent_task(counting: Counting) -> None:
    """Task A is inside an off block while task B calls: B is served from the cache."""
    _, aextract = sync_and_async(MemoryCache(), counting)

    async def main() -> list[int]:
        await aextract("Ann")
        inside, done = asyncio.Event(), asyncio.Event()

        async def a() -> int:
            with cache_control("off"):
                inside.set()
                await done.wait()
                return (await aextract("Ann")).age

        async def b() -> int:
            await inside.wait()
            age = (await aextract("Ann")).age
            done.set()
            return age

        return list(await asyncio.gather(a(), b()))

    assert asyncio.run(main()) == [2, 1]
    assert counting.calls == ["Ann", "Ann"]


def test_a_task_started_inside_a_block_follows_it(counting: Counting) -> None:
    """A task created in a block copies the block's mode, as it copies every context variable."""
    _, aextract = sync_and_async(MemoryCache(), counting)

    async def main() -> UserDetail:
        await aextract("Ann")
        with cache_control("off"):
            task = asyncio.create_task(aextract("Ann"))
        return await task

    assert asyncio.run(main()).age == 2


def test_a_mode_set_in_one_thread_does_not_reach_another(counting: Counting) -> None:
    """A thread inside an off block leaves another thread's calls served from the cache."""
    extract, _ = sync_and_async(MemoryCache(), counting)
    extract("Ann")
    inside, done = threading.Event(), threading.Event()
    ages: list[int] = []

    def in_block() -> None:
        with cache_control("off"):
            inside.set()
            done.wait(30)
            ages.append(extract("Ann").age)

    thread = threading.Thread(target=in_block)
    thread.start()
    assert inside.wait(30)
    served = extract("Ann")
    done.set()
    thread.join(30)
    assert served.age == 1
    assert ages == [2]


def test_write_only_is_not_served_by_an_earlier_calls_flight(counting: Counting) -> None:
    """A write-only call made while a normal call computes pays itself, and its answer is kept."""
    started, release = threading.Event(), threading.Event()
    answers = iter([41, 42])

    @instructor_cache(MemoryCache(), ignore=("answers", "started", "release"))
    def extract(text: str) -> UserDetail:
        age = next(answers)
        if age == 41:
            started.set()
            release.wait(30)
        return UserDetail(name=text, age=age)

    earlier: list[UserDetail] = []
    thread = threading.Thread(target=lambda: earlier.append(extract("Ann")))
    thread.start()
    assert started.wait(30)
    with cache_control("write-only"):
        fresh = extract("Ann")
    release.set()
    thread.join(30)
    assert (earlier[0].age, fresh.age) == (41, 42)
    assert extract("Ann").age == 42  # the earlier call's older answer was not stored over it


def test_uncached_is_one_call_with_the_cache_off(counting: Counting) -> None:
    """``fn.uncached(...)`` pays and stores nothing, sync and async; the next call is a miss."""
    extract, aextract = sync_and_async(MemoryCache(), counting)
    extract("Ann")
    assert extract.uncached("Ann").age == 2
    assert asyncio.run(aextract.uncached("Bob")).age == 3
    assert asyncio.run(aextract("Bob")).age == 4
    assert extract("Ann").age == 1


def test_uncached_on_a_method_binds_self(counting: Counting) -> None:
    """A cached method's ``uncached`` passes the instance, as a call does."""

    class Extractor:
        @instructor_cache(MemoryCache(), ignore=("self", "counting"))
        def extract(self, text: str) -> UserDetail:
            return counting(text)

    extractor = Extractor()
    extractor.extract("Ann")
    assert extractor.extract.uncached("Ann").age == 2
    assert extractor.extract("Ann").age == 1


def test_replay_over_a_stacked_layer_is_served_by_the_layer_below(
    counting: Counting, disk: Callable[..., DiskCache]
) -> None:
    """A memory layer over a disk layer: in replay, an entry only on disk is served, not missed."""

    @instructor_cache(MemoryCache())
    @instructor_cache(disk(), ignore=("counting",))
    def extract(text: str) -> UserDetail:
        return counting(text)

    extract("Ann")
    extract.cache_clear()  # the memory layer forgets; the disk keeps it
    with cache_control("replay"):
        assert extract("Ann").age == 1
        with pytest.raises(CacheMissError):
            extract("Bob")
    assert counting.calls == ["Ann"]


def test_a_tiered_store_routed_to_records_in_every_tier_and_replays_from_a_lower_one(
    counting: Counting, disk: Callable[..., DiskCache]
) -> None:
    """Write-only into a TieredCache fills both tiers; replay then reads the lower tier's entry."""
    l1, l2 = MemoryCache(), disk()
    tiered = TieredCache(l1, l2)
    extract, _ = sync_and_async(MemoryCache(), counting)
    with cache_control("write-only", store=tiered):
        recorded = extract("Ann")
    key = extract.cache_key("Ann")
    assert l1.get(key) is not None
    assert l2.get(key) is not None
    l1.delete(key)
    with track_calls() as calls, cache_control("replay", store=tiered):
        assert extract("Ann") == recorded
    assert [(c.outcome, c.tier) for c in calls] == [("hit", 1)]
    assert counting.calls == ["Ann"]


def test_the_process_default_applies_in_every_thread_under_the_blocks(counting: Counting) -> None:
    """A process default (a test session's) reaches other threads; a block overrides it."""
    own, session = MemoryCache(), MemoryCache()
    extract, _ = sync_and_async(own, counting)
    assert set_default_control("write-only", store=session) is None
    try:
        thread = threading.Thread(target=extract, args=("Ann",))
        thread.start()
        thread.join(30)
        with cache_control("replay"):
            served = extract("Ann")
    finally:
        assert set_default_control() is not None
    assert session.get(extract.cache_key("Ann")) is not None
    assert own.get(extract.cache_key("Ann")) is None
    assert served.age == 1
    extract("Ann")  # the default is gone: the decorator's store, empty
    assert counting.calls == ["Ann", "Ann"]


def stream_function(llm: FakeLLM, store: MemoryCache) -> Any:
    @instructor_cache(store, ignore=("llm",))
    def people(text: str) -> Iterator[UserDetail]:
        for part in text.split(","):
            yield llm(part)

    return people


def test_a_stream_follows_the_mode_it_was_made_under(llm: FakeLLM) -> None:
    """Streams: off and read-only store nothing, replay raises on a miss, write-only stores."""
    store = MemoryCache()
    people = stream_function(llm, store)
    key = people.cache_key("Ann is 1,Bob is 2")
    with cache_control("off"):
        stream = people("Ann is 1,Bob is 2")
    assert [p.name for p in stream] == ["Ann", "Bob"]  # consumed after the block: still off
    with cache_control("read-only"):
        list(people("Ann is 1,Bob is 2"))
    assert store.get(key) is None
    with cache_control("replay"), pytest.raises(CacheMissError):
        next(people("Ann is 1,Bob is 2"))
    assert len(llm.calls) == 4
    with cache_control("write-only", ttl=5):
        list(people("Ann is 1,Bob is 2"))
    entry = store.get_with_ttl(key)
    assert entry is not None
    assert entry[1] is not None
    assert entry[1] <= 5
    with cache_control("replay"):
        assert [p.name for p in people("Ann is 1,Bob is 2")] == ["Ann", "Bob"]
    assert len(llm.calls) == 6
    assert [p.name for p in people.uncached("Ann is 1")] == ["Ann"]
    assert len(llm.calls) == 7


def test_an_async_stream_routed_to_another_store_records_there(llm: FakeLLM) -> None:
    """An async stream under ``store=`` writes its entry to that store, then replays from it."""
    own, other = MemoryCache(), MemoryCache()

    @instructor_cache(own, ignore=("llm",))
    async def people(text: str) -> AsyncIterator[UserDetail]:
        for part in text.split(","):
            yield llm(part)

    async def main() -> list[str]:
        with cache_control(store=other):
            names = [p.name async for p in people("Ann is 1")]
        with cache_control("replay", store=other):
            names += [p.name async for p in people("Ann is 1")]
            with pytest.raises(CacheMissError):
                await anext(people("Bob is 2"))
        return names

    assert asyncio.run(main()) == ["Ann", "Ann"]
    assert own.get(people.cache_key("Ann is 1")) is None
    assert other.get(people.cache_key("Ann is 1")) is not None
    assert len(llm.calls) == 1


def test_map_in_replay_raises_per_item_and_calls_nothing(counting: Counting) -> None:
    """A replay batch serves the cached items and gives each missing item its CacheMissError."""
    extract, _ = sync_and_async(MemoryCache(), counting)
    extract("Ann")
    with cache_control("replay"):
        results = extract.map(["Ann", "Bob", "Ann"], return_exceptions=True)
        with pytest.raises(CacheMissError):
            extract.map(["Ann", "Bob"])
    assert results[0] == results[2] == extract("Ann")
    assert isinstance(results[1], CacheMissError)
    assert counting.calls == ["Ann"]


def test_map_off_computes_everything_and_stores_nothing(counting: Counting) -> None:
    """An off batch pays for every distinct input, cached or not, and writes nothing."""
    store = MemoryCache()
    extract, _ = sync_and_async(store, counting)
    extract("Ann")
    with cache_control("off"):
        extract.map(["Ann", "Bob"])
    assert sorted(counting.calls) == ["Ann", "Ann", "Bob"]
    assert store.get(extract.cache_key("Bob")) is None


def test_awarm_write_only_recomputes_and_stores_under_the_blocks_ttl(counting: Counting) -> None:
    """A write-only warm recomputes every input and stores it with the block's TTL."""
    store = MemoryCache()
    _, aextract = sync_and_async(store, counting, ttl=3600)

    async def main() -> Any:
        await aextract("Ann")
        with cache_control("write-only", ttl=5):
            return await aextract.awarm(["Ann", "Bob"])

    counts = asyncio.run(main())
    assert (counts.hits, counts.computed) == (0, 2)
    entry = store.get_with_ttl(aextract.cache_key("Ann"))
    assert entry is not None
    assert entry[1] is not None
    assert entry[1] <= 5


def test_amap_in_replay_with_return_exceptions(counting: Counting) -> None:
    """The async batch honours replay item by item too."""
    _, aextract = sync_and_async(MemoryCache(), counting)

    async def main() -> list[Any]:
        await aextract("Ann")
        with cache_control("replay"):
            return await aextract.amap(["Ann", "Bob"], return_exceptions=True)

    served, missed = asyncio.run(main())
    assert served.name == "Ann"
    assert isinstance(missed, CacheMissError)
    assert counting.calls == ["Ann"]


def test_track_calls_records_each_calls_outcome_and_key(counting: Counting) -> None:
    """A tracker gets one event per call made inside, with its outcome and key, and no others."""
    extract, _ = sync_and_async(MemoryCache(), counting)
    extract("Bob")
    with track_calls() as calls:
        extract("Ann")
        extract("Ann")
        with track_calls() as inner:
            extract("Bob")
    extract("Ann")
    assert [(c.outcome, c.key) for c in calls] == [
        ("miss", extract.cache_key("Ann")),
        ("hit", extract.cache_key("Ann")),
        ("hit", extract.cache_key("Bob")),
    ]
    assert [c.outcome for c in inner] == ["hit"]
    assert all(isinstance(c, CacheEvent) for c in calls)
    assert _events._GLOBAL_HOOKS == ()  # closed: calls pay nothing for it


def test_track_calls_does_not_mix_in_a_concurrent_tasks_calls(counting: Counting) -> None:
    """Calls of a task running beside the tracking block are not recorded by it."""
    _, aextract = sync_and_async(MemoryCache(), counting)

    async def main() -> list[CacheEvent]:
        inside, done = asyncio.Event(), asyncio.Event()

        async def tracked() -> list[CacheEvent]:
            with track_calls() as calls:
                await aextract("Ann")
                inside.set()
                await done.wait()
            return calls

        async def beside() -> None:
            await inside.wait()
            await aextract("Bob")
            done.set()

        calls, _ = await asyncio.gather(tracked(), beside())
        return calls

    assert [c.key for c in asyncio.run(main())] == [aextract.cache_key("Ann")]
    assert counting.calls == ["Ann", "Bob"]


ENVIRONMENT = """
import json, os, sys
from pydantic import BaseModel
from instructor_cache import MemoryCache, instructor_cache
from instructor_cache._control import set_default_control
from instructor_cache.errors import CacheMissError, ConfigurationError

calls = []

class User(BaseModel):
    name: str

@instructor_cache(MemoryCache())
def extract(text: str) -> User:
    calls.append(text)
    return User(name=text)

outcome = []
for _ in range(2):
    try:
        extract("Ann")
        outcome.append("ok")
    except (CacheMissError, ConfigurationError) as exc:
        outcome.append(type(exc).__name__ + ": " + str(exc))
print(json.dumps({"calls": len(calls), "outcome": outcome}))
"""


@pytest.mark.parametrize(
    ("value", "calls", "first"),
    [("off", 2, "ok"), ("replay", 0, "CacheMissError"), ("normal", 1, "ok"), ("", 1, "ok")],
)
def test_the_environment_variable_sets_the_process_wide_mode(
    monkeypatch: pytest.MonkeyPatch, value: str, calls: int, first: str
) -> None:
    """The variable set to off pays each call, replay raises on a miss, normal changes nothing."""
    monkeypatch.setenv("INSTRUCTOR_CACHE_MODE", value)
    result = json_under_hash_seed(ENVIRONMENT, "0")
    assert result["calls"] == calls
    assert result["outcome"][0].startswith(first)


def test_a_bad_environment_value_fails_every_call_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A value the variable cannot mean imports fine, then each call raises, naming it."""
    monkeypatch.setenv("INSTRUCTOR_CACHE_MODE", "replya")
    result = json_under_hash_seed(ENVIRONMENT, "0")
    assert result["calls"] == 0
    for outcome in result["outcome"]:
        assert outcome.startswith("ConfigurationError")
        assert "INSTRUCTOR_CACHE_MODE" in outcome
        assert "replya" in outcome


def test_the_demo_names_the_layer_that_answered_from_the_tracked_events(tmp_path: Path) -> None:
    """The demo labels a call from its tracked events: an LLM call, a memory hit, a disk hit."""
    from instructor_cache._demo import build, served_by

    extract, _, llm_calls = build(tmp_path / "demo", 0.0)
    labels = []
    for forget in (False, False, True):
        if forget:
            extract.cache_clear()  # the memory layer forgets; the disk layer keeps it
        with track_calls() as calls:
            extract("Ann is 31 years old")
        labels.append(served_by(calls))
    assert labels == ["LLM call", "memory hit", "disk hit"]
    assert llm_calls == ["Ann is 31 years old"]
    del extract
    with warnings.catch_warnings():  # the demo never closes its DiskCache, as a user's script
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_every_mode_behaves_alike_on_every_store(backend: Store, llm: FakeLLM) -> None:
    """off, write-only, read-only, replay and track_calls on memory, disk, Redis, Cluster, tiers."""

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    with cache_control("off"):
        extract("Al is 1")
    with cache_control("read-only"):
        extract("Al is 1")
    with cache_control("replay"), pytest.raises(CacheMissError, match="Al is 1"):
        extract("Al is 1")
    assert len(llm.calls) == 2  # off and read-only paid, stored nothing; replay did not pay
    with cache_control("write-only"):
        extract("Al is 1")
    with cache_control("replay"), track_calls() as calls:
        assert extract("Al is 1") == UserDetail(name="Al", age=1)
    assert len(llm.calls) == 3
    assert [event.outcome for event in calls] == ["hit"]
    extract.cache_clear()
