"""Stream functions: a completed stream is stored and replayed; any other stores nothing."""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

import instructor
import openai
import pytest
from pydantic import BaseModel

from instructor_cache import (
    MemoryCache,
    RedisCache,
    disk_cache,
    instructor_cache,
    make_cache_key,
    memory_cache,
)
from instructor_cache.backends import Store
from instructor_cache.errors import ConfigurationError, UncacheableFunctionError
from tests._openai import httpx
from tests._redis import free_port


class User(BaseModel):
    name: str
    age: int


class BoomError(Exception):
    """What a source raises mid-stream."""


def users(text: str) -> list[User]:
    return [User(name=name, age=len(name)) for name in text.split()]


class Source:
    """A simulated LLM stream: counts calls and records whether each stream was closed."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[str] = []
        self.closed: list[bool] = []
        self.fail_after = fail_after

    def sync(self, text: str) -> Iterator[User]:
        self.calls.append(text)
        self.closed.append(False)
        try:
            for i, user in enumerate(users(text)):
                if i == self.fail_after:
                    raise BoomError(text)
                yield user
        finally:
            self.closed[-1] = True

    async def asynchronous(self, text: str) -> AsyncIterator[User]:
        self.calls.append(text)
        self.closed.append(False)
        try:
            for i, user in enumerate(users(text)):
                if i == self.fail_after:
                    raise BoomError(text)
                yield user
        finally:
            self.closed[-1] = True


def sync_stream(source: Source, store: Store | None = None, **options: Any) -> Any:
    @instructor_cache(store if store is not None else MemoryCache(), ignore=("source",), **options)
    def extract(text: str) -> Iterator[User]:
        yield from source.sync(text)

    return extract


def async_stream(source: Source, store: Store | None = None, **options: Any) -> Any:
    @instructor_cache(store if store is not None else MemoryCache(), ignore=("source",), **options)
    async def extract(text: str) -> AsyncIterator[User]:
        async with contextlib.aclosing(source.asynchronous(text)) as items:
            async for user in items:
                yield user

    return extract


async def consume(stream: AsyncIterator[User], seen: list[User]) -> None:
    async for user in stream:
        seen.append(user)  # noqa: PERF401  (the items before an exception count too)


def stored_duration(extract: Any, store: Store, text: str) -> float:
    entry = store.get(extract.cache_key(text))
    assert entry is not None
    duration: float = json.loads(entry)["duration"]
    return duration


# --- complete, then replay -----------------------------------------------------------------


def test_a_completed_stream_is_replayed_in_order_without_calling_again(backend: Store) -> None:
    """A stream consumed to its end is stored; the next call's generator yields the same items."""
    source = Source()
    extract = sync_stream(source, backend)
    first = extract("Ann Bob Cy")
    assert inspect.isgenerator(first)
    assert list(first) == users("Ann Bob Cy")
    again = extract("Ann Bob Cy")
    assert inspect.isgenerator(again)
    assert list(again) == users("Ann Bob Cy")
    assert source.calls == ["Ann Bob Cy"]
    info = extract.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert info.time_saved == stored_duration(extract, backend, "Ann Bob Cy") > 0


async def test_a_completed_async_stream_is_replayed_in_order_without_calling_again(
    backend: Store,
) -> None:
    """The async twin: the replay is an async generator of the same items, without a call."""
    source = Source()
    extract = async_stream(source, backend)
    first = extract("Ann Bob Cy")
    assert inspect.isasyncgen(first)
    assert [user async for user in first] == users("Ann Bob Cy")
    again = extract("Ann Bob Cy")
    assert inspect.isasyncgen(again)
    assert [user async for user in again] == users("Ann Bob Cy")
    assert source.calls == ["Ann Bob Cy"]
    assert (extract.cache_info().hits, extract.cache_info().misses) == (1, 1)


def test_an_empty_stream_is_stored_and_replayed_empty() -> None:
    """A stream with no items completes like any other: its replay is empty too."""
    source = Source()
    extract = sync_stream(source)
    assert list(extract("")) == list(extract("")) == []
    assert source.calls == [""]


