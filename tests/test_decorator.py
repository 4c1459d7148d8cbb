"""Behaviour of @instructor_cache, sync and async.

What a store can change (a hit, a miss, TTL expiry, invalidate, refresh, a
corrupt entry, cache_clear, the size in cache_info) is written once and runs on
every store kind: memory, disk, Redis, Redis Cluster and tiered. What no store
changes (which calls share a key, the codec, the options, the decorated
function's shape) runs once, on a MemoryCache: running it on Redis as well
would test the same code more slowly.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import random
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field, field_validator

from instructor_cache import CacheInfo, MemoryCache, instructor_cache
from instructor_cache.backends import SizedStore, Store
from tests import _value_space as space
from tests._fakes import Clock, FakeLLM, UserDetail
from tests.conftest import BackendKind


class Flavour:
    """Turns a sync function body into the flavour under test and calls it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def define(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if self.name == "sync":
            return fn

        @functools.wraps(fn)
        async def async_fn(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return fn(*args, **kwargs)

        # A wrapper that passes its arguments through unchanged says so, and
        # is keyed with the function's defaults applied.
        async_fn.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        return async_fn

    def run(self, result: Any) -> Any:
        """Return ``result``, awaited in a fresh event loop when it is a coroutine."""
        if inspect.iscoroutine(result):
            return asyncio.run(result)
        return result


FLAVOURS = (Flavour("sync"), Flavour("async"))


@pytest.fixture(params=FLAVOURS, ids=repr)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    chosen: Flavour = request.param
    return chosen


@pytest.fixture
def store() -> MemoryCache:
    """The store for behaviour that no store changes: the fastest one."""
    return MemoryCache(maxsize=1024)


def make_extract(
    llm: FakeLLM, flavour: Flavour, store: Store | None, **options: Any
) -> Callable[..., Any]:
    def extract(text: str, model: str = "gpt-4o-mini") -> UserDetail:
        return llm(text, model)

    decorate = instructor_cache(store, ignore=("llm",), **options)
    return decorate(flavour.define(extract))  # type: ignore[no-any-return]


# What a store can change: on every store kind (the ``backend`` fixture), sync and async.


def test_second_call_is_a_hit(llm: FakeLLM, flavour: Flavour, backend: Store) -> None:
    """The second identical call returns an equal result without calling the function."""
    extract = make_extract(llm, flavour, backend)
    first = flavour.run(extract("Jason is 25"))
    second = flavour.run(extract("Jason is 25"))
    assert first == second == UserDetail(name="Jason", age=25)
    assert len(llm.calls) == 1
    info = extract.cache_info()
    assert (info.hits, info.misses, info.errors) == (1, 1, 0)
    assert info.currsize == (1 if isinstance(backend, SizedStore) else None)  # Redis: no count


TTL = 0.6  # seconds: real stores expire it for real, so keep it short


def test_decorator_ttl_expires_entries(
    llm: FakeLLM, backend_kind: BackendKind, make_backend: Callable[..., Store], clock: Clock
) -> None:
    """An entry is a hit until the decorator's ttl has passed and a miss after, sync and async.

    Memory reads an injected clock; disk, Redis and the tiers (whose first is
    a MemoryCache on the real clock) expire on their own clocks, so the test
    sleeps once for both flavours, until twice the TTL after the writes.
    """
    store = make_backend(timer=clock) if backend_kind is BackendKind.MEMORY else make_backend()
    answers = {"Cy is 7": UserDetail(name="Cy", age=7), "Di is 8": UserDetail(name="Di", age=8)}
    decorated = [  # one text per flavour, so that their entries differ
        (flavour, text, make_extract(llm, flavour, store, ttl=TTL))
        for flavour, text in zip(FLAVOURS, answers, strict=True)
    ]

    def call_each() -> None:
        for flavour, text, extract in decorated:
            assert flavour.run(extract(text)) == answers[text]

    call_each()
    written = time.monotonic()
    call_each()
    assert [call[0] for call in llm.calls] == list(answers)  # the second calls were hits
    if backend_kind is BackendKind.MEMORY:
        clock.advance(2 * TTL)
    else:
        time.sleep(max(0.0, written + 2 * TTL - time.monotonic()))
    call_each()
    assert [call[0] for call in llm.calls] == [*answers, *answers]
    for _, _, extract in decorated:
        info = extract.cache_info()
        assert (info.hits, info.misses, info.errors) == (1, 2, 0)


def check_corrupt_entry_is_replaced(
    llm: FakeLLM, flavour: Flavour, store: Store, garbage: str
) -> None:
    """Text that does not decode is counted as an error and a miss, and the function runs."""
    extract = make_extract(llm, flavour, store)
    key = extract.cache_key("Di is 9")
    store.set(key, garbage)
    assert flavour.run(extract("Di is 9")) == UserDetail(name="Di", age=9)
    info = extract.cache_info()
    assert (info.hits, info.misses, info.errors) == (0, 1, 1)
    assert store.get(key) != garbage
    assert flavour.run(extract("Di is 9")) == UserDetail(name="Di", age=9)
    assert len(llm.calls) == 1


def test_corrupt_entry_is_a_miss_and_is_replaced(
    llm: FakeLLM, flavour: Flavour, backend: Store
) -> None:
    """A stored text that is not an entry is a miss, counted as an error, then overwritten."""
    check_corrupt_entry_is_replaced(llm, flavour, backend, "not json")


def test_corrupt_entry_is_deleted_even_if_the_call_fails(flavour: Flavour, backend: Store) -> None:
    """An undecodable entry is removed although the function raised and stored nothing."""

    def failing(text: str) -> UserDetail:
        raise RuntimeError(text)

    cached = instructor_cache(backend)(flavour.define(failing))
    backend.set(cached.cache_key("q"), "garbage")
    with pytest.raises(RuntimeError):
        flavour.run(cached("q"))
    assert backend.get(cached.cache_key("q")) is None


def test_invalidate_removes_one_entry(llm: FakeLLM, flavour: Flavour, backend: Store) -> None:
    """invalidate() drops one call's entry and says whether there was one."""
    extract = make_extract(llm, flavour, backend)
    flavour.run(extract("Ed is 1"))
    flavour.run(extract("Fay is 2"))
    assert flavour.run(extract.invalidate("Ed is 1")) is True
    assert flavour.run(extract.invalidate("Ed is 1")) is False
    flavour.run(extract("Ed is 1"))
    flavour.run(extract("Fay is 2"))
    assert [c[0] for c in llm.calls] == ["Ed is 1", "Fay is 2", "Ed is 1"]


def test_cache_clear_keeps_other_functions_entries(
    llm: FakeLLM, flavour: Flavour, backend: Store
) -> None:
    """cache_clear() (awaited acache_clear() for async) empties one function's entries only."""
    first = make_extract(llm, flavour, backend)

    def other(text: str) -> UserDetail:
        return llm(text, "other")

    second = instructor_cache(backend, ignore=("llm",))(flavour.define(other))
    flavour.run(first("Gil is 4"))
    flavour.run(second("Gil is 4"))
    flavour.run(first.acache_clear() if flavour.name == "async" else first.cache_clear())
    assert first.cache_info()[:2] == (0, 0)
    flavour.run(first("Gil is 4"))
    flavour.run(second("Gil is 4"))
    assert [c[1] for c in llm.calls] == ["gpt-4o-mini", "other", "gpt-4o-mini"]
    assert second.cache_info().hits == 1


def test_stacked_layers_on_one_backend_keep_their_own_entries(
    llm: FakeLLM, flavour: Flavour, backend: Store
) -> None:
    """Two layers sharing a backend have distinct keys; clearing the outer keeps the inner."""

    def extract(text: str) -> UserDetail:
        return llm(text)

    inner = instructor_cache(backend, ignore=("llm",))(flavour.define(extract))
    outer = instructor_cache(backend, ignore=("llm",))(inner)
    assert outer.cache_key("Lu is 2") != inner.cache_key("Lu is 2")
    flavour.run(outer("Lu is 2"))
    outer.cache_clear()
    flavour.run(outer("Lu is 2"))
    assert inner.cache_info().hits == 1
    assert len(llm.calls) == 1


def test_refresh_overwrites_the_entry(flavour: Flavour, backend: Store) -> None:
    """refresh() calls the function even on a hit and stores what it returns."""
    ages = iter(range(10, 20))

    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=next(ages))

    cached = instructor_cache(backend, ignore=("ages",))(flavour.define(extract))
    assert flavour.run(cached("h")).age == 10
    assert flavour.run(cached.refresh("h")).age == 11
    assert flavour.run(cached("h")).age == 11


def test_refresh_that_stores_nothing_removes_the_old_entry(
    flavour: Flavour, backend: Store
) -> None:
    """When cache_if rejects the refreshed result, the stale entry does not come back."""
    answers = iter([["a"], [], []])

    def users(text: str) -> list[str]:
        return next(answers)

    cached = instructor_cache(backend, cache_if=bool, ignore=("answers",))(flavour.define(users))
    assert flavour.run(cached("t")) == ["a"]
    assert flavour.run(cached.refresh("t")) == []
    assert flavour.run(cached("t")) == []


def test_sync_and_async_twins_without_code_fingerprint_share_keys(
    llm: FakeLLM, backend: Store
) -> None:
    """Given one ``name=`` and no code fingerprint, sync and async twins share entries."""
    options: dict[str, Any] = {
        "name": "shared.extract",
        "code_fingerprint": False,
        "ignore": ("llm",),
    }

    @instructor_cache(backend, **options)
    def sync_extract(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(backend, **options)
    async def async_extract(text: str) -> UserDetail:
        return llm(text)

    assert sync_extract.cache_key("Hal is 8") == async_extract.cache_key("Hal is 8")
    sync_extract("Hal is 8")
    assert asyncio.run(async_extract("Hal is 8")) == UserDetail(name="Hal", age=8)
    asyncio.run(async_extract("Ida is 6"))
    assert sync_extract("Ida is 6") == UserDetail(name="Ida", age=6)
    assert len(llm.calls) == 2


# What no store changes: once, on a MemoryCache (the ``store`` fixture), sync and async.


def test_hit_returns_a_new_instance(llm: FakeLLM, flavour: Flavour, store: Store) -> None:
    """Mutating a returned result does not change what the next hit returns."""
    extract = make_extract(llm, flavour, store)
    first = flavour.run(extract("Ann is 30"))
    first.age = 99
    second = flavour.run(extract("Ann is 30"))
    second.name = "changed"
    third = flavour.run(extract("Ann is 30"))
    assert third == UserDetail(name="Ann", age=30)
    assert type(third) is UserDetail
    assert len(llm.calls) == 1


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("Bo is 3",), {}),
        ((), {"text": "Bo is 3"}),
        (("Bo is 3", "gpt-4o-mini"), {}),
        (("Bo is 3",), {"model": "gpt-4o-mini"}),
        ((), {"model": "gpt-4o-mini", "text": "Bo is 3"}),
    ],
    ids=["positional", "keyword", "default-spelled-out", "default-by-keyword", "reordered"],
)
def test_arguments_are_bound_to_the_signature(
    llm: FakeLLM,
    flavour: Flavour,
    store: Store,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """Every spelling of the same call, defaults applied, hits the entry of the first."""
    extract = make_extract(llm, flavour, store)
    flavour.run(extract("Bo is 3"))
    assert flavour.run(extract(*args, **kwargs)) == UserDetail(name="Bo", age=3)
    assert len(llm.calls) == 1


def test_different_arguments_miss(llm: FakeLLM, flavour: Flavour, store: Store) -> None:
    """A different argument value is a different entry."""
    extract = make_extract(llm, flavour, store)
    flavour.run(extract("Bo is 3"))
    assert flavour.run(extract("Bo is 3", model="gpt-4o")) == UserDetail(name="Bo", age=3)
    assert flavour.run(extract("Bo is 4")) == UserDetail(name="Bo", age=4)
    assert len(llm.calls) == 3


def test_exceptions_are_not_cached(flavour: Flavour, store: Store) -> None:
    """An exception propagates unchanged, and the next call runs the function again."""
    attempts: list[int] = []

    def flaky(text: str) -> UserDetail:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("rate limited")
        return UserDetail(name=text, age=1)

    cached = instructor_cache(store, ignore=("attempts",))(flavour.define(flaky))
    with pytest.raises(ValueError, match="rate limited"):
        flavour.run(cached("x"))
    assert flavour.run(cached("x")) == UserDetail(name="x", age=1)
    assert flavour.run(cached("x")) == UserDetail(name="x", age=1)
    assert len(attempts) == 2


def test_none_is_cached_as_a_value(flavour: Flavour, store: Store) -> None:
    """A function returning None for an Optional model caches None, distinct from a miss."""
    calls: list[str] = []

    def find(text: str) -> UserDetail | None:
        calls.append(text)
        return None

    cached = instructor_cache(store, ignore=("calls",))(flavour.define(find))
    assert flavour.run(cached("nobody")) is None
    assert flavour.run(cached("nobody")) is None
    assert calls == ["nobody"]
    assert cached.cache_info().hits == 1


def test_schema_change_is_a_miss(flavour: Flavour, store: Store) -> None:
    """The same function returning a changed model never reads the old model's entry."""

    def define(model: type[BaseModel], age: int) -> Callable[..., Any]:
        def extract(text: str) -> BaseModel:
            return model(name=text, age=age)

        extract.__annotations__["return"] = model  # a local class: set it, not a string
        return instructor_cache(store)(flavour.define(extract))

    class Person(BaseModel):
        name: str
        age: int

    old = define(Person, 1)
    assert flavour.run(old("a")).age == 1

    class Person(BaseModel):  # type: ignore[no-redef]  # the same model, one description added
        name: str
        age: int = Field(description="age in years")

    new = define(Person, 2)
    assert old.cache_key("a") != new.cache_key("a")
    assert flavour.run(new("a")).age == 2
    assert new.cache_info().misses == 1
    assert flavour.run(old("a")).age == 1  # the old entry is still there for the old model


def test_version_bump_is_a_miss(llm: FakeLLM, flavour: Flavour, store: Store) -> None:
    """Bumping ``version`` invalidates every earlier entry of the function."""
    v1 = make_extract(llm, flavour, store, version="1")
    v2 = make_extract(llm, flavour, store, version="2")
    flavour.run(v1("Al is 5"))
    flavour.run(v2("Al is 5"))
    flavour.run(v1("Al is 5"))
    assert len(llm.calls) == 2
    assert v1.cache_key("Al is 5") != v2.cache_key("Al is 5")


def test_namespace_separates_entries(llm: FakeLLM, flavour: Flavour, store: Store) -> None:
    """Two namespaces on one store never read each other's entries."""
    a = make_extract(llm, flavour, store, namespace="team-a")
    b = make_extract(llm, flavour, store, namespace="team-b")
    flavour.run(a("Al is 5"))
    flavour.run(b("Al is 5"))
    assert len(llm.calls) == 2
    assert a.cache_key("Al is 5").startswith("team-a:")


def test_store_ttl_applies_when_decorator_has_none(
    llm: FakeLLM, flavour: Flavour, clock: Clock
) -> None:
    """A store's own ttl is the default for entries written without one."""
    extract = make_extract(
        llm, flavour, MemoryCache(ttl=datetime.timedelta(minutes=1), timer=clock)
    )
    flavour.run(extract("Cy is 7"))
    clock.advance(59)
    flavour.run(extract("Cy is 7"))
    clock.advance(2)
    flavour.run(extract("Cy is 7"))
    assert len(llm.calls) == 2


@pytest.mark.parametrize(
    "garbage",
    [
        "not json",
        '{"v": 1, "created": 0, "duration": 0, "value": {"name": "x"}}',
        '{"v": 999, "created": 0, "duration": 0, "value": {"name": "x", "age": 1}}',
        '{"name": "x", "age": 1}',
        "",
    ],
    ids=["not-json", "old-schema", "future-format", "bare-value", "empty"],
)
def test_every_kind_of_undecodable_entry_is_a_miss(
    llm: FakeLLM, flavour: Flavour, store: Store, garbage: str
) -> None:
    """Text that is not, or no longer, an entry of this function is a counted miss, replaced."""
    check_corrupt_entry_is_replaced(llm, flavour, store, garbage)


def test_cache_if_false_returns_without_storing(flavour: Flavour, store: Store) -> None:
    """A result the cache_if predicate rejects is returned but never stored."""
    calls: list[str] = []

    def extract(text: str) -> list[UserDetail]:
        calls.append(text)
        return [] if text == "empty" else [UserDetail(name=text, age=0)]

    cached = instructor_cache(store, cache_if=bool, ignore=("calls",))(flavour.define(extract))
    for _ in range(2):
        assert flavour.run(cached("empty")) == []
        assert flavour.run(cached("full")) == [UserDetail(name="full", age=0)]
    assert calls == ["empty", "full", "empty"]


def test_cache_info_is_shaped_like_functools(llm: FakeLLM, store: Store) -> None:
    """cache_info() is a named tuple whose first four fields are functools'."""
    extract = make_extract(llm, Flavour("sync"), store)
    extract("J is 1")
    extract("J is 1")
    info = extract.cache_info()
    assert isinstance(info, CacheInfo)
    assert info._fields[:4] == functools.lru_cache(lambda: None).cache_info()._fields
    hits, misses, maxsize, currsize, errors, time_saved, tiers, tokens, cost = info
    assert (hits, misses, maxsize, currsize, errors, tiers) == (1, 1, 1024, 1, 0, ())
    assert time_saved >= 0
    assert (tokens, cost) == (0, 0.0)  # FakeLLM's results carry no usage


def test_signature_and_wrapped_are_kept(llm: FakeLLM, flavour: Flavour, store: Store) -> None:
    """The decorated function keeps its name, docstring, signature and __wrapped__."""

    def extract(text: str, model: str = "m") -> UserDetail:
        """Extract a user."""
        return llm(text, model)

    original = flavour.define(extract)
    cached = instructor_cache(store, ignore=("llm",))(original)
    assert cached.__wrapped__ is original
    assert cached.__name__ == "extract"
    assert cached.__doc__ == "Extract a user."
    assert inspect.signature(cached) == inspect.signature(extract)
    assert inspect.iscoroutinefunction(cached) is (flavour.name == "async")


def test_stacked_layers_are_independent(llm: FakeLLM, flavour: Flavour, store: Store) -> None:
    """A memory layer over another layer serves hits first; each layer keeps its own stats."""

    def extract(text: str) -> UserDetail:
        return llm(text)

    inner = instructor_cache(store, ignore=("llm",))(flavour.define(extract))
    outer = instructor_cache(MemoryCache(maxsize=10), ignore=("llm",))(inner)
    flavour.run(outer("Kay is 2"))
    flavour.run(outer("Kay is 2"))
    assert (outer.cache_info().hits, inner.cache_info().hits) == (1, 0)
    outer.cache_clear()
    flavour.run(outer("Kay is 2"))
    assert (outer.cache_info().misses, inner.cache_info().hits) == (1, 1)
    assert len(llm.calls) == 1
    assert outer.__wrapped__ is inner


def test_refresh_and_invalidate_reach_the_layers_below(flavour: Flavour, store: Store) -> None:
    """On stacked layers refresh() calls the function itself and invalidate() clears every layer."""
    ages = iter(range(100))

    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=next(ages))

    inner = instructor_cache(store, ignore=("ages",))(flavour.define(extract))
    outer = instructor_cache(MemoryCache(), ignore=("ages",))(inner)
    assert flavour.run(outer("a")).age == 0
    assert flavour.run(outer.refresh("a")).age == 1
    assert flavour.run(outer("a")).age == 1
    assert flavour.run(inner("a")).age == 1
    assert flavour.run(outer.invalidate("a")) is True
    assert flavour.run(outer("a")).age == 2


