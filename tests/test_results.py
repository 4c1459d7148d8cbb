"""A hit returns what the call returned: the same kinds of values, streams left alone, pickling."""

from __future__ import annotations

import collections
import copy
import datetime
import functools
import json
import logging
import multiprocessing
import pickle
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import instructor
import openai
import pytest
from instructor.v2.dsl.response_list import ListResponse
from pydantic import BaseModel, ConfigDict

from instructor_cache import DiskCache, MemoryCache, instructor_cache
from instructor_cache._codec import Codec, EncodeError
from instructor_cache.backends import Backend
from instructor_cache.errors import (
    ConfigurationError,
    UncacheableFunctionError,
    UnencodableArgumentError,
)
from tests import _picklable
from tests._picklable import Extractor, Shout, shout

try:  # openai 3 moved to the httpx2 fork; older releases use httpx
    import httpx2 as httpx  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef, unused-ignore]


class User(BaseModel):
    name: str
    age: int


NEW_YORK = ZoneInfo("America/New_York")


def unstored_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not caching" in r.getMessage()]


# --- 1. instructor's ListResponse -------------------------------------------------------


def answer_with_users(request: Any) -> Any:
    """An OpenAI chat completion whose tool call holds two users, as instructor asks for them."""
    body = json.loads(request.content)
    arguments = json.dumps({"tasks": [{"name": "Ann", "age": 31}, {"name": "Bob", "age": 42}]})
    call = {"id": "c1", "type": "function", "function": {"name": "IterableUser"}}
    call["function"]["arguments"] = arguments  # type: ignore[index]
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        },
    )


def test_instructor_list_results_are_cached(caplog: pytest.LogCaptureFixture) -> None:
    """A ``list[User]`` call through a real instructor client returns a ListResponse: stored."""
    requests: list[Any] = []

    def transport(request: Any) -> Any:
        requests.append(request)
        return answer_with_users(request)

    http = httpx.Client(transport=httpx.MockTransport(transport))
    client = instructor.from_openai(openai.OpenAI(api_key="test-key", http_client=http))

    @instructor_cache(ignore=("llm",))
    def extract_users(text: str, llm: Any) -> list[User]:
        users: list[User] = llm.chat.completions.create(
            model="gpt-4o-mini",
            response_model=list[User],
            messages=[{"role": "user", "content": text}],
        )
        return users

    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        first = extract_users("Ann is 31, Bob is 42", client)
        second = extract_users("Ann is 31, Bob is 42", client)
    assert type(first) is ListResponse
    assert first.get_raw_response() is not None
    assert second == [User(name="Ann", age=31), User(name="Bob", age=42)]
    assert type(second) is list
    assert len(requests) == 1
    assert extract_users.cache_info().hits == 1
    assert unstored_warnings(caplog) == []


class Tags(list[str]):
    """A list subclass that adds nothing a caller could tell from a list."""


class LabelledTags(list[str]):
    def __init__(self, items: Iterable[str], label: str) -> None:
        super().__init__(items)
        self.label = label  # public state: a hit could not give it back


class LoggedTags(list[str]):
    def __iter__(self) -> Iterator[str]:
        logging.getLogger(__name__).debug("iterating")  # behaviour a plain list lacks
        return list.__iter__(self)


class Pair(NamedTuple):
    left: int
    right: int


@pytest.mark.parametrize(
    ("annotation", "value", "stored"),
    [
        (list[User], ListResponse([User(name="a", age=1)], _raw_response=object()), True),
        (list[str], Tags(["a", "b"]), True),
        (list[str], LabelledTags(["a"], label="x"), False),
        (list[str], LoggedTags(["a", "b"]), False),
        (dict[str, int], collections.defaultdict(int, {"a": 1}), False),
        (dict[str, int], collections.Counter({"a": 1}), False),
        (dict[str, int], collections.OrderedDict({"a": 1}), False),
        (tuple[int, int], Pair(1, 2), False),
    ],
    ids=[
        "instructor-ListResponse",
        "plain-subclass",
        "public-attribute",
        "overridden-iter",
        "defaultdict",
        "Counter",
        "OrderedDict",
        "namedtuple",
    ],
)
def test_container_subclasses_are_stored_only_if_they_behave_as_the_container(
    annotation: Any, value: Any, stored: bool
) -> None:
    """A list subclass with only private additions comes back as the list; others are refused."""
    codec: Codec[Any] = Codec(annotation, where="test()")
    if not stored:
        with pytest.raises(EncodeError, match="reads back as a different value"):
            codec.encode(value, created=0, duration=0)
        return
    reread, _ = codec.decode(codec.encode(value, created=0, duration=0))
    assert reread == list(value)
    assert type(reread) is list


# --- 2. iterators and streams -------------------------------------------------------------


def user_named(name: str) -> User:
    return User(name=name, age=len(name))


def users_generator(text: str) -> Iterator[User]:
    for name in text.split():
        yield user_named(name)