# --- interrupted and failed streams -------------------------------------------------------


def test_a_stream_broken_off_stores_nothing_and_closes_the_source() -> None:
    """A caller that stops after one item leaves no entry: the next call pays again."""
    source = Source()
    extract = sync_stream(source)
    for user in extract("Ann Bob"):
        assert user == users("Ann")[0]
        break
    assert source.closed == [True]
    assert list(extract("Ann Bob")) == users("Ann Bob")
    assert source.calls == ["Ann Bob", "Ann Bob"]
    assert extract.cache_info().misses == 2


def test_a_stream_collected_unfinished_stores_nothing() -> None:
    """A stream dropped half-way and garbage collected is an interrupted one."""
    source = Source()
    extract = sync_stream(source)
    stream = extract("Ann Bob")
    next(stream)
    del stream
    gc.collect()
    assert source.closed == [True]
    assert extract.cache_info().currsize == 0


async def test_an_async_stream_closed_early_stores_nothing_and_acloses_the_source() -> None:
    """aclose() on our stream reaches the source; nothing is stored, the next call pays."""
    source = Source()
    extract = async_stream(source)
    stream = extract("Ann Bob")
    assert await stream.__anext__() == users("Ann")[0]
    await stream.aclose()
    assert source.closed == [True]
    assert [user async for user in extract("Ann Bob")] == users("Ann Bob")
    assert source.calls == ["Ann Bob", "Ann Bob"]


def test_a_failing_stream_raises_the_original_error_and_stores_nothing() -> None:
    """An exception mid-stream reaches the caller as it was raised, after the items before it."""
    source = Source(fail_after=1)
    extract = sync_stream(source)
    seen: list[User] = []
    with pytest.raises(BoomError) as info:
        seen.extend(extract("Ann Bob"))
    assert seen == users("Ann")
    assert info.value.args == ("Ann Bob",)
    with pytest.raises(BoomError):
        list(extract("Ann Bob"))
    assert source.calls == ["Ann Bob", "Ann Bob"]
    assert extract.cache_info().currsize == 0


async def test_a_failing_async_stream_raises_the_original_error_and_stores_nothing() -> None:
    """The async twin: the source's exception propagates unchanged and nothing is stored."""
    source = Source(fail_after=1)
    extract = async_stream(source)
    for _ in range(2):
        seen: list[User] = []
        with pytest.raises(BoomError):
            await consume(extract("Ann Bob"), seen)
        assert seen == users("Ann")
    assert source.calls == ["Ann Bob", "Ann Bob"]
    assert extract.cache_info().currsize == 0


def test_a_function_that_raises_before_streaming_raises_at_the_first_item() -> None:
    """Like a generator's body, the function runs when the stream is first iterated."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def extract(text: str) -> Iterator[User]:
        calls.append(text)
        raise BoomError(text)

    stream = extract("Ann")
    assert calls == []
    with pytest.raises(BoomError):
        next(stream)
    assert extract.cache_info().currsize == 0


# --- what is stored ----------------------------------------------------------------------


def test_final_mode_stores_and_replays_only_the_last_item() -> None:
    """stream="final" (partial streams) keeps the last item; a hit yields just it."""
    source = Source()
    extract = sync_stream(source, stream="final")
    assert list(extract("Ann Bob Cy")) == users("Ann Bob Cy")
    assert list(extract("Ann Bob Cy")) == users("Cy")
    assert source.calls == ["Ann Bob Cy"]


async def test_async_final_mode_stores_and_replays_only_the_last_item() -> None:
    """The async twin of the final-item mode."""
    source = Source()
    extract = async_stream(source, stream="final")
    assert [user async for user in extract("Ann Bob")] == users("Ann Bob")
    assert [user async for user in extract("Ann Bob")] == users("Bob")
    assert source.calls == ["Ann Bob"]


def test_final_mode_stores_nothing_for_an_empty_stream() -> None:
    """With no last item there is nothing to replay: the next call pays again."""
    source = Source()
    extract = sync_stream(source, stream="final")
    assert list(extract("")) == list(extract("")) == []
    assert source.calls == ["", ""]


def test_the_two_modes_key_their_entries_apart() -> None:
    """One store, the same function in both modes: neither reads the other's entry."""
    store, source = MemoryCache(), Source()
    every, final = sync_stream(source, store), sync_stream(source, store, stream="final")
    assert every.cache_key("Ann Bob") != final.cache_key("Ann Bob")