def test_closures_from_one_factory_do_not_share_entries(flavour: Flavour, store: Store) -> None:
    """Two closures with the same qualified name differ by their captured values."""

    def make_extractor(language: str) -> Callable[..., Any]:
        def extract(question: str) -> UserDetail:
            return UserDetail(name=f"[{language}] {question}", age=0)

        return instructor_cache(store)(flavour.define(extract))

    french, german = make_extractor("French"), make_extractor("German")
    assert flavour.run(french("hi")).name == "[French] hi"
    assert flavour.run(german("hi")).name == "[German] hi"
    assert flavour.run(make_extractor("French")("hi")).name == "[French] hi"


def test_a_bound_method_decorated_directly_is_keyed_by_its_instance(store: Store) -> None:
    """instructor_cache(obj.method) keys by obj; an instance with no stable encoding is refused."""
    from instructor_cache.errors import UnencodableArgumentError

    class Extractor(BaseModel):
        language: str

        def extract(self, text: str) -> UserDetail:
            return UserDetail(name=f"{self.language}:{text}", age=0)

    french = instructor_cache(store)(Extractor(language="fr").extract)
    german = instructor_cache(store)(Extractor(language="de").extract)
    assert (french("x").name, german("x").name) == ("fr:x", "de:x")

    class Client:
        def extract(self, text: str) -> UserDetail:
            return UserDetail(name=text, age=0)

    with pytest.raises(UnencodableArgumentError, match="bound method"):
        instructor_cache(store)(Client().extract)


