"""Adversary reproducers for issue 13's events and streams: each failed on main when written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Iterator

import pytest
from pydantic import BaseModel

from instructor_cache import (
    CacheEvent,
    MemoryCache,
    RedisCache,
    add_event_hook,
    instructor_cache,
    remove_event_hook,
)
from instructor_cache.errors import (
    ConfigurationError,
    UncacheableFunctionError,
    UnencodableArgumentError,
)
from tests._redis import free_port
from tests._stores import aclose_clients


class User(BaseModel):
    name: str
    age: int


# --- streams -------------------------------------------------------------------------------


def test_a_generator_that_returns_a_value_is_refused_rather_than_losing_it() -> None:
    """A Generator[User, None, int] hands `yield from` its return value; a cached one lost it."""
    with pytest.raises(UncacheableFunctionError, match="return"):

        @instructor_cache(MemoryCache())
        def extract(text: str) -> Generator[User, None, int]:
            yield User(name=text, age=1)
            return 42


def test_a_generator_that_takes_sent_values_is_refused_rather_than_ignoring_them() -> None:
    """A Generator[User, int, None] answers what it is sent; a cached one was always sent None."""
    with pytest.raises(UncacheableFunctionError, match="send"):

        @instructor_cache(MemoryCache())
        def extract(text: str) -> Generator[User, int, None]:
            feedback = yield User(name=text, age=0)
            yield User(name=text, age=feedback)


def test_an_async_generator_that_takes_sent_values_is_refused() -> None:
    """AsyncGenerator[User, int] answers asend(); a cached one only ever sent None."""
    with pytest.raises(UncacheableFunctionError, match="send"):

        @instructor_cache(MemoryCache())
        async def extract(text: str) -> AsyncGenerator[User, int]:
            feedback = yield User(name=text, age=0)
            yield User(name=text, age=feedback)


def test_a_stacked_stream_layer_rebuilt_from_a_hit_below_stores_the_original_duration() -> None:
    """An outer stream layer refilled by the inner layer's hit stored microseconds, not the call.

    Non-stream layers pass the original call's duration up (``SERVED``); a stream
    layer stored its own replay's duration, so its hits then counted ~0 s saved.
    """
    inner_store, outer_store = MemoryCache(), MemoryCache()

    @instructor_cache(outer_store)
    @instructor_cache(inner_store)
    def extract(text: str) -> Iterator[User]:
        time.sleep(0.05)
        yield User(name=text, age=1)

    assert list(extract("Ann")) == [User(name="Ann", age=1)]
    outer_key, inner_key = extract.cache_key("Ann"), extract.__wrapped__.cache_key("Ann")
    outer_store.clear_prefix("")  # the outer layer lost its entry; the inner one kept its own
    assert list(extract("Ann")) == [User(name="Ann", age=1)]
    inner_entry, outer_entry = inner_store.get(inner_key), outer_store.get(outer_key)
    assert inner_entry is not None
    assert outer_entry is not None
    assert json.loads(outer_entry)["duration"] == json.loads(inner_entry)["duration"]


def test_three_stacked_stream_layers_pass_the_original_duration_to_the_top() -> None:
    """A middle stream layer refilled by a hit below passes that hit's duration on up."""
    bottom_store, middle_store, top_store = MemoryCache(), MemoryCache(), MemoryCache()

    @instructor_cache(top_store)
    @instructor_cache(middle_store)
    @instructor_cache(bottom_store)
    def extract(text: str) -> Iterator[User]:
        time.sleep(0.05)
        yield User(name=text, age=1)

    list(extract("Bo"))
    top_store.clear_prefix("")
    middle_store.clear_prefix("")
    list(extract("Bo"))
    bottom_entry = bottom_store.get(extract.__wrapped__.__wrapped__.cache_key("Bo"))
    top_entry = top_store.get(extract.cache_key("Bo"))
    assert bottom_entry is not None
    assert top_entry is not None
    assert json.loads(top_entry)["duration"] == json.loads(bottom_entry)["duration"]