def test_a_stream_whose_items_do_not_round_trip_is_not_stored() -> None:
    """An item that would not read back equal (a NaN) means no entry: each call pays."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def scores(text: str) -> Iterator[float]:
        calls.append(text)
        yield 1.0
        yield math.nan

    for _ in range(2):
        assert len(list(scores("a"))) == 2
    assert calls == ["a", "a"]
    assert scores.cache_info().currsize == 0


def test_an_item_changed_by_the_caller_is_stored_as_it_was_handed() -> None:
    """The entry holds each item as yielded, not as the caller changed it before the end."""
    source = Source()
    extract = sync_stream(source)
    for user in extract("Ann Bob"):
        user.age = 99
    assert list(extract("Ann Bob")) == users("Ann Bob")


def test_cache_if_sees_the_list_of_items() -> None:
    """cache_if judges a stream by all its items, and a refusal stores nothing."""
    source = Source()
    extract = sync_stream(source, cache_if=lambda items: len(items) > 1)
    for _ in range(2):
        assert list(extract("Ann")) == users("Ann")
        assert list(extract("Ann Bob")) == users("Ann Bob")
    assert source.calls == ["Ann", "Ann Bob", "Ann"]


# --- kinds of stream functions ----------------------------------------------------------


def test_a_plain_function_returning_an_iterator_is_a_stream() -> None:
    """A def that returns an iterator (as instructor's create_iterable does) is recorded too."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def extract(text: str) -> Iterator[User]:
        calls.append(text)
        return map(User.model_validate, [u.model_dump() for u in users(text)])

    assert list(extract("Ann Bob")) == list(extract("Ann Bob")) == users("Ann Bob")
    assert calls == ["Ann Bob"]


async def test_a_plain_function_returning_an_async_iterator_is_a_stream() -> None:
    """A def that returns an async generator is recorded and replayed as an async one."""
    source = Source()

    @instructor_cache(ignore=("source",))
    def extract(text: str) -> AsyncIterator[User]:
        return source.asynchronous(text)

    assert [user async for user in extract("Ann Bob")] == users("Ann Bob")
    assert [user async for user in extract("Ann Bob")] == users("Ann Bob")
    assert source.calls == ["Ann Bob"]


def test_a_generator_annotated_with_its_send_and_return_types_is_a_stream() -> None:
    """Generator[User, None, None] is a stream of User."""
    source = Source()

    @instructor_cache(ignore=("source",))
    def extract(text: str) -> Generator[User, None, None]:
        yield from source.sync(text)

    assert list(extract("Ann")) == list(extract("Ann")) == users("Ann")
    assert source.calls == ["Ann"]


def test_a_stream_method_binds_self() -> None:
    """A stream defined in a class is keyed and replayed per call like any cached method."""
    source = Source()

    class Extractor:
        @instructor_cache(ignore=("self", "source"))
        def extract(self, text: str) -> Iterator[User]:
            yield from source.sync(text)

    extractor = Extractor()
    assert list(extractor.extract("Ann")) == list(extractor.extract("Ann")) == users("Ann")
    assert source.calls == ["Ann"]


# --- controls ---------------------------------------------------------------------------


def test_invalidate_and_cache_clear_remove_stream_entries() -> None:
    """invalidate drops one call's entry, cache_clear every entry and the statistics."""
    source = Source()
    extract = sync_stream(source)
    list(extract("Ann"))
    list(extract("Bob"))
    assert extract.invalidate("Ann") is True
    assert extract.invalidate("Ann") is False
    list(extract("Ann"))
    list(extract("Bob"))
    assert source.calls == ["Ann", "Bob", "Ann"]
    extract.cache_clear()
    assert extract.cache_info() == (0, 0, 1024, 0, 0, 0.0, (), 0, 0.0)
    list(extract("Bob"))
    assert source.calls == ["Ann", "Bob", "Ann", "Bob"]


async def test_async_invalidate_and_acache_clear_remove_stream_entries() -> None:
    """The async stream's invalidate is awaited, like an async function's."""
    source = Source()
    extract = async_stream(source)
    [user async for user in extract("Ann")]
    assert await extract.invalidate("Ann") is True
    [user async for user in extract("Ann")]
    await extract.acache_clear()
    [user async for user in extract("Ann")]
    assert source.calls == ["Ann", "Ann", "Ann"]


def test_a_stream_invalidated_while_recording_does_not_store_its_items() -> None:
    """An invalidation that begins during a stream wins: the stream's older items are not stored."""
    source = Source()
    extract = sync_stream(source)
    stream = extract("Ann Bob")
    next(stream)
    extract.invalidate("Ann Bob")
    assert list(stream) == users("Bob")
    list(extract("Ann Bob"))
    assert source.calls == ["Ann Bob", "Ann Bob"]


def test_refresh_streams_afresh_and_overwrites_the_entry() -> None:
    """refresh() calls the function even with an entry, and stores the new items once complete."""
    answers = iter(["first", "second"])

    @instructor_cache(ignore=("answers",))
    def extract(text: str) -> Iterator[User]:
        yield User(name=next(answers), age=len(text))

    assert [u.name for u in extract("Ann")] == ["first"]
    assert [u.name for u in extract.refresh("Ann")] == ["second"]
    assert [u.name for u in extract("Ann")] == ["second"]


@pytest.mark.parametrize("method", ["map", "warm"])
def test_map_and_warm_refuse_a_stream_function(method: str) -> None:
    """Batches return lists of values, so a stream function refuses them with what to do."""
    extract = sync_stream(Source())
    with pytest.raises(ConfigurationError, match="consume each stream"):
        getattr(extract, method)(["Ann"])


@pytest.mark.parametrize("method", ["amap", "awarm"])
async def test_amap_and_awarm_refuse_an_async_stream_function(method: str) -> None:
    """The async batches refuse an async stream function in the same words."""
    extract = async_stream(Source())
    with pytest.raises(ConfigurationError, match="consume each stream"):
        getattr(extract, method)(["Ann"])


def test_a_stream_over_a_store_that_is_down_calls_the_function_and_counts_errors() -> None:
    """Fail-open: with the store unreachable every stream is served by the function."""
    source = Source()
    store = RedisCache(f"redis://127.0.0.1:{free_port()}/0")
    try:
        extract = sync_stream(source, store)
        for _ in range(2):
            assert list(extract("Ann Bob")) == users("Ann Bob")
        assert source.calls == ["Ann Bob", "Ann Bob"]
        assert extract.cache_info().errors >= 1
    finally:
        store.close()


# --- decoration-time errors -------------------------------------------------------------


def test_stream_option_on_a_plain_function_is_rejected() -> None:
    """stream= only means something for a stream function, and says so."""
    with pytest.raises(ConfigurationError, match="remove stream="):

        @instructor_cache(stream="final")
        def extract(text: str) -> User:
            return users(text)[0]


def test_an_unknown_stream_mode_is_rejected() -> None:
    """stream= takes 'all' or 'final' only."""
    with pytest.raises(ConfigurationError, match=r"'all'.*'final'"):
        instructor_cache(stream="last")  # type: ignore[call-overload]


def sync_generator(text: str) -> Iterator[User]:
    yield from users(text)


async def async_generator(text: str) -> AsyncIterator[User]:
    for user in users(text):
        yield user


async def coroutine(text: str) -> AsyncIterator[User]:
    return async_generator(text)


def without_item_type(text: str) -> Iterator:  # type: ignore[type-arg]
    yield from users(text)


@pytest.mark.parametrize(
    ("fn", "annotation", "message"),
    [
        (coroutine, None, "async def that returns an async iterator"),
        (sync_generator, AsyncIterator[User], "sync generator annotated as an async stream"),
        (async_generator, Iterator[User], "annotate it -> AsyncIterator"),
        (without_item_type, None, "without an item type"),
    ],
    ids=["coroutine", "sync-as-async", "async-as-sync", "no-item-type"],
)
def test_a_misdeclared_stream_is_rejected_at_decoration(
    fn: Any, annotation: Any, message: str
) -> None:
    """A stream whose kind or items its annotation misstates cannot be replayed faithfully."""
    if annotation is not None:
        fn = type(fn)(fn.__code__, fn.__globals__, fn.__name__)
        fn.__annotations__ = {"text": str, "return": annotation}
    with pytest.raises(UncacheableFunctionError, match=message):
        instructor_cache(fn)


# --- a real instructor + openai client -------------------------------------------------


class StreamingOpenAI:
    """Answers streamed chat completions with a tool call's arguments in small SSE chunks."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.requests.append(body)
        found = users(body["messages"][-1]["content"])
        tool = body["tools"][0]["function"]
        wanted = "tasks" in tool["parameters"]["properties"]  # create_iterable's wrapper
        data = {"tasks": [u.model_dump() for u in found]} if wanted else found[-1].model_dump()
        arguments = json.dumps(data)
        events = []
        for i in range(0, len(arguments), 5):
            call: dict[str, Any] = {"index": 0, "function": {"arguments": arguments[i : i + 5]}}
            if i == 0:
                call.update(id="call_1", type="function")
                call["function"]["name"] = tool["name"]
            delta = {"role": "assistant", "tool_calls": [call]}
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            events.append(f"data: {json.dumps(chunk)}\n\n")
        events.append("data: [DONE]\n\n")
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content="".join(events).encode()
        )


@pytest.fixture
def streaming_openai() -> StreamingOpenAI:
    return StreamingOpenAI()


def test_instructor_create_iterable_is_replayed_without_a_request(
    streaming_openai: StreamingOpenAI, backend: Store
) -> None:
    """create_iterable over a real openai client: the repeat sends no request."""
    http = httpx.Client(transport=httpx.MockTransport(streaming_openai))
    client = instructor.from_openai(openai.OpenAI(api_key="test-key", http_client=http))

    @instructor_cache(backend, ignore=("client",))
    def extract(text: str) -> Iterator[User]:
        return client.chat.completions.create_iterable(
            model="gpt-4o-mini", response_model=User, messages=[{"role": "user", "content": text}]
        )

    assert list(extract("Ann Bob")) == users("Ann Bob")
    assert list(extract("Ann Bob")) == users("Ann Bob")
    assert len(streaming_openai.requests) == 1


async def test_instructor_async_create_partial_replays_the_final_user(
    streaming_openai: StreamingOpenAI,
) -> None:
    """create_partial (async) in final mode: the repeat yields the complete user, no request."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(streaming_openai))
    client = instructor.from_openai(openai.AsyncOpenAI(api_key="test-key", http_client=http))

    @instructor_cache(stream="final", ignore=("client",))
    async def extract(text: str) -> AsyncGenerator[User, None]:
        partials = client.chat.completions.create_partial(
            model="gpt-4o-mini", response_model=User, messages=[{"role": "user", "content": text}]
        )
        async with contextlib.aclosing(partials) as stream:
            async for partial in stream:
                if partial.name is not None and partial.age is not None:
                    yield User(name=partial.name, age=partial.age)

    first = [user async for user in extract("Ann")]
    assert first[-1] == users("Ann")[0]
    assert [user async for user in extract("Ann")] == users("Ann")
    assert len(streaming_openai.requests) == 1
    await http.aclose()


def test_stacked_stream_layers_replay_from_the_outer_and_reach_the_inner(tmp_path: Any) -> None:
    """Memory over disk: the outer layer replays; invalidate and refresh reach the inner one."""
    source = Source()

    @memory_cache(ignore=("source",))
    @disk_cache(tmp_path / "cache", ignore=("source",))
    def extract(text: str) -> Iterator[User]:
        yield from source.sync(text)

    assert list(extract("Ann")) == list(extract("Ann")) == users("Ann")
    assert extract.cache_info().hits == 1
    assert extract.invalidate("Ann") is True
    assert list(extract("Ann")) == users("Ann")
    assert list(extract.refresh("Ann")) == users("Ann")
    assert source.calls == ["Ann", "Ann", "Ann"]


def test_make_cache_key_takes_the_stream_mode() -> None:
    """make_cache_key with stream="final" finds the key a final-mode stream stores under."""

    def extract(text: str) -> Iterator[User]:
        yield from users(text)

    final = instructor_cache(stream="final")(extract)
    assert make_cache_key(extract, ("Ann",), stream="final") == final.cache_key("Ann")
    assert make_cache_key(extract, ("Ann",)) != final.cache_key("Ann")


def test_a_corrupt_stream_entry_is_a_miss_and_is_replaced() -> None:
    """An entry that does not decode is counted as an error and the stream is paid again."""
    store, source = MemoryCache(), Source()
    extract = sync_stream(source, store)
    store.set(extract.cache_key("Ann"), '{"v":2,"created":0,"duration":1,"value":[{"age":"x"}]}')
    assert list(extract("Ann")) == list(extract("Ann")) == users("Ann")
    assert source.calls == ["Ann"]
    assert extract.cache_info().errors == 1


async def test_a_corrupt_async_stream_entry_is_a_miss_and_is_replaced() -> None:
    """The async twin of a corrupt entry: counted, paid again, then replayed."""
    store, source = MemoryCache(), Source()
    extract = async_stream(source, store)
    store.set(extract.cache_key("Ann"), "not json")
    assert [user async for user in extract("Ann")] == users("Ann")
    assert [user async for user in extract("Ann")] == users("Ann")
    assert source.calls == ["Ann"]
    assert extract.cache_info().errors == 1


def test_a_refresh_that_stores_nothing_removes_the_old_entry() -> None:
    """A refreshed stream that cannot be stored must not leave the older items to be replayed."""
    answers = iter([1.0, math.nan, 2.0])

    @instructor_cache(ignore=("answers",))
    def score(text: str) -> Iterator[float]:
        yield next(answers)

    assert list(score("a")) == [1.0]
    (refreshed,) = score.refresh("a")
    assert math.isnan(refreshed)
    assert list(score("a")) == [2.0]


async def test_async_refresh_streams_afresh_and_overwrites_the_entry() -> None:
    """The async refresh calls the function despite the entry and stores the new items."""
    answers = iter(["first", "second"])

    @instructor_cache(ignore=("answers",))
    async def extract(text: str) -> AsyncIterator[User]:
        yield User(name=next(answers), age=len(text))

    assert [u.name async for u in extract("Ann")] == ["first"]
    assert [u.name async for u in extract.refresh("Ann")] == ["second"]
    assert [u.name async for u in extract("Ann")] == ["second"]


class Countdown:
    """An async iterator that is not a generator: it has no aclose()."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __aiter__(self) -> Countdown:
        return self

    async def __anext__(self) -> int:
        if self.n == 0:
            raise StopAsyncIteration
        self.n -= 1
        return self.n


async def test_an_async_iterator_without_aclose_is_a_stream() -> None:
    """A plain def returning any async iterator is recorded, closed or not."""
    calls: list[int] = []

    @instructor_cache(ignore=("calls",))
    def count(n: int) -> AsyncIterator[int]:
        calls.append(n)
        return Countdown(n)

    stream = count(3)
    assert await stream.__anext__() == 2
    await stream.aclose()
    assert [i async for i in count(3)] == [i async for i in count(3)] == [2, 1, 0]
    assert calls == [3, 3]