class PythonOnly(BaseModel):
    """A validator written for Python input: on JSON input it raises AttributeError."""

    created: datetime.datetime

    @field_validator("created", mode="before")
    @classmethod
    def to_utc(cls, raw: Any) -> Any:
        return raw.astimezone(datetime.timezone.utc)


def test_a_validator_raising_on_the_round_trip_never_loses_the_result(
    flavour: Flavour, store: Store
) -> None:
    """Whatever the write-time check raises, the caller gets the paid result, uncached."""
    calls: list[str] = []
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)

    def extract(text: str) -> PythonOnly:
        calls.append(text)
        return PythonOnly(created=now)

    cached = instructor_cache(store)(flavour.define(extract))
    assert flavour.run(cached("x")).created == now
    assert flavour.run(cached("x")).created == now
    assert calls == ["x", "x"]


STRICT = {"on": False}


class Reading(BaseModel):
    """A model whose validator tightens between writing an entry and reading it back."""

    value: int

    @field_validator("value")
    @classmethod
    def check(cls, value: int) -> int:
        if STRICT["on"] and value < 2:
            raise LookupError("too small now")  # not a ValueError: pydantic lets it through
        return value


def test_an_entry_whose_validation_raises_anything_is_a_miss(
    flavour: Flavour, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored entry that a changed validator rejects with any exception is recomputed."""
    values = iter([1, 5])

    def read(text: str) -> Reading:
        return Reading(value=next(values))

    cached = instructor_cache(store, ignore=("values",))(flavour.define(read))
    assert flavour.run(cached("x")).value == 1
    monkeypatch.setitem(STRICT, "on", True)
    assert flavour.run(cached("x")).value == 5
    info = cached.cache_info()
    assert (info.hits, info.misses, info.errors) == (0, 2, 1)


def test_cached_results_always_match_a_fresh_computation(flavour: Flavour, store: Store) -> None:
    """Random calls with repeats over the value space and reordered ``**kwargs``: never wrong."""
    rng = random.Random(20261130)
    pool = [space.random_value(rng) for _ in range(40)]
    pool += [space.rebuild(value) for value in pool[:10]]

    def echo(value: object, **options: object) -> UserDetail:
        return UserDetail(name=repr(space.observe((value, options))), age=len(options))

    seen: dict[str, UserDetail] = {}

    def check(value: object, options: dict[str, object], result: UserDetail) -> None:
        expected = echo(value, **options)
        assert result == expected
        assert seen.setdefault(cached.cache_key(value, **options), expected) == expected

    cached = instructor_cache(store)(flavour.define(echo))
    calls = 150
    for _ in range(calls):
        value = pool[rng.randrange(len(pool))]
        names = rng.sample("ab", rng.randrange(3))
        options = {name: pool[rng.randrange(5)] for name in names}
        check(value, options, flavour.run(cached(value, **options)))
    info = cached.cache_info()
    assert (info.hits, info.misses, info.errors) == (calls - len(seen), len(seen), 0)
    assert info.hits > 0  # the draw repeats calls, so hits are tested too


def test_store_by_keyword_and_options_in_the_direct_form(llm: FakeLLM) -> None:
    """instructor_cache(store=...) works; instructor_cache(fn, **options) keeps its options."""

    def extract(text: str) -> UserDetail:
        return llm(text)

    by_keyword = instructor_cache(store=MemoryCache(maxsize=7), version="3", ignore=("llm",))(
        extract
    )
    assert by_keyword.cache_info().maxsize == 7
    direct = instructor_cache(extract, namespace="direct", version="2", ignore=("llm",))
    assert direct.cache_key("x").startswith("direct:")
    assert ":2:" in direct.cache_key("x")


# Methods and classmethods: the key binds self or cls.


class Extractor(BaseModel):
    """A pydantic model with cached methods: self is encoded by its field values."""

    prompt: str
    calls: ClassVar[list[str]] = []

    @instructor_cache
    def extract(self, text: str) -> UserDetail:
        Extractor.calls.append(f"{self.prompt}:{text}")
        return UserDetail(name=f"{self.prompt} {text}", age=1)

    @instructor_cache
    async def aextract(self, text: str) -> UserDetail:
        Extractor.calls.append(f"async {self.prompt}:{text}")
        return UserDetail(name=text, age=2)

    @classmethod
    @instructor_cache
    def from_class(cls, text: str) -> UserDetail:
        Extractor.calls.append(f"class:{text}")
        return UserDetail(name=text, age=3)

    @instructor_cache  # the other order works too
    @classmethod
    def from_class_reversed(cls, text: str) -> UserDetail:
        Extractor.calls.append(f"reversed:{text}")
        return UserDetail(name=text, age=4)


def test_methods_of_a_model_cache_per_instance_data() -> None:
    """Instances with equal fields share entries; different fields do not."""
    Extractor.calls.clear()
    Extractor.extract.cache_clear()
    a, a_again, b = Extractor(prompt="a"), Extractor(prompt="a"), Extractor(prompt="b")
    assert a.extract("x") == a_again.extract("x") == UserDetail(name="a x", age=1)
    assert b.extract("x") == UserDetail(name="b x", age=1)
    assert Extractor.calls == ["a:x", "b:x"]
    assert a.extract.cache_info().hits == 1


def test_cache_controls_through_a_bound_method_bind_self() -> None:
    """``obj.method.cache_key(x)`` is the key of ``obj.method(x)``; invalidate and refresh too."""
    Extractor.calls.clear()
    a = Extractor(prompt="a")
    assert a.extract.cache_key("y") == Extractor.extract.cache_key(a, "y")
    a.extract("y")
    assert a.extract.invalidate("y") is True
    assert a.extract.refresh("y") == UserDetail(name="a y", age=1)
    assert a.extract("y") == UserDetail(name="a y", age=1)
    assert Extractor.calls == ["a:y", "a:y"]
    assert asyncio.run(a.aextract("z")) == asyncio.run(a.aextract("z"))
    assert asyncio.run(a.aextract.invalidate("z")) is True
    assert Extractor.calls[-1] == "async a:z"


def test_classmethods_cache_in_both_decorator_orders() -> None:
    """The class is encoded by its import path, whichever decorator is on top."""
    Extractor.calls.clear()
    for _ in range(2):
        assert Extractor.from_class("c") == UserDetail(name="c", age=3)
        assert Extractor.from_class_reversed("r") == UserDetail(name="r", age=4)
    assert Extractor.calls == ["class:c", "reversed:r"]


def test_classmethod_controls_bind_the_class_when_decorated_above() -> None:
    """With @instructor_cache above @classmethod, cache_key, invalidate and refresh bind cls."""
    method = Extractor.from_class_reversed
    method.cache_clear()
    Extractor.calls.clear()
    assert method.cache_key("r") == Extractor(prompt="p").from_class_reversed.cache_key("r")
    assert method.cache_key("r").startswith(
        "instructor_cache:tests.test_decorator.Extractor.from_class_reversed:"
    )
    method("r")
    assert method.invalidate("r") is True
    assert method.refresh("r") == UserDetail(name="r", age=4)
    assert method("r") == UserDetail(name="r", age=4)
    assert Extractor.calls == ["reversed:r", "reversed:r"]


def test_a_plain_self_needs_ignore() -> None:
    """An object without a stable encoding as self gets the error that suggests ignore."""
    from instructor_cache.errors import UnencodableArgumentError

    class Client:
        @instructor_cache
        def extract(self, text: str) -> UserDetail:
            return UserDetail(name=text, age=0)

        @instructor_cache(ignore=("self",))
        def shared(self, text: str) -> UserDetail:
            return UserDetail(name=text, age=0)

    with pytest.raises(UnencodableArgumentError, match=r"ignore=\('self',\)"):
        Client().extract("q")
    assert Client().shared("q") == Client().shared("q")
    assert Client.shared.cache_info().hits == 1


def test_async_cached_methods_stack() -> None:
    """An async method with two cache layers caches in both."""

    class Service(BaseModel):
        name: str
        calls: ClassVar[list[str]] = []

        @instructor_cache(MemoryCache())
        @instructor_cache(MemoryCache())
        async def run(self, question: str) -> UserDetail:
            Service.calls.append(question)
            return UserDetail(name=question, age=0)

    service = Service(name="s")

    async def scenario() -> None:
        for _ in range(3):
            assert await service.run("q") == UserDetail(name="q", age=0)

    asyncio.run(scenario())
    assert Service.calls == ["q"]
    assert Service.run.cache_info().hits == 2