async def test_a_stacked_async_stream_layer_rebuilt_from_a_hit_below_stores_its_duration() -> None:
    """The async twin: the outer layer refilled by the inner one's hit keeps the call's duration."""
    inner_store, outer_store = MemoryCache(), MemoryCache()

    @instructor_cache(outer_store)
    @instructor_cache(inner_store)
    async def extract(text: str) -> AsyncIterator[User]:
        await asyncio.sleep(0.05)
        yield User(name=text, age=1)

    assert [user async for user in extract("Cy")] == [User(name="Cy", age=1)]
    outer_store.clear_prefix("")
    assert [user async for user in extract("Cy")] == [User(name="Cy", age=1)]
    inner_entry = inner_store.get(extract.__wrapped__.cache_key("Cy"))
    outer_entry = outer_store.get(extract.cache_key("Cy"))
    assert inner_entry is not None
    assert outer_entry is not None
    assert json.loads(outer_entry)["duration"] == json.loads(inner_entry)["duration"]


def test_arguments_changed_before_the_stream_is_consumed_do_not_store_under_the_old_key() -> None:
    """The key was built when the stream was made, the function read its arguments when consumed.

    A list changed in between made the function answer for the new contents and
    stored that under the old contents' key: the next call for the old ones got
    the other answer.
    """

    @instructor_cache(MemoryCache())
    def extract(names: list[str]) -> Iterator[User]:
        for name in names:
            yield User(name=name, age=len(name))

    names = ["Ann"]
    stream = extract(names)
    names[0] = "Bo"
    assert list(stream) == [User(name="Bo", age=2)]
    assert list(extract(["Ann"])) == [User(name="Ann", age=3)]


async def test_async_arguments_changed_before_the_stream_is_consumed_keep_their_key() -> None:
    """The async twin: the key is that of the arguments the function actually read."""

    @instructor_cache(MemoryCache())
    async def extract(names: list[str]) -> AsyncIterator[User]:
        for name in names:
            yield User(name=name, age=len(name))

    names = ["Ann"]
    stream = extract(names)
    names[0] = "Bo"
    assert [user async for user in stream] == [User(name="Bo", age=2)]
    assert [user async for user in extract(["Ann"])] == [User(name="Ann", age=3)]


def test_a_refresh_made_before_its_arguments_change_stores_under_their_new_key() -> None:
    """refresh() built its key when made too: its fresh items overwrote the old arguments' entry."""

    @instructor_cache(MemoryCache())
    def extract(names: list[str]) -> Iterator[User]:
        for name in names:
            yield User(name=name, age=len(name))

    assert list(extract(["Ann"])) == [User(name="Ann", age=3)]
    names = ["Ann"]
    stream = extract.refresh(names)
    names[0] = "Bo"
    assert list(stream) == [User(name="Bo", age=2)]
    assert list(extract(["Ann"])) == [User(name="Ann", age=3)]


def test_a_function_annotated_iterable_that_returns_a_list_is_refused_when_decorated() -> None:
    """A def -> Iterable[User] returning a list was handed out as a one-shot generator.

    instructor's ``create(response_model=Iterable[User])`` returns a list, and a
    caller of the undecorated function may walk it twice (count, then use); the
    decorated one answered the second pass with nothing (and ``len()`` raised).
    A plain def must now say Iterator (a stream) or list (a value).
    """
    with pytest.raises(UncacheableFunctionError, match=r"-> list\[\.\.\.\] if it returns a list"):

        @instructor_cache(MemoryCache())
        def extract(text: str) -> Iterable[User]:
            return [User(name=name, age=len(name)) for name in text.split()]


# --- events --------------------------------------------------------------------------------


def test_refresh_reports_its_paid_call_as_an_event() -> None:
    """refresh() calls the function (a paid call) yet reported no event; a stream's refresh did."""
    seen: list[CacheEvent] = []

    @instructor_cache(MemoryCache(), on_event=seen.append)
    def extract(text: str) -> User:
        return User(name=text, age=2)

    extract("Cy")
    extract.refresh("Cy")
    assert [e.outcome for e in seen] == ["miss", "miss"]
    assert seen[1].key == extract.cache_key("Cy")


async def test_an_async_refresh_reports_its_paid_call_as_an_event() -> None:
    """The async refresh() is a paid call too, and reports like the sync one."""
    seen: list[CacheEvent] = []

    @instructor_cache(MemoryCache(), on_event=seen.append)
    async def extract(text: str) -> User:
        return User(name=text, age=2)

    await extract("Di")
    await extract.refresh("Di")
    assert [e.outcome for e in seen] == ["miss", "miss"]