STREAMS: dict[str, Callable[[str], Any]] = {
    "generator": users_generator,
    "map": lambda text: map(user_named, text.split()),
    "list-iterator": lambda text: iter(list(users_generator(text))),
}


@pytest.mark.parametrize("make_stream", STREAMS.values(), ids=STREAMS.keys())
@pytest.mark.parametrize("annotation", [list[User], User], ids=["list", "model"])
def test_an_iterator_result_reaches_the_caller_unconsumed_and_is_not_stored(
    make_stream: Callable[[str], Any], annotation: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A function that returns a generator or map (annotated or not as one) returns it whole."""
    calls: list[str] = []

    def extract(text: str) -> Any:
        calls.append(text)
        return make_stream(text)

    extract.__annotations__["return"] = annotation
    cached = instructor_cache(extract)
    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        for _ in range(2):
            assert list(cached("Ann Bob")) == [User(name="Ann", age=3), User(name="Bob", age=3)]
    assert calls == ["Ann Bob", "Ann Bob"]
    assert cached.cache_info().currsize == 0
    assert len(unstored_warnings(caplog)) == 1


async def ausers(text: str) -> AsyncIterator[User]:
    for name in text.split():
        yield User(name=name, age=len(name))


async def test_async_functions_returning_iterators_hand_them_over_unconsumed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An async function's generator or async generator result is returned whole, not stored."""
    calls: list[str] = []

    @instructor_cache
    async def extract(text: str) -> list[User]:
        calls.append(text)
        return users_generator(text)  # type: ignore[return-value]

    @instructor_cache
    async def stream(text: str) -> list[User]:
        calls.append(text)
        return ausers(text)  # type: ignore[return-value]

    expected = [User(name="Ann", age=3), User(name="Bob", age=3)]
    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        for _ in range(2):
            assert list(await extract("Ann Bob")) == expected
            assert [user async for user in await stream("Ann Bob")] == expected  # type: ignore[attr-defined]
    assert len(calls) == 4
    assert len(unstored_warnings(caplog)) == 2


class Batch(BaseModel):
    """pydantic validates an ``Iterable`` field into a lazy one-shot iterator."""

    users: Iterable[User]


def test_a_model_holding_a_lazy_iterator_field_is_returned_unconsumed() -> None:
    """Storing the model would drain its iterator field, so it is returned as it came."""
    calls: list[str] = []

    @instructor_cache
    def extract(text: str) -> Batch:
        calls.append(text)
        return Batch(users=[User(name=text, age=1)])

    for _ in range(2):
        assert list(extract("Ann").users) == [User(name="Ann", age=1)]
    assert len(calls) == 2


# --- 3. values that are == but not the same -----------------------------------------------


class Meeting(BaseModel):
    title: str
    when: datetime.datetime


def test_a_zoneinfo_datetime_is_not_stored_as_a_fixed_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hit must not come back an hour off after DST arithmetic, so a zoned time is not stored."""
    calls: list[str] = []

    @instructor_cache
    def schedule(title: str) -> Meeting:
        calls.append(title)
        return Meeting(title=title, when=datetime.datetime(2024, 3, 9, 12, tzinfo=NEW_YORK))

    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        results = [schedule("standup") for _ in range(2)]
    next_day = [(m.when + datetime.timedelta(days=1)).isoformat() for m in results]
    assert next_day == ["2024-03-10T12:00:00-04:00"] * 2
    assert len(calls) == 2
    assert len(unstored_warnings(caplog)) == 1


class Reading(BaseModel):
    value: float
    unit: str


def test_an_int_in_a_float_field_is_not_stored_as_a_float() -> None:
    """A field assigned an int reads back as a float, which prints and divides differently."""
    calls: list[str] = []

    @instructor_cache
    def measure(text: str) -> Reading:
        calls.append(text)
        reading = Reading(value=0.5, unit="kg")
        reading.value = 3  # no validate_assignment: the int stays
        return reading

    assert [repr(measure("x").value) for _ in range(2)] == ["3", "3"]
    assert len(calls) == 2


class Sensor(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")

    reading: float


def test_a_nan_that_round_trips_is_stored_and_comes_back_nan() -> None:
    """A model that writes NaN as a JSON constant reads it back as NaN: the same value, stored."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def sense(text: str) -> Sensor:
        calls.append(text)
        return Sensor(reading=float("nan"))

    assert [sense("x").reading != sense("x").reading for _ in range(2)] == [True, True]
    assert calls == ["x"]


# --- 4. pickling and copying by reference --------------------------------------------------


@pytest.mark.parametrize(
    "decorated",
    [shout, vars(Extractor)["extract"], vars(Extractor)["describe"]],
    ids=["function", "cached-method", "cached-classmethod"],
)
def test_decorated_functions_pickle_and_copy_by_reference(decorated: Any) -> None:
    """Like lru_cache wrappers, decorated functions and cached methods are their own copies."""
    assert pickle.loads(pickle.dumps(decorated)) is decorated  # noqa: S301  (our own bytes)
    assert copy.copy(decorated) is decorated
    assert copy.deepcopy(decorated) is decorated


def test_a_bound_cached_method_pickles_its_instance_by_value() -> None:
    """``pickle(obj.extract)`` carries obj's data and finds the method by name on the other side.

    Cached classmethods, in either decorator order, are found by name on their class.
    """
    bound = Extractor(suffix="!").extract
    restored = pickle.loads(pickle.dumps(bound))  # noqa: S301  (our own bytes)
    assert restored.__self__ == Extractor(suffix="!")
    assert restored("hi") == Shout(text="hi!")
    assert restored.cache_key("hi") == bound.cache_key("hi")
    assert copy.deepcopy(bound)("hi") == copy.copy(bound)("hi") == Shout(text="hi!")
    for method, expected in [
        (Extractor.describe, "Extractor:x"),
        (Extractor.describe_below, "Extractor/x"),
    ]:
        restored_method = pickle.loads(pickle.dumps(method))  # noqa: S301  (our own bytes)
        assert restored_method("x") == Shout(text=expected)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_process_pool_maps_decorated_functions_and_bound_cached_methods(start: str) -> None:
    """``ProcessPoolExecutor().map(extractor.extract, texts)`` works as with lru_cache."""
    texts = ["a", "b", "a"]
    context = multiprocessing.get_context(start)
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        shouted = list(pool.map(shout, texts))
        extracted = list(pool.map(Extractor(suffix="?").extract, texts))
        described = list(pool.map(Extractor.describe, texts))
    assert shouted == [Shout(text=t.upper()) for t in texts]
    assert extracted == [Shout(text=t + "?") for t in texts]
    assert described == [Shout(text=f"Extractor:{t}") for t in texts]
    assert _picklable.__name__ == "tests._picklable"  # importable where spawn children look


# --- 5. misuse is reported at decoration time ----------------------------------------------


@pytest.mark.parametrize("backend_class", [MemoryCache, DiskCache], ids=lambda c: c.__name__)
def test_a_backend_class_instead_of_an_instance_is_a_configuration_error(
    backend_class: type,
) -> None:
    """``@instructor_cache(MemoryCache)`` would never cache: it says to pass an instance."""
    with pytest.raises(ConfigurationError, match=rf"pass an instance.*{backend_class.__name__}\("):
        instructor_cache(backend_class)
    with pytest.raises(ConfigurationError, match="not a backend"):
        instructor_cache(backend_class, ttl=60)


def locate(city: str, text: str) -> User:
    return User(name=f"{text} of {city}", age=0)


def test_a_partial_is_refused_with_what_to_decorate_instead() -> None:
    """A functools.partial has no name to key by: the error says to decorate the function."""
    with pytest.raises(UncacheableFunctionError, match="Decorate the underlying function"):
        instructor_cache(functools.partial(locate, "Paris"))
    with pytest.raises(UncacheableFunctionError, match=r"functools\.partial"):
        instructor_cache(MemoryCache())(functools.partial(locate, "Paris"))


def test_a_key_function_written_for_the_text_gets_an_error_that_shows_the_dict() -> None:
    """``key=lambda text: text.lower()`` fails at the call with how key= is called, and why."""

    @instructor_cache(key=lambda text: text.lower())
    def extract(text: str, model: str = "small") -> User:
        return User(name=text, age=0)

    with pytest.raises(UnencodableArgumentError, match=r"dict of the arguments") as info:
        extract("Ann")
    assert "['text', 'model']" in str(info.value)
    assert 'key=lambda args: args["text"]' in str(info.value)
    assert isinstance(info.value.__cause__, AttributeError)
    assert isinstance(info.value, TypeError)


# --- stored durations are not trusted -------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "counted"),
    [("1e308", 86400.0), ("-5", 0.0), ("NaN", 0.0), ("Infinity", 86400.0), ("2.5", 2.5)],
)
@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_a_planted_duration_cannot_make_time_saved_meaningless(
    duration: str,
    counted: float,
    kind: str,
    disk: Callable[..., DiskCache],
) -> None:
    """A hit counts between 0 and a day as saved, whatever duration its entry claims."""
    backend: Backend = MemoryCache() if kind == "memory" else disk()
    calls: list[str] = []

    @instructor_cache(backend)
    def extract(text: str) -> User:
        calls.append(text)
        return User(name=text, age=1)

    entry = '{"v":1,"created":0,"duration":%s,"value":{"name":"Ann","age":1}}' % duration  # noqa: UP031
    backend.set(extract.cache_key("Ann"), entry)
    assert extract("Ann") == User(name="Ann", age=1)
    assert extract.cache_info().hits == 1
    assert extract.cache_info().time_saved == counted
    assert calls == []
