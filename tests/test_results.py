"""A hit returns what the call returned: the same kinds of values, streams left alone, pickling."""

from __future__ import annotations

import collections
import copy
import datetime
import functools
import json
import logging
import math
import multiprocessing
import pickle
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import instructor
import openai
import pytest
from instructor.processing.function_calls import openai_schema
from instructor.v2.dsl.response_list import ListResponse
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, computed_field, field_validator

from instructor_cache import DiskCache, MemoryCache, instructor_cache
from instructor_cache._codec import FORMAT_VERSION, Codec, EncodeError
from instructor_cache.backends import Store
from instructor_cache.errors import (
    ConfigurationError,
    UncacheableFunctionError,
    UnencodableArgumentError,
)
from tests import _picklable
from tests._openai import httpx, tool_call_completion
from tests._picklable import Extractor, Shout, shout


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
    return tool_call_completion(body["model"], "IterableUser", arguments)


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


class Scores(list[int]):
    def total(self) -> int:  # a method a plain list lacks
        return sum(self)


class Units(list[int]):
    unit = "kg"  # a public class attribute a plain list lacks


class CallableScores(list[int]):
    def __call__(self) -> int:  # a special method a plain list lacks
        return len(self)


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
        (list[int], Scores([1, 2, 3]), False),
        (list[int], Units([1]), False),
        (list[int], CallableScores([1]), False),
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
        "public-method",
        "public-class-attribute",
        "added-special-method",
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


class Animal(BaseModel):
    name: str

    def speak(self) -> str:
        return "..."


class Dog(Animal):
    def speak(self) -> str:
        return "woof"


class Puppy(Animal):
    """A subclass that adds nothing a caller could tell from an Animal."""


class Tagged(Animal):
    _tag: str = PrivateAttr("private, like instructor's _raw_response")


class Loud(Animal):
    @computed_field  # type: ignore[prop-decorator]
    @property
    def shout(self) -> str:
        return self.name.upper()


class Frozen(Animal):
    model_config = ConfigDict(frozen=True)


class Stripped(Animal):
    @field_validator("name")
    @classmethod
    def strip(cls, name: str) -> str:
        return name.strip()


class Described(Animal):
    def __str__(self) -> str:
        return f"an animal called {self.name}"


class Hooked(Animal):
    def model_post_init(self, context: Any) -> None:
        logging.getLogger(__name__).debug("made %s", self.name)


MODEL_SUBCLASSES: dict[str, tuple[Any, bool]] = {
    "instructor-response-model": (openai_schema(Animal)(name="Rex"), True),
    "adds-nothing": (Puppy(name="Rex"), True),
    "private-attribute": (Tagged(name="Rex"), True),
    "overridden-method": (Dog(name="Rex"), False),
    "computed-field": (Loud(name="Rex"), False),
    "frozen-config": (Frozen(name="Rex"), False),
    "validator": (Stripped(name="Rex"), False),
    "post-init-hook": (Hooked(name="Rex"), False),
    "special-method": (Described(name="Rex"), False),
}


@pytest.mark.parametrize(
    ("value", "stored"), MODEL_SUBCLASSES.values(), ids=MODEL_SUBCLASSES.keys()
)
def test_model_subclasses_are_stored_only_if_they_behave_as_the_annotated_model(
    value: Animal, stored: bool
) -> None:
    """A hit returns the annotated class, so a subclass that adds behaviour is refused."""
    codec: Codec[Animal] = Codec(Animal, where="test()")
    if not stored:
        with pytest.raises(EncodeError, match="reads back as a different value"):
            codec.encode(value, created=0, duration=0)
        return
    reread, _ = codec.decode(codec.encode(value, created=0, duration=0))
    assert type(reread) is Animal
    assert reread.speak() == value.speak()
    assert reread == Animal(name="Rex")


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


def test_a_negative_nan_is_not_stored_as_a_positive_nan() -> None:
    """JSON has one NaN, so a -nan result (its sign visible to copysign) is returned, not stored."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def sense(text: str) -> Sensor:
        calls.append(text)
        return Sensor(reading=-math.nan)

    assert [math.copysign(1, sense("x").reading) for _ in range(2)] == [-1.0, -1.0]
    assert calls == ["x", "x"]


# --- 3b. the fields a call set ---------------------------------------------------------


class Profile(BaseModel):
    name: str
    age: int | None = None
    tags: list[str] = []


class Team(BaseModel):
    lead: Profile
    members: list[Profile] = []
    note: str = ""


def test_a_hit_has_the_fields_set_the_call_returned() -> None:
    """Fields the LLM left out stay unset on a hit, in nested models too, as exclude_unset sees."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def extract(text: str) -> Team:
        calls.append(text)
        return Team.model_validate_json(text)

    text = '{"lead": {"name": "Ann"}, "members": [{"name": "Bob", "age": 3}]}'
    fresh, hit = extract(text), extract(text)
    assert calls == [text]
    assert hit == fresh
    assert hit.model_fields_set == fresh.model_fields_set == {"lead", "members"}
    assert hit.lead.model_fields_set == fresh.lead.model_fields_set == {"name"}
    assert hit.members[0].model_fields_set == {"name", "age"}
    assert hit.model_dump(exclude_unset=True) == fresh.model_dump(exclude_unset=True)


def test_a_chain_of_cached_calls_pays_each_call_once() -> None:
    """summarize(extract(text)) keys a hit's model as it keyed the fresh one: no second call."""
    backend, paid = MemoryCache(), collections.Counter[str]()

    @instructor_cache(backend, ignore=("paid",))
    def extract(text: str) -> Profile:
        paid["extract"] += 1
        return Profile.model_validate({"name": text.partition(" ")[0]})  # the LLM left age out

    @instructor_cache(backend, ignore=("paid",))
    def summarize(profile: Profile) -> str:
        paid["summarize"] += 1
        return f"{profile.name} ({profile.age})"

    for _ in range(2):
        assert summarize(extract("Jason is a developer")) == "Jason (None)"
    assert paid == {"extract": 1, "summarize": 1}


class Ticket(BaseModel):
    title: str
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)


def test_a_default_factory_field_is_stored_only_if_it_was_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unset id from uuid4 would read back as another id: returned each time, warned once."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def open_ticket(title: str, given: str | None = None) -> Ticket:
        calls.append(title)
        return Ticket(title=title) if given is None else Ticket(title=title, id=given)

    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        ids = {open_ticket("x").id for _ in range(3)}
        assert [open_ticket("y", "fixed").id for _ in range(2)] == ["fixed", "fixed"]
    assert len(ids) == 3
    assert calls == ["x", "x", "x", "y"]
    assert open_ticket.cache_info().currsize == 1
    assert len(unstored_warnings(caplog)) == 1


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
    with pytest.raises(ConfigurationError, match="not a store"):
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
    backend: Store = MemoryCache() if kind == "memory" else disk()
    calls: list[str] = []

    @instructor_cache(backend)
    def extract(text: str) -> User:
        calls.append(text)
        return User(name=text, age=1)

    value = '{"name":"Ann","age":1}'
    entry = f'{{"v":{FORMAT_VERSION},"created":0,"duration":{duration},"value":{value}}}'
    backend.set(extract.cache_key("Ann"), entry)
    assert extract("Ann") == User(name="Ann", age=1)
    assert extract.cache_info().hits == 1
    assert extract.cache_info().time_saved == counted
    assert calls == []