def test_an_async_event_hook_is_refused_rather_than_never_run() -> None:
    """An async def hook was called, its coroutine dropped unawaited: metrics silently empty."""

    async def hook(event: CacheEvent) -> None:
        """What an asyncio app would naturally write."""

    try:
        with pytest.raises(ConfigurationError, match="async"):
            add_event_hook(hook)
    finally:
        with contextlib.suppress(ValueError):  # added after all: leave no hook to later tests
            remove_event_hook(hook)
    with pytest.raises(ConfigurationError, match="async"):
        instructor_cache(MemoryCache(), on_event=hook)


async def test_concurrent_calls_over_a_dead_redis_each_report_an_error() -> None:
    """Tasks whose coalesced read failed reported "miss": only the first read's call said "error".

    With Redis down, every one of these calls ran the function because the store
    failed to answer, which is what "error" means; a dashboard of outcomes showed
    one failure and a run of ordinary misses.
    """
    seen: list[CacheEvent] = []
    backend = RedisCache(f"redis://127.0.0.1:{free_port()}/0")

    @instructor_cache(backend, on_event=seen.append)
    async def extract(text: str) -> User:
        return User(name=text, age=3)

    try:
        await asyncio.gather(*(extract(str(i)) for i in range(5)))
    finally:
        await aclose_clients(backend)
    assert [e.outcome for e in seen] == ["error"] * 5


def test_a_call_that_fails_before_the_function_runs_is_not_reported_as_a_miss() -> None:
    """An argument that cannot be keyed raised before anything ran, yet its event said "miss".

    "miss" means the function ran (a paid call): a dashboard counting paid calls
    from events counted one that never happened.
    """
    seen: list[CacheEvent] = []
    ran: list[object] = []

    @instructor_cache(MemoryCache(), on_event=seen.append, ignore=("ran",))
    def extract(document: object, ran: list[object] = ran) -> User:
        ran.append(document)
        return User(name="Ed", age=4)

    with pytest.raises(UnencodableArgumentError):
        extract(threading.Lock())
    assert ran == []
    assert [e.outcome for e in seen if e.outcome == "miss"] == []


async def test_a_cancelled_single_flight_waiter_is_not_reported_as_a_miss() -> None:
    """A waiter cancelled before the leader landed ran nothing, yet its event said "miss"."""
    seen: list[CacheEvent] = []
    ran: list[str] = []
    leading = asyncio.Event()

    @instructor_cache(MemoryCache(), on_event=seen.append, ignore=("ran", "leading"))
    async def extract(text: str, ran: list[str] = ran, leading: asyncio.Event = leading) -> User:
        ran.append(text)
        leading.set()
        await asyncio.sleep(0.2)
        return User(name=text, age=5)

    leader = asyncio.create_task(extract("Fa"))
    await leading.wait()
    waiter = asyncio.create_task(extract("Fa"))
    await asyncio.sleep(0.02)  # the waiter is now waiting for the leader's flight
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await leader
    assert ran == ["Fa"]
    assert sum(e.outcome == "miss" for e in seen) == len(ran)


def test_an_async_cache_if_is_refused_when_decorating() -> None:
    """An async cache_if returned a coroutine, always true and never awaited: everything cached."""

    async def worth_keeping(value: object) -> bool:
        return False

    with pytest.raises(ConfigurationError, match="cache_if must be a plain function"):

        @instructor_cache(MemoryCache(), cache_if=worth_keeping)
        def extract(text: str) -> User:
            return User(name=text, age=1)


def test_a_stream_whose_item_cannot_be_copied_says_why_it_is_not_cached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Caching a stream was dropped silently when an item refused deepcopy: every call paid."""

    class Stubborn(User):
        def __deepcopy__(self, memo: object) -> Stubborn:
            raise TypeError("no copies")

    @instructor_cache(MemoryCache())
    def extract(text: str) -> Iterator[User]:
        yield Stubborn(name=text, age=1)

    with caplog.at_level(logging.WARNING):
        assert len(list(extract("Ann"))) == 1
    assert "cannot be copied" in caplog.text
