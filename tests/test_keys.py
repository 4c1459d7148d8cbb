"""The cache key: argument binding, canonical encoding, options, format and stability.

A key must be equal for two calls exactly when the function cannot tell their
arguments apart, in this process and in every other one. These tests pin that
contract from several sides: hand-picked tricky values, golden literals,
subprocesses under other hash seeds, property tests and a differential run
against the undecorated function.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import datetime
import decimal
import enum
import http.client
import math
import os
import pathlib
import random
import re
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model

from instructor_cache import MemoryCache, instructor_cache, make_cache_key
from instructor_cache import _keys as keys_module
from instructor_cache._codec import Codec
from instructor_cache.errors import ConfigurationError, UnencodableArgumentError
from tests import _golden_keys as golden
from tests import _value_space as space
from tests._subprocess import json_under_hash_seed

TESTS_DIR = pathlib.Path(__file__).resolve().parent
PROJECT_ROOT = TESTS_DIR.parent


# --------------------------------------------------------------------------- fixtures of the module


class UserDetail(BaseModel):
    name: str
    age: int


class OtherUser(BaseModel):
    name: str
    age: int


class Echo(BaseModel):
    text: str


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Mood(enum.IntEnum):
    ONE = 1


class Tag(str):
    """A str subclass: equal to the plain str, but a function can tell them apart."""

    __slots__ = ()


class Pair(NamedTuple):
    a: int
    b: int


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Vector:
    x: int
    y: int


@dataclasses.dataclass
class Box:
    item: object


class Plain:
    """An ordinary class instance: no stable encoding."""


def canon(value: Any) -> Hashable:
    """Reference model of argument identity: tagged tuples, equal only for indistinguishable values.

    Floats go by their hex (so ``-0.0`` is not ``0.0``), dicts keep their
    insertion order (a function iterating one sees it), sets are sorted (their
    order means nothing), and anything else is its exact type plus its repr.
    """
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if type(value) is float:
        return (kind, value.hex())
    if type(value) in (list, tuple):
        return (kind, tuple(canon(item) for item in value))
    if type(value) is dict:
        return (kind, tuple((canon(k), canon(v)) for k, v in value.items()))
    if type(value) in (set, frozenset):
        return (kind, tuple(sorted((canon(item) for item in value), key=repr)))
    return (kind, repr(value))


@instructor_cache
def probe(value: object) -> Echo:
    """Stands in for an extraction function of one argument of any type."""
    return Echo(text=repr(canon(value)))


def key_of(value: Any) -> str:
    return probe.cache_key(value)


def extract(text: str, model: str = "gpt-4o-mini") -> UserDetail:
    return UserDetail(name=text, age=len(model))


def extract_again(text: str, model: str = "gpt-4o-mini") -> UserDetail:
    return UserDetail(name=text.upper(), age=len(model))


def text_only(arguments: dict[str, Any]) -> Any:
    return arguments["text"]


def assert_pairwise_distinct_keys(values: list[Any]) -> None:
    seen: dict[str, Any] = {}
    for value in values:
        key = key_of(value)
        assert key not in seen, f"{value!r} and {seen[key]!r} share a key"
        seen[key] = value


# --------------------------------------------------------------------------- binding


def test_positional_keyword_and_explicit_default_calls_share_a_key() -> None:
    """Arguments are bound to the signature with defaults applied, however they are passed."""
    cached = instructor_cache(extract)
    keys = {
        cached.cache_key("a"),
        cached.cache_key(text="a"),
        cached.cache_key("a", "gpt-4o-mini"),
        cached.cache_key("a", model="gpt-4o-mini"),
        cached.cache_key(model="gpt-4o-mini", text="a"),
    }
    assert len(keys) == 1


def test_a_different_value_for_a_defaulted_parameter_gives_another_key() -> None:
    """Passing a model other than the default changes the key."""
    cached = instructor_cache(extract)
    assert cached.cache_key("a", model="gpt-4o") != cached.cache_key("a")


def test_every_way_to_fill_three_positional_parameters_gives_one_key() -> None:
    """Partly positional, partly keyword and defaulted spellings of one call share a key."""

    @instructor_cache
    def three(a: int, b: int = 1, c: int = 2) -> Echo:
        return Echo(text=f"{a}{b}{c}")

    keys = {
        three.cache_key(0),
        three.cache_key(0, 1),
        three.cache_key(0, 1, 2),
        three.cache_key(0, c=2),
        three.cache_key(0, b=1),
        three.cache_key(a=0, b=1, c=2),
        three.cache_key(c=2, a=0),
    }
    assert len(keys) == 1
    assert three.cache_key(0, 1, 3) != three.cache_key(0)


def test_a_mutable_default_is_keyed_by_its_value_at_call_time() -> None:
    """Mutating a default between calls changes the key, for positional and keyword calls alike."""
    defaults = {"model": "a"}

    @instructor_cache
    def with_options(text: str, options: dict[str, str] = defaults) -> Echo:
        return Echo(text=text + options["model"])

    before = with_options.cache_key("x")
    defaults["model"] = "b"
    after = with_options.cache_key("x")
    assert before != after
    assert after == with_options.cache_key(text="x") == with_options.cache_key("x", {"model": "b"})


def test_keyword_only_parameters_are_bound_with_their_defaults() -> None:
    """A keyword-only default passed explicitly or left out gives one key; another value differs."""

    @instructor_cache
    def extract_kw(text: str, *, model: str = "m", temperature: float = 0.0) -> UserDetail:
        return UserDetail(name=text, age=len(model))

    assert (
        extract_kw.cache_key("a")
        == extract_kw.cache_key("a", model="m")
        == extract_kw.cache_key(temperature=0.0, text="a", model="m")
    )
    assert extract_kw.cache_key("a", temperature=0.5) != extract_kw.cache_key("a")


def test_positional_only_parameters_are_bound_like_the_call() -> None:
    """A positional-only parameter keys the same positionally, and by keyword it is refused."""

    @instructor_cache
    def extract_po(text: str, /, model: str = "m") -> UserDetail:
        return UserDetail(name=text, age=len(model))

    assert extract_po.cache_key("a") == extract_po.cache_key("a", "m")
    assert extract_po.cache_key("a") == extract_po.cache_key("a", model="m")
    with pytest.raises(TypeError, match=r"positional.only"):
        extract_po.cache_key(text="a")


def test_var_positional_and_var_keyword_arguments_are_keyed_in_the_order_the_function_sees() -> (
    None
):
    """``*args`` and ``**kwargs`` keep their order (the function sees it); they never match."""

    @instructor_cache
    def variadic(*parts: object, **options: object) -> Echo:
        return Echo(text=repr((parts, options)))

    assert variadic.cache_key(x=1, y=2) != variadic.cache_key(y=2, x=1)
    assert variadic(x=1, y=2) != variadic(y=2, x=1)
    assert variadic.cache_key(x=1, y=2) == variadic.cache_key(**{"x": 1, "y": 2})
    assert variadic.cache_key("a", "b") != variadic.cache_key("b", "a")
    assert variadic.cache_key("a", "b") != variadic.cache_key(("a", "b"))
    assert variadic.cache_key("a") != variadic.cache_key(parts="a")
    assert variadic.cache_key() != variadic.cache_key(None)


def test_a_mixed_signature_binds_every_kind_of_parameter() -> None:
    """Positional, defaulted, variadic, keyword-only and extra keywords all bind as in a call."""

    @instructor_cache
    def mixed(a: int, b: int = 1, *rest: int, c: int, d: int = 2, **extra: int) -> Echo:
        return Echo(text=repr((a, b, rest, c, d, extra)))

    assert mixed.cache_key(0, c=3) == mixed.cache_key(a=0, b=1, c=3, d=2)
    assert mixed.cache_key(0, 1, 5, c=3) != mixed.cache_key(0, 1, c=3)
    assert mixed.cache_key(0, c=3, e=4) != mixed.cache_key(0, c=3)


def test_a_call_the_function_would_refuse_raises_type_error() -> None:
    """A missing required argument fails to bind instead of producing a key."""
    cached = instructor_cache(extract)
    with pytest.raises(TypeError, match="text"):
        cached.cache_key()
    with pytest.raises(TypeError):
        cached.cache_key("a", "b", "c")


async def test_an_async_function_binds_arguments_like_a_sync_one() -> None:
    """Coroutine functions go through the same key builder, defaults applied."""

    @instructor_cache
    async def extract_async(text: str, model: str = "gpt-4o-mini") -> UserDetail:
        return UserDetail(name=text, age=len(model))

    assert extract_async.cache_key("a") == extract_async.cache_key(text="a", model="gpt-4o-mini")
    assert extract_async.cache_key("a", "gpt-4o") != extract_async.cache_key("a")
    assert (await extract_async("a")).name == "a"


# --------------------------------------------------------------------------- canonical encoding

_UTC = datetime.timezone.utc
_PLUS_ONE = datetime.timezone(datetime.timedelta(hours=1))
_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")

# (value, an equal value built another way, a nearby different value)
ENCODING_CASES = [
    pytest.param("héllo", "".join(["hé", "llo"]), "hello", id="str"),
    pytest.param(10**30, int("1" + "0" * 30), 10**30 + 1, id="big-int"),
    pytest.param(-5, int("-5"), 5, id="negative-int"),
    pytest.param(0.1, 1 / 10, math.nextafter(0.1, 1.0), id="float"),
    pytest.param(True, bool(1), False, id="bool"),
    pytest.param(None, None, "None", id="none"),
    pytest.param(b"\x00\xff", bytes([0, 255]), b"\x00\xfe", id="bytes"),
    pytest.param(bytearray(b"ab"), bytearray([97, 98]), bytearray(b"abc"), id="bytearray"),
    pytest.param(
        [1, "a", None], list(iter((1, "a", None))), ["a", 1, None], id="list-order-matters"
    ),
    pytest.param((1, (2, 3)), tuple(iter([1, (2, 3)])), (1, (3, 2)), id="tuple"),
    pytest.param(
        {"a": 1, "b": [2]},
        dict.fromkeys("ab") | {"a": 1, "b": [2]},
        {"b": [2], "a": 1},
        id="dict-in-order",
    ),
    pytest.param({"x", "y", "z"}, {"z", "y", "x"}, {"x", "y"}, id="set-order-irrelevant"),
    # 1 and 9 collide in a small set's table, so these two iterate in different orders.
    pytest.param({1, 9}, {9, 1}, {1, 8}, id="set-with-colliding-hashes"),
    pytest.param(frozenset({"x", "y"}), frozenset(["y", "x"]), frozenset({"x"}), id="frozenset"),
    pytest.param(Color.RED, Color("red"), Color.BLUE, id="enum"),
    pytest.param(
        datetime.datetime(2024, 1, 1, 12, 30),
        datetime.datetime.fromisoformat("2024-01-01T12:30:00"),
        datetime.datetime(2024, 1, 1, 12, 30, 0, 1),
        id="naive-datetime",
    ),
    pytest.param(
        datetime.datetime(2024, 1, 1, 12, 30, tzinfo=_UTC),
        datetime.datetime.fromisoformat("2024-01-01T12:30:00+00:00"),
        datetime.datetime(2024, 1, 1, 12, 30, tzinfo=_PLUS_ONE),
        id="aware-datetime",
    ),
    pytest.param(
        datetime.date(2024, 2, 29),
        datetime.date.fromisoformat("2024-02-29"),
        datetime.date(2024, 3, 1),
        id="date",
    ),
    pytest.param(
        datetime.time(9, 15, tzinfo=_UTC),
        datetime.time.fromisoformat("09:15:00+00:00"),
        datetime.time(9, 15),
        id="time",
    ),
    pytest.param(
        datetime.timedelta(days=1, seconds=5),
        datetime.timedelta(seconds=86405),
        datetime.timedelta(days=1, seconds=6),
        id="timedelta",
    ),
    pytest.param(
        _UUID,
        uuid.UUID(bytes=_UUID.bytes),
        uuid.UUID("12345678-1234-5678-1234-567812345679"),
        id="uuid",
    ),
    pytest.param(
        decimal.Decimal("19.99"),
        decimal.Decimal((0, (1, 9, 9, 9), -2)),
        decimal.Decimal("19.98"),
        id="decimal",
    ),
    pytest.param(Point(1, 2), Point(x=1, y=2), Point(2, 1), id="dataclass"),
    pytest.param(
        UserDetail(name="Ada", age=36),
        UserDetail.model_validate_json('{"age": 36, "name": "Ada"}'),
        UserDetail(name="Ada", age=37),
        id="pydantic-model",
    ),
    pytest.param(Pair(1, 2), Pair(a=1, b=2), Pair(2, 1), id="namedtuple"),
    pytest.param(UserDetail, UserDetail, OtherUser, id="class"),
    pytest.param(
        pathlib.PurePosixPath("a/b"),
        pathlib.PurePosixPath("a", "b"),
        pathlib.PurePosixPath("a/c"),
        id="path",
    ),
    pytest.param(
        {"k": [{"a", "b"}, (1, {"x": 2.5})]},
        {"k": [{"b", "a"}, (1, {"x": 2.5})]},
        {"k": [{"a", "b"}, (1, {"x": 2.0})]},
        id="nested",
    ),
]


@pytest.mark.parametrize(("value", "equal", "different"), ENCODING_CASES)
def test_equal_values_built_separately_get_the_same_key(
    value: Any, equal: Any, different: Any
) -> None:
    """The key depends on the value, never on identity, insertion order or iteration order."""
    assert key_of(value) == key_of(equal)


@pytest.mark.parametrize(("value", "equal", "different"), ENCODING_CASES)
def test_a_nearby_different_value_gets_a_different_key(
    value: Any, equal: Any, different: Any
) -> None:
    """Changing the value slightly changes the key."""
    assert key_of(value) != key_of(different)


def test_the_same_value_gets_the_same_key_every_time() -> None:
    """Keys are deterministic: a deep copy and a repeated call agree."""
    value = {"users": [UserDetail(name="a", age=1)], "when": datetime.date(2024, 1, 1)}
    assert key_of(value) == key_of(value) == key_of(copy.deepcopy(value))


# --------------------------------------------------------------------------- distinct arguments

_NAIVE = datetime.datetime(2024, 1, 1, 12)

DISTINCT_GROUPS: dict[str, list[Any]] = {
    "one": [1, 1.0, True, "1", b"1", decimal.Decimal("1"), Mood.ONE, [1], (1,), {1}],
    "zero-and-empty": [
        0,
        False,
        0.0,
        -0.0,
        "",
        None,
        "None",
        "0",
        "False",
        b"",
        bytearray(),
        [],
        (),
        {},
        set(),
        frozenset(),
        decimal.Decimal("0"),
        decimal.Decimal("-0"),
        datetime.timedelta(0),
    ],
    "separator-injection": [
        ("a:b", "c"),
        ("a", "b:c"),
        ("a:bc",),
        ("a", "b", "c"),
        ("ab", "c"),
        "a:b:c",
        ["a:b", "c"],
        ("s1:a", ""),
        ("s1:as1:b",),
        ("a", "b"),
        "N",
        "T",
        "i1;",
        "l.",
        ".",
    ],
    "dict-key-types": [
        {1: 1},
        {"1": 1},
        {True: 1},
        {1.0: 1},
        {(1,): 1},
        {1: "1"},
        {None: 1},
        {"a": 1, "b": 2},
        {"a": 2, "b": 1},
        {"a": {"b": 1}},
        {"a": {"b": {}}},
        [("a", 1)],
        {"a": None},
    ],
    "json-text": [
        [1, 2],
        "[1, 2]",
        "[1,2]",
        {"a": 1},
        '{"a": 1}',
        "null",
        "true",
        1.5,
        "1.5",
    ],
    "sequence-kinds": [
        [1, 2],
        (1, 2),
        Pair(1, 2),
        [[1, 2]],
        [(1, 2)],
        ([1, 2],),
        [1, [2]],
        [[1], 2],
        [1, 2, None],
    ],
    "set-kinds": [
        {1, 2},
        frozenset({1, 2}),
        {2},
        {1, 2, 3},
        {(1, 2)},
        {frozenset({1, 2})},
        frozenset({frozenset({1, 2})}),
    ],
    "subclasses-and-enums": [
        Mood.ONE,
        Tag("x"),
        "x",
        Color.RED,
        "red",
        "RED",
        Color.BLUE,
        golden.Color.RED,
    ],
    "surrogates-and-unicode": [
        "\ud800",
        "\udfff",
        "\ud800\udc00",
        "\U00010000",
        "\ufffd",
        "?",
        "\x00",
        "e\u0301",
        "\u00e9",
    ],
    "bytes-like": [b"ab", bytearray(b"ab"), "ab", b"a", [97, 98], "6162", b"ab\x00"],
    "dates-and-times": [
        _NAIVE,
        _NAIVE.replace(tzinfo=_UTC),
        _NAIVE.replace(tzinfo=_PLUS_ONE),
        _NAIVE.replace(tzinfo=_UTC).astimezone(_PLUS_ONE),
        datetime.datetime(2024, 1, 1),
        datetime.date(2024, 1, 1),
        datetime.time(12),
        datetime.time(12, tzinfo=_UTC),
        "2024-01-01T12:00:00",
        "2024-01-01",
        datetime.timedelta(hours=12),
    ],
    "numbers": [
        2**63,
        2**64,
        -(2**63),
        10**100,
        1e100,
        math.inf,
        -math.inf,
        math.nan,
        0.3,
        0.1 + 0.2,
        decimal.Decimal("0.3"),
        decimal.Decimal("0.30"),
        decimal.Decimal("NaN"),
        3,
    ],
    "ids-and-paths": [
        _UUID,
        str(_UUID),
        _UUID.hex,
        pathlib.PurePosixPath("a/b"),
        pathlib.PureWindowsPath("a/b"),
        "a/b",
    ],
    "objects-and-classes": [
        Point(1, 2),
        Vector(1, 2),
        {"x": 1, "y": 2},
        UserDetail(name="a", age=1),
        OtherUser(name="a", age=1),
        UserDetail(name="a", age=2),
        '{"name":"a","age":1}',
        Point,
        Vector,
        UserDetail,
        Color,
        golden.Color,
        int,
        type(None),
        "builtins.int",
    ],
}


@pytest.mark.parametrize("group", list(DISTINCT_GROUPS))
def test_values_a_function_can_tell_apart_get_pairwise_distinct_keys(group: str) -> None:
    """No two values of a group share a key, even those Python calls equal."""
    assert_pairwise_distinct_keys(DISTINCT_GROUPS[group])


def test_all_tricky_values_together_get_pairwise_distinct_keys() -> None:
    """Across all groups, every distinguishable value has its own key."""
    unique = {canon(value): value for group in DISTINCT_GROUPS.values() for value in group}
    assert len(unique) > 140
    assert_pairwise_distinct_keys(list(unique.values()))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("a:b", "c"), ("a", "b:c"), id="separator-moved-between-parameters"),
        pytest.param((1, None), (None, 1), id="values-swapped"),
        pytest.param(("ab", ""), ("a", "b"), id="text-split-differently"),
        pytest.param(((1, 2), None), (1, 2), id="tuple-vs-two-arguments"),
        pytest.param((1, True), (True, 1), id="equal-values-swapped"),
    ],
)
def test_arguments_spread_differently_over_parameters_get_distinct_keys(
    first: tuple[Any, Any], second: tuple[Any, Any]
) -> None:
    """The boundary between parameters is part of the key."""

    @instructor_cache
    def two(a: object, b: object = None) -> Echo:
        return Echo(text=repr((a, b)))

    assert two.cache_key(*first) != two.cache_key(*second)


# --------------------------------------------------------------------------- unencodable arguments


def _self_referential_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def _self_referential_dict() -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    return mapping


UNENCODABLE_CASES = [
    pytest.param(object, "a builtins.object", id="object"),
    pytest.param(threading.Lock, "a _thread.lock", id="lock"),
    pytest.param(lambda: open(os.devnull), "a _io.TextIOWrapper", id="open-file"),  # noqa: SIM115
    pytest.param(lambda: lambda x: x, "a builtins.function", id="lambda"),
    pytest.param(Plain, "Plain", id="plain-instance"),
    pytest.param(lambda: (n for n in ()), "a builtins.generator", id="generator"),
    pytest.param(
        lambda: [1, object()], "a builtins.list holding a builtins.object", id="list-holding-object"
    ),
    pytest.param(lambda: {"k": threading.Lock()}, "holding a _thread.lock", id="dict-holding-lock"),
    pytest.param(lambda: {object(): 1}, "holding a builtins.object", id="dict-keyed-by-object"),
    pytest.param(
        lambda: (1, [2, {3: object()}]), "holding a builtins.object", id="deeply-nested-object"
    ),
    pytest.param(lambda: Box(item=object()), "holding a builtins.object", id="dataclass-holding"),
    pytest.param(_self_referential_list, "contains itself", id="self-referential-list"),
    pytest.param(_self_referential_dict, "contains itself", id="self-referential-dict"),
]


@pytest.mark.parametrize(("make_value", "described"), UNENCODABLE_CASES)
def test_an_unencodable_argument_raises_an_error_naming_the_parameter(
    make_value: Callable[[], Any], described: str
) -> None:
    """The error is a TypeError naming the parameter and the way out (``ignore=`` or ``key=``)."""
    value = make_value()
    try:
        with pytest.raises(UnencodableArgumentError) as caught:
            probe.cache_key(value)
    finally:
        if hasattr(value, "close"):
            value.close()
    error = caught.value
    assert isinstance(error, TypeError)
    assert error.parameter == "value"
    message = str(error)
    assert "argument 'value'" in message
    assert described in message
    assert "ignore=('value',)" in message
    assert "key=" in message


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda f, bad: f.cache_key("a", bad), id="positional"),
        pytest.param(lambda f, bad: f.cache_key("a", second=bad), id="keyword"),
        pytest.param(lambda f, bad: f.cache_key(second=bad, first="a"), id="all-keywords"),
        pytest.param(lambda f, bad: f.cache_key("a", bad, 1), id="all-positional"),
    ],
)
def test_the_error_names_the_parameter_that_holds_the_unencodable_value(
    call: Callable[[Any, Any], str],
) -> None:
    """With several parameters, the one at fault is named however it was passed."""

    @instructor_cache
    def three(first: str, second: object = None, third: int = 0) -> Echo:
        return Echo(text=first)

    with pytest.raises(UnencodableArgumentError, match="'second'") as caught:
        call(three, object())
    assert caught.value.parameter == "second"


def test_calling_with_an_unencodable_argument_raises_before_the_function_runs() -> None:
    """The decorated call fails at the key, so the function is never called."""
    calls: list[object] = []

    @instructor_cache
    def run(value: object) -> Echo:
        calls.append(value)
        return Echo(text="ran")

    with pytest.raises(UnencodableArgumentError):
        run(object())
    assert calls == []


# --------------------------------------------------------------------------- methods


def test_a_method_on_a_plain_object_asks_to_ignore_self() -> None:
    """``self`` with no stable encoding is named, with ``ignore=("self",)`` suggested."""

    class Service:
        @instructor_cache
        def extract(self, text: str) -> UserDetail:
            return UserDetail(name=text, age=0)

    with pytest.raises(UnencodableArgumentError, match=re.escape("ignore=('self',)")) as caught:
        Service().extract("a")
    assert caught.value.parameter == "self"


def test_a_method_with_self_ignored_shares_results_across_instances() -> None:
    """With ``ignore=("self",)`` the call works and two instances share the entry."""
    calls: list[str] = []

    class Service:
        @instructor_cache(ignore=("self", "calls"))
        def extract(self, text: str) -> UserDetail:
            calls.append(text)
            return UserDetail(name=text, age=0)

    first, second = Service(), Service()
    assert Service.extract.cache_key(first, "a") == Service.extract.cache_key(second, "a")
    assert first.extract("a") == second.extract("a") == UserDetail(name="a", age=0)
    assert calls == ["a"]
    assert Service.extract.cache_info().hits == 1


@dataclasses.dataclass
class Account:
    owner: str

    @instructor_cache
    def greet(self, text: str = "hi") -> Echo:
        return Echo(text=f"{self.owner}: {text}")


class Document(BaseModel):
    body: str

    @instructor_cache
    def summarize(self, style: str = "short") -> Echo:
        return Echo(text=f"{style}: {self.body}")


def test_a_dataclass_self_is_part_of_the_key() -> None:
    """Instances with equal fields share a key; different fields give another key and result."""
    assert Account.greet.cache_key(Account("ann")) == Account.greet.cache_key(Account("ann"))
    assert Account.greet.cache_key(Account("ann")) != Account.greet.cache_key(Account("bob"))
    assert Account("ann").greet().text == "ann: hi"
    assert Account("bob").greet().text == "bob: hi"


def test_a_pydantic_model_self_is_part_of_the_key() -> None:
    """Model instances with equal data share a key; different data give another key and result."""
    assert Document.summarize.cache_key(Document(body="x")) == Document.summarize.cache_key(
        Document(body="x")
    )
    assert Document.summarize.cache_key(Document(body="x")) != Document.summarize.cache_key(
        Document(body="y")
    )
    assert Document(body="x").summarize().text == "short: x"
    assert Document(body="y").summarize().text == "short: y"


def test_cache_key_through_a_bound_method_is_the_key_of_the_bound_call() -> None:
    """``account.greet.cache_key(t)`` is the key ``account.greet(t)`` uses."""
    account = Account("ann")
    assert account.greet.cache_key("hello") == Account.greet.cache_key(account, "hello")


# --------------------------------------------------------------------------- ignore=


def test_calls_differing_only_in_an_ignored_argument_share_a_key_and_a_result() -> None:
    """An ignored argument, even an unencodable one, does not reach the key."""
    calls: list[str] = []

    @instructor_cache(ignore=("client", "calls"))
    def extract_with(text: str, client: object) -> UserDetail:
        calls.append(text)
        return UserDetail(name=text, age=0)

    lock = threading.Lock()
    assert extract_with.cache_key("a", lock) == extract_with.cache_key("a", client=object())
    assert extract_with.cache_key("a", lock) != extract_with.cache_key("b", lock)
    assert extract_with("a", lock) == extract_with("a", object())
    assert calls == ["a"]


def test_ignoring_a_parameter_changes_the_key() -> None:
    """Leaving a parameter out of the key is not the same function identity as keeping it."""
    kept = instructor_cache(extract)
    ignored = instructor_cache(ignore=("model",))(extract)
    assert kept.cache_key("a") != ignored.cache_key("a")


def test_ignore_naming_an_unknown_parameter_fails_at_decoration() -> None:
    """A misspelt name is a ConfigurationError listing the real parameters."""
    with pytest.raises(ConfigurationError, match=r"\['modle'\].*\['text', 'model'\]"):
        instructor_cache(ignore=("modle",))(extract)


def test_ignore_given_a_bare_string_fails_at_decoration() -> None:
    """``ignore="model"`` would be read letter by letter, so it is refused with the fix."""
    with pytest.raises(ConfigurationError, match=re.escape("ignore=('model',)")):
        instructor_cache(ignore="model")(extract)


def test_make_cache_key_refuses_a_bare_string_ignore_like_the_decorator() -> None:
    """``ignore="a"`` is refused, not read as ``("a",)``, even where a parameter is named ``a``."""

    def single(a: str, b: str) -> Echo:
        return Echo(text=a + b)

    with pytest.raises(ConfigurationError, match=re.escape("ignore=('a',)")):
        instructor_cache(ignore="a")(single)
    with pytest.raises(ConfigurationError, match=re.escape("ignore=('a',)")):
        make_cache_key(single, ("x", "y"), ignore="a")


def test_make_cache_key_refuses_an_unknown_ignored_parameter() -> None:
    """``make_cache_key`` checks ``ignore`` against the signature as the decorator does."""
    with pytest.raises(ConfigurationError, match="modle"):
        make_cache_key(extract, ("a",), ignore=("modle",))


# --------------------------------------------------------------------------- key=


def test_the_key_function_receives_a_plain_dict_of_arguments_with_defaults_applied() -> None:
    """It is called with exactly ``{name: value}`` for every keyed parameter."""
    received: list[dict[str, Any]] = []

    def record(arguments: dict[str, Any]) -> str:
        received.append(arguments)
        return "same"

    cached = instructor_cache(key=record)(extract)
    cached.cache_key("a")
    cached.cache_key(model="gpt-4o", text="b")
    assert received == [{"text": "a", "model": "gpt-4o-mini"}, {"text": "b", "model": "gpt-4o"}]
    assert [type(arguments) for arguments in received] == [dict, dict]


def test_the_key_function_receives_variadic_arguments_and_not_ignored_ones() -> None:
    """``*args`` arrive as a tuple, ``**kwargs`` as a dict, and ignored parameters not at all."""
    received: list[dict[str, Any]] = []

    def record(arguments: dict[str, Any]) -> str:
        received.append(arguments)
        return "same"

    @instructor_cache(key=record, ignore=("client",))
    def variadic(client: object, *parts: str, **options: int) -> Echo:
        return Echo(text=repr((parts, options)))

    variadic.cache_key(object(), "a", "b", x=1)
    assert received == [{"parts": ("a", "b"), "options": {"x": 1}}]


def test_calls_whose_key_function_returns_equal_values_share_a_key_and_a_result() -> None:
    """The key function's value replaces the arguments: equal values, one entry."""
    calls: list[str] = []

    @instructor_cache(key=lambda arguments: arguments["text"].lower(), ignore=("calls",))
    def extract_ci(text: str, model: str = "gpt-4o-mini") -> UserDetail:
        calls.append(text)
        return UserDetail(name=text.lower(), age=0)

    assert extract_ci.cache_key("ADA") == extract_ci.cache_key("ada", model="other")
    assert extract_ci.cache_key("ada") != extract_ci.cache_key("bob")
    assert extract_ci("ADA") == extract_ci("ada") == UserDetail(name="ada", age=0)
    assert calls == ["ADA"]


def test_key_function_values_are_encoded_canonically() -> None:
    """A key function returning 1, True, 1.0 or "1" gives four different keys."""
    cached = instructor_cache(key=lambda arguments: arguments["value"])(probe.__wrapped__)
    assert len({cached.cache_key(value) for value in (1, True, 1.0, "1")}) == 4


def test_a_key_function_keeps_namespace_function_and_schema_in_the_key() -> None:
    """The same key function on two functions, or in two namespaces, gives distinct keys."""
    first = instructor_cache(key=text_only)(extract)
    second = instructor_cache(key=text_only)(extract_again)
    other_namespace = instructor_cache(key=text_only, namespace="other")(extract)
    keys = {first.cache_key("a"), second.cache_key("a"), other_namespace.cache_key("a")}
    assert len(keys) == 3
    assert first.cache_key("a").startswith(f"instructor_cache:{__name__}.extract:")
    assert second.cache_key("a").startswith(f"instructor_cache:{__name__}.extract_again:")


def test_a_key_function_differs_from_keying_the_same_value_by_argument() -> None:
    """A key function returning the text is not confused with a function keyed by its text."""

    def only_text(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    by_argument = instructor_cache(only_text)
    by_function = instructor_cache(key=text_only)(only_text)
    assert by_argument.cache_key("a") != by_function.cache_key("a")


@pytest.mark.parametrize(
    "returned",
    [
        pytest.param(object, id="object"),
        pytest.param(lambda: [threading.Lock()], id="list-holding-lock"),
        pytest.param(_self_referential_list, id="self-referential-list"),
    ],
)
def test_a_key_function_returning_an_unencodable_value_raises(
    returned: Callable[[], Any],
) -> None:
    """The error blames the key function and names no parameter."""
    cached = instructor_cache(key=lambda _arguments: returned())(extract)
    with pytest.raises(UnencodableArgumentError, match="key function") as caught:
        cached.cache_key("a")
    assert caught.value.parameter is None


def test_a_key_that_is_not_callable_fails_at_decoration() -> None:
    """``key="text"`` is refused when decorating, not on the first call."""
    with pytest.raises(ConfigurationError, match="key must be a callable"):
        instructor_cache(key="text")(extract)


# --------------------------------------------------------------------------- key format

KEY_TAIL = re.compile(r"(?P<schema>[0-9a-f]{8}):(?:(?P<version>[^:]+):)?(?P<digest>[0-9a-f]{64})")


@pytest.mark.parametrize(
    ("options", "namespace", "version"),
    [
        pytest.param({}, "instructor_cache", None, id="defaults"),
        pytest.param({"namespace": "team"}, "team", None, id="namespace"),
        pytest.param({"version": "v3"}, "instructor_cache", "v3", id="version"),
        pytest.param({"namespace": "team", "version": "2024-11"}, "team", "2024-11", id="both"),
    ],
)
def test_a_key_reads_namespace_function_schema_version_and_digest(
    options: dict[str, Any], namespace: str, version: str | None
) -> None:
    """``<namespace>:<module.qualname>:<schema8>:[<version>:]<BLAKE2b-256 hex>``."""
    key = instructor_cache(**options)(extract).cache_key("a")
    head = f"{namespace}:{extract.__module__}.{extract.__qualname__}:"
    assert key.startswith(head)
    tail = KEY_TAIL.fullmatch(key[len(head) :])
    assert tail is not None, key
    assert tail["schema"] == Codec(UserDetail, where="t").fingerprint[:8]
    assert tail["version"] == version


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"namespace": "a"}, {"namespace": "b"}, id="namespace"),
        pytest.param({"version": "1"}, {"version": "2"}, id="version"),
        pytest.param({}, {"version": "1"}, id="no-version-vs-version"),
        pytest.param({"version": ""}, {}, id="empty-version-vs-none"),
    ],
)
def test_namespace_and_version_change_the_key(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """The same call under another namespace or version has another key."""
    first_key = instructor_cache(**first)(extract).cache_key("a")
    second_key = instructor_cache(**second)(extract).cache_key("a")
    assert first_key != second_key


def _extractor_returning(model: type[BaseModel]) -> Callable[[str], Any]:
    """A function with the same module and qualname on every call; only its return model varies."""

    def extract_person(text: str) -> BaseModel:
        return model.model_validate({"name": text})

    extract_person.__annotations__["return"] = model
    return extract_person


BASE_PERSON: dict[str, Any] = {"name": (str, ...)}


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"name": (str, ...), "age": (int, 0)}, id="field-added"),
        pytest.param({"name": (int, ...)}, id="field-type-changed"),
        pytest.param({"name": (str, Field(description="The full name"))}, id="description-changed"),
        pytest.param({"name": (str | None, None)}, id="field-made-optional"),
        pytest.param({"full_name": (str, ...)}, id="field-renamed"),
    ],
)
def test_changing_the_return_model_changes_the_key(changed: dict[str, Any]) -> None:
    """Two same-named models that differ only in schema key one call differently."""
    before = _extractor_returning(create_model("Person", **BASE_PERSON))
    after = _extractor_returning(create_model("Person", **changed))
    assert (before.__module__, before.__qualname__) == (after.__module__, after.__qualname__)
    assert instructor_cache(before).cache_key("a") != instructor_cache(after).cache_key("a")


def test_an_identical_model_defined_again_gives_the_same_key() -> None:
    """Only the schema of the model counts, not which class object it is."""
    first = _extractor_returning(create_model("Person", **BASE_PERSON))
    second = _extractor_returning(create_model("Person", **BASE_PERSON))
    assert first.__annotations__["return"] is not second.__annotations__["return"]
    assert instructor_cache(first).cache_key("a") == instructor_cache(second).cache_key("a")


# --------------------------------------------------------------------------- make_cache_key


MAKE_KEY_OPTIONS = [
    pytest.param({}, id="defaults"),
    pytest.param({"namespace": "team"}, id="namespace"),
    pytest.param({"version": "2"}, id="version"),
    pytest.param({"ignore": ("model",)}, id="ignore"),
    pytest.param({"key": text_only}, id="key-function"),
    pytest.param(
        {"namespace": "team", "version": "2", "ignore": ("model",), "key": text_only},
        id="all-options",
    ),
]

MAKE_KEY_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("a",), {}),
    (("a", "gpt-4o"), {}),
    (("a",), {"model": "gpt-4o"}),
    ((), {"model": "m", "text": "a"}),
]


@pytest.mark.parametrize("options", MAKE_KEY_OPTIONS)
def test_make_cache_key_matches_the_decorated_functions_cache_key(options: dict[str, Any]) -> None:
    """With the same options, ``make_cache_key`` returns exactly ``cache_key``'s key."""
    decorated = instructor_cache(**options)(extract)
    for args, kwargs in MAKE_KEY_CALLS:
        expected = decorated.cache_key(*args, **kwargs)
        assert make_cache_key(extract, args, kwargs, **options) == expected
        assert make_cache_key(decorated, args, kwargs, **options) == expected


def test_make_cache_key_takes_positional_arguments_alone() -> None:
    """``kwargs`` may be left out, and ``args`` may be any sequence."""
    decorated = instructor_cache(extract)
    assert make_cache_key(extract, ("a",)) == decorated.cache_key("a")
    assert make_cache_key(extract, ["a", "m"]) == decorated.cache_key("a", "m")


# --------------------------------------------------------------------------- golden vectors

# Literal keys for the calls in tests/_golden_keys.py: they catch any accidental
# change of the key format (token grammar, hash input, head layout, identity).
# A deliberate change of the format must bump _KEY_FORMAT in
# instructor_cache/_keys.py (so entries written under the old format are never
# read under the new one), then update GOLDEN_KEY_FORMAT and regenerate these
# literals: python -c "from tests import _golden_keys as g; g.print_keys()".
# If GOLDEN_FINGERPRINT fails too, pydantic's JSON schema changed, not the key
# format, and every user's entries are invalidated by that upgrade.
GOLDEN_KEY_FORMAT = "instructor_cache/key/2"
GOLDEN_FINGERPRINT = "e0279094ca21887df4894f41951436395e6919f4f48dca115d806516a9269ad1"
_HEAD = "instructor_cache:instructor_cache_golden"
GOLDEN_KEYS = {
    "str-default-model": f"{_HEAD}.extract:e0279094:"
    "933bb0b2d350710415e344d01e678969d1fe6108e4d689ee77c992cb6039a0ca",
    "str-explicit-model": f"{_HEAD}.extract:e0279094:"
    "dfc336609779d1b46b37e399cb64f7b8f6185f174867854012fc39d77314ee82",
    "namespace-and-version": "team:instructor_cache_golden.extract:e0279094:v2:"
    "53e7dc95cd3cd119a6e773ee31d955982f9c296cb50b6c5df66c667f0a9b801d",
    "ignore-model": f"{_HEAD}.extract:e0279094:"
    "1d92d344913c441bd53d111c68f2f4598b3e1a4b0b3b9ecb2d3befb0f085cca8",
    "key-function": f"{_HEAD}.extract:e0279094:"
    "b842c09825fa4819bf125d91c2cf50d9381ab8d8ba8a58b77e53f6197d4fca9c",
    "int": f"{_HEAD}.describe:e0279094:"
    "30bc4b5688e9d7d42f3cfdcef9f180935de317c473f73a73c6acc30571862086",
    "negative-big-int": f"{_HEAD}.describe:e0279094:"
    "cd7522edb12543470fb7d38d7c3300ce15ca674fd2219c298fa0a6ca136b0c36",
    "float": f"{_HEAD}.describe:e0279094:"
    "a967a53d20310a1ab13e1304f9e9d8ec98213c6d5684a4765cc7921390622fb7",
    "negative-zero": f"{_HEAD}.describe:e0279094:"
    "cedc31c9a1db4fc800a9209df59807e0d8091929ee1d67c4187bcd342f7f193e",
    "none": f"{_HEAD}.describe:e0279094:"
    "8c300805799e3fbc218821da9265825b573b53f19d7d38a59a45a819f56269a0",
    "bool-with-keyword-only": f"{_HEAD}.describe:e0279094:"
    "8242a31670c44f1571746e441d1db4018d32799b4e5b9fe0bdae29d1f0e3cd5d",
    "bytes": f"{_HEAD}.describe:e0279094:"
    "f266d88cce51813852b51a72886f66633ff7182f78b268fb40cd073dd386164d",
    "nested-dict-list": f"{_HEAD}.describe:e0279094:"
    "dbc9778eb9147eed647c4532dbcb7a154d6112f0fb00e569993fddfd8ea33fb5",
    "set": f"{_HEAD}.describe:e0279094:"
    "d00d21f34474ece24c20c0aa84526a338f40cef11e7577b58300e03c09a34cf0",
    "aware-datetime": f"{_HEAD}.describe:e0279094:"
    "3b290ef9872bdc6d0465f89aa548ec600647c8f27be5139845c2406a708ecc88",
    "uuid": f"{_HEAD}.describe:e0279094:"
    "2827b12e30508822c77be80dca3db00abcabcce5830c068012bd0bf2d2889e10",
    "decimal": f"{_HEAD}.describe:e0279094:"
    "718c57d14943aaad8ecfc160ad2fd9bd45a9d6db06f981b0b664a91667867eb3",
    "enum": f"{_HEAD}.describe:e0279094:"
    "2907c0e1344641a709cafc54c74aecc94a74479f8b8e66ee65618ad9c26a4906",
    "model": f"{_HEAD}.describe:e0279094:"
    "bbb5ad8d4513df21ecaea7bda0553e836d76aee94371d58365368e900cfd9d80",
    "non-ascii-and-surrogate-str": f"{_HEAD}.describe:e0279094:"
    "78c350cb92dd6b0e53b28bc6dc473006344a16fd2a68cf09d997fac5b9f8a994",
    "ordered-dict": f"{_HEAD}.describe:e0279094:"
    "ca5bc7a2dc493a5584cab787608a1994fcd7c0d26635b31bee7d7b1987580afd",
    "kwargs-in-call-order": f"{_HEAD}.with_options:e0279094:"
    "ad8b80c678d5bf66487484adc7482c88ee239f75fd0757a0ddf26973655a2fdc",
    "naive-datetime-fold-1": f"{_HEAD}.describe:e0279094:"
    "caf771dc4ad95e939d391504d44a098c18cc026f8dab99ce705b244906ce2502",
    "zoneinfo-datetime": f"{_HEAD}.describe:e0279094:"
    "7bb2ab231f12f12a0284204c45282fa50208e4c5424cb0ca689b8d1a88d4de21",
    "model-class": f"{_HEAD}.describe:e0279094:"
    "a322417877434aa73f24b27c556706da9e8a65a6fbd137bd57c6ad3d660dd41d",
    "list-of-model-type": f"{_HEAD}.describe:e0279094:"
    "5f893a6743804b3f31de4b9c93ea5aebeaa93cade1d70c97d4b935bae480e679",
    "flag-zero": f"{_HEAD}.describe:e0279094:"
    "53d7f2edf918ceb1b14edf00187bdff82e0a421529c93a1462e08f1acd469209",
    "flag-combination": f"{_HEAD}.describe:e0279094:"
    "c39c42841c712e2f51271c2c7bd0b40c828cf8e21d53ca80874e7a878ade9528",
    "negative-nan": f"{_HEAD}.describe:e0279094:"
    "340dfc9e1c4771705589427821258f2dc64f5bb089bb63509f4342f6fd4d7f4e",
    "model-with-private-attribute": f"{_HEAD}.describe:e0279094:"
    "0d50cf90231955d079da5f21c2889c42e8656d3e2c130c19753ff349becadfe5",
    "complex": f"{_HEAD}.describe:e0279094:"
    "fcd86d25bf210baacfa70abae033684a9deb1b4e2e0959a7dc8a5c5d574d6bd9",
    "name-option": "instructor_cache:pinned.extract:e0279094:"
    "df9ad4cf5a166db9dd43514a46175ca6fe638575c58bdc4502ba663eb0c2fffe",
    "no-code-fingerprint": f"{_HEAD}.extract:e0279094:"
    "a7c9dfb4cb0703f588ebe36787e3774604395ea2b7e89f9f57c59258283dbca8",
}


def test_every_golden_call_has_a_literal_key() -> None:
    """The table of literals and the table of calls list the same cases."""
    assert set(GOLDEN_KEYS) == set(golden.GOLDEN_CALLS)


def test_golden_vectors_were_made_under_the_current_key_format() -> None:
    """Bumping ``_KEY_FORMAT`` means regenerating the literals below, and recording that here."""
    assert keys_module._KEY_FORMAT == GOLDEN_KEY_FORMAT


def test_the_golden_models_schema_fingerprint_is_unchanged() -> None:
    """The fingerprint the golden keys embed; if it moved, pydantic's schema output changed."""
    assert golden.golden_fingerprint() == GOLDEN_FINGERPRINT


@pytest.mark.parametrize("case", list(GOLDEN_KEYS))
def test_a_fixed_call_still_gets_its_golden_key(case: str) -> None:
    """The key of each fixed call is exactly the literal recorded when the format was set."""
    assert golden.key_for(golden.GOLDEN_CALLS[case]) == GOLDEN_KEYS[case]


# --------------------------------------------------------------------------- cross-process

_SUBPROCESS_CODE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
set_order = list(module.STABILITY_CALLS["set-of-str"][1][0])
print(json.dumps({"keys": module.all_keys(), "set_order": set_order}))
"""


def _keys_in_subprocess(hash_seed: str) -> dict[str, Any]:
    output: dict[str, Any] = json_under_hash_seed(_SUBPROCESS_CODE, hash_seed, golden.__name__)
    return output


def test_keys_are_identical_across_processes_and_hash_seeds() -> None:
    """Sets, frozensets, mixed-key dicts and strings key the same under any PYTHONHASHSEED."""
    seed_one = _keys_in_subprocess("1")
    seed_two = _keys_in_subprocess("2")
    # The seeds must really reorder sets, or the comparison below proves nothing.
    assert seed_one["set_order"] != seed_two["set_order"]
    assert seed_one["keys"] == seed_two["keys"] == golden.all_keys()


# --------------------------------------------------------------------------- property tests

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from([0.0, -0.0, 1.0, 0, 1, True, False, "", "1"])
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


def _rebuilt(value: Any) -> Any:
    """An equal value with fresh containers, every dict's insertion order reversed."""
    if type(value) is dict:
        return {k: _rebuilt(v) for k, v in reversed(list(value.items()))}
    if type(value) is list:
        return [_rebuilt(item) for item in value]
    if type(value) is tuple:
        return tuple(_rebuilt(item) for item in value)
    return copy.copy(value)


_value_pairs = st.tuples(_values, _values) | _values.map(lambda v: (v, _rebuilt(v)))


@settings(max_examples=300, deadline=None)
@given(pair=_value_pairs)
def test_keys_are_equal_exactly_when_canonical_values_are(pair: tuple[Any, Any]) -> None:
    """``key(a) == key(b)`` iff ``canon(a) == canon(b)``, and a key never changes between calls."""
    a, b = pair
    assert key_of(a) == key_of(a)
    assert (key_of(a) == key_of(b)) == (canon(a) == canon(b))


class Address(BaseModel):
    city: str
    zip_code: int | None = None


class Profile(BaseModel):
    name: str
    age: int
    score: float
    nickname: str | None = None
    tags: list[str] = Field(default_factory=list)
    address: Address | None = None
    history: list[Address] = Field(default_factory=list)


_finite_floats = st.floats(allow_nan=False, allow_infinity=False)
_addresses = st.builds(Address, city=st.text(), zip_code=st.none() | st.integers())
_profiles = st.builds(
    Profile,
    name=st.text(),
    age=st.integers(),
    score=_finite_floats,
    nickname=st.none() | st.text(),
    tags=st.lists(st.text(), max_size=4),
    address=st.none() | _addresses,
    history=st.lists(_addresses, max_size=3),
)
_PROFILE_CODEC: Codec[Profile] = Codec(Profile, where="t")


@settings(max_examples=200, deadline=None)
@given(profile=_profiles)
def test_a_random_model_round_trips_through_the_codec(profile: Profile) -> None:
    """Any instance of a model with optional, list and nested fields reads back equal."""
    text = _PROFILE_CODEC.encode(profile, created=0.0, duration=0.0)
    decoded, duration = _PROFILE_CODEC.decode(text)
    assert decoded == profile
    assert type(decoded) is Profile
    assert duration == 0.0


# --------------------------------------------------------------------------- differential


def echo(a: object, b: object = None) -> Echo:
    """The reference function: its result describes its arguments canonically."""
    return Echo(text=repr((canon(a), canon(b))))


_POOL_FIRST: list[Any] = [
    1,
    1.0,
    True,
    "1",
    0,
    False,
    0.0,
    -0.0,
    "",
    None,
    "None",
    [1, 2],
    "[1, 2]",
    (1, 2),
    {1: 1},
    {"1": 1},
    ("a:b", "c"),
    ("a", "b:c"),
    {1, 2},
    frozenset({1, 2}),
    Mood.ONE,
    Tag("x"),
    "x",
    "\ud800",
    "\udfff",
    b"1",
    bytearray(b"1"),
    math.nan,
    math.inf,
    -math.inf,
    2**64,
    -1,
    _NAIVE,
    _NAIVE.replace(tzinfo=_UTC),
    datetime.date(2024, 1, 1),
    decimal.Decimal("1.0"),
    decimal.Decimal("1.00"),
    _UUID,
    str(_UUID),
    Color.RED,
    Point(1, 2),
    Pair(1, 2),
    UserDetail(name="a", age=1),
    OtherUser(name="a", age=1),
    UserDetail,
]
_POOL_SECOND: list[Any] = [None, 1, True, 1.0, "1", (), [], "a:b"]


def _differential_pool() -> list[tuple[Any, Any]]:
    pool = [(a, None) for a in _POOL_FIRST]
    pool += [(a, b) for a in _POOL_FIRST[:20] for b in _POOL_SECOND[1:]]
    pool += [("a:b", "c"), ("a", "b:c"), ("a", "b"), (None, 1), (1, None)]
    # Separately built equals, some in another order: they must share entries.
    pool += [
        ([1, 2], None),
        ({1: 1}, None),
        ({"x": 1, "y": [2]}, None),
        ({"y": [2], "x": 1}, None),
        ({9, 1}, None),
        ({1, 9}, None),
        (frozenset({2, 1}), None),
        (Point(x=1, y=2), None),
        (1, 1),
    ]
    return pool


def test_cached_results_always_match_the_undecorated_function() -> None:
    """Thousands of random calls with repeats never get another call's result."""
    cached = instructor_cache(MemoryCache(maxsize=1024))(echo)
    pool = _differential_pool()
    assert 150 <= len(pool) <= 250
    rng = random.Random(20241124)
    seen: set[Hashable] = set()
    for _ in range(3000):
        a, b = pool[rng.randrange(len(pool))]
        style = rng.randrange(3)
        if style == 0:
            result = cached(a, b)
        elif style == 1:
            result = cached(a, b=b)
        else:
            result = cached(b=b, a=a)
        assert result == echo(a, b), (a, b)
        seen.add((canon(a), canon(b)))
    info = cached.cache_info()
    assert info.hits > 0
    assert info.misses == len(seen)
    assert info.hits + info.misses == 3000


# --------------------------------------------------------------------------- models, zones, paths
# Regressions: each of these once gave a wrong or unstable key.


class Reading(BaseModel):
    value: float | None


class Loose(BaseModel):
    value: Any


class Tags(BaseModel):
    numbers: set[int]


class Blob(BaseModel):
    data: bytes


def test_model_arguments_with_different_non_finite_floats_get_distinct_keys() -> None:
    """Models differing only in inf, -inf, NaN or None keep distinct keys."""
    assert_pairwise_distinct_keys(
        [
            Reading(value=math.inf),
            Reading(value=-math.inf),
            Reading(value=math.nan),
            Reading(value=None),
        ]
    )


def test_model_arguments_holding_a_tuple_a_list_or_a_set_get_distinct_keys() -> None:
    """A model field of type Any keeps the container kind in the key."""
    assert_pairwise_distinct_keys([Loose(value=(1, 2)), Loose(value=[1, 2]), Loose(value={1, 2})])


def test_equal_model_arguments_with_a_set_field_get_the_same_key() -> None:
    """Two equal models whose set field was filled in different orders share a key."""
    first, second = Tags(numbers={1, 9}), Tags(numbers={9, 1})
    assert first == second
    assert key_of(first) == key_of(second)


def test_a_model_argument_holding_an_unencodable_value_raises_unencodable_argument_error() -> None:
    """A model whose field holds an object with no stable encoding is reported by parameter."""
    with pytest.raises(UnencodableArgumentError) as caught:
        key_of(Loose(value=object()))
    assert caught.value.parameter == "value"


def test_model_arguments_with_non_utf8_bytes_get_their_own_keys() -> None:
    """Bytes fields are keyed by their bytes, which JSON could not even write."""
    assert_pairwise_distinct_keys([Blob(data=b"\xff"), Blob(data=b"\xfe"), Blob(data=b"")])


def test_datetimes_in_different_zones_with_the_same_offset_get_distinct_keys() -> None:
    """A named zone and a fixed offset that agree today are still different arguments."""
    paris = datetime.datetime(2024, 1, 15, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    fixed = datetime.datetime(2024, 1, 15, 12, tzinfo=_PLUS_ONE)
    assert str(paris + datetime.timedelta(days=180)) != str(fixed + datetime.timedelta(days=180))
    assert key_of(paris) != key_of(fixed)


# --------------------------------------------------------------------------- decoration-time checks


class OpaqueClient:
    """Stands in for an SDK client: a plain class no key can encode."""


class PlainBase:
    """A plain class, but one with a dataclass subclass, whose instances are encodable."""


@dataclasses.dataclass
class EncodableChild(PlainBase):
    value: int = 0


def test_parameter_annotated_with_an_unencodable_class_fails_at_decoration() -> None:
    """``client: OpenAI`` (a library's class) is reported when decorating, naming the parameter.

    A plain class of the user's own is left to the call: a subclass defined
    later (a model, a dataclass) may well be encodable.
    """

    def extract(text: str, client: http.client.HTTPConnection) -> UserDetail:
        return UserDetail(name=text, age=0)

    with pytest.raises(UnencodableArgumentError, match=r"ignore=\('client',\)") as caught:
        instructor_cache(extract)
    assert caught.value.parameter == "client"
    assert "HTTPConnection" in str(caught.value)

    def extract_own(text: str, client: OpaqueClient) -> UserDetail:
        return UserDetail(name=text, age=0)

    own = instructor_cache(extract_own)
    with pytest.raises(UnencodableArgumentError, match="'client'"):
        own("t", OpaqueClient())
    instructor_cache(ignore=("client",))(extract)  # the suggested fix works
    instructor_cache(key=lambda args: args["text"])(extract)  # so does a key function


@pytest.mark.parametrize(
    "annotation",
    [object, Any, PlainBase, collections.abc.Sequence, int | OpaqueClient, list[OpaqueClient]],
    ids=["object", "any", "base-with-dataclass-child", "abc", "union", "generic"],
)
def test_annotations_that_may_hold_encodable_values_are_accepted(annotation: Any) -> None:
    """Only a class that can never be encoded fails early; the rest are checked per call."""

    def extract(text: str, extra: object = None) -> UserDetail:
        return UserDetail(name=text, age=0)

    extract.__annotations__["extra"] = annotation
    instructor_cache(extract)


def test_paths_are_keyed_by_flavour_not_by_class_location() -> None:
    """A path's key does not name pathlib's private module, which moved in Python 3.13.

    It names pathlib's class, since a PosixPath can do what a PurePosixPath cannot (exists()).
    """
    posix, windows = pathlib.PurePosixPath("a/b"), pathlib.PureWindowsPath("a/b")
    assert key_of(pathlib.PosixPath("a/b")) == key_of(pathlib.Path("a/b"))  # Path is posix here
    assert key_of(posix) != key_of(pathlib.Path("a/b"))
    from instructor_cache._encoding import encode

    assert "_local" not in encode(pathlib.Path("a/b"))
    assert key_of(posix) != key_of(windows)
    assert key_of(posix) != key_of("a/b")


def test_a_dataclass_with_an_unset_field_is_reported_as_unencodable() -> None:
    """An instance missing a field (init=False, never set) names the parameter."""

    @dataclasses.dataclass
    class Partial:
        ready: int = dataclasses.field(init=False)

    with pytest.raises(UnencodableArgumentError) as caught:
        key_of(Partial())
    assert caught.value.parameter == "value"


def test_a_parameter_annotated_with_the_class_being_defined_can_be_decorated() -> None:
    """Only the return annotation must resolve when decorating; ``other: Document`` may not yet."""
    namespace: dict[str, Any] = {}
    exec(  # noqa: S102  (a class body under postponed annotations, as users write it)
        "from __future__ import annotations\n"
        "from pydantic import BaseModel\n"
        "from instructor_cache import instructor_cache\n"
        "class Summary(BaseModel):\n"
        "    text: str\n"
        "class Document(BaseModel):\n"
        "    body: str\n"
        "    @instructor_cache\n"
        "    def compare(self, other: Document) -> Summary:\n"
        "        return Summary(text=self.body + other.body)\n",
        namespace,
    )
    document = namespace["Document"]
    first = document(body="a").compare(document(body="b"))
    assert document(body="a").compare(document(body="b")) == first
    assert document.compare.cache_info().hits == 1


# --------------------------------------------------------------------------- the whole value space
# tests/_value_space.py draws from every supported kind of argument, with the
# cases that once shared keys over-represented; observe() is the reference.


@settings(max_examples=400, deadline=None)
@given(rng=st.randoms(use_true_random=False), rebuilt=st.booleans())
def test_values_share_a_key_exactly_when_a_function_could_not_tell_them_apart(
    rng: random.Random, rebuilt: bool
) -> None:
    """Over the whole value space: ``key(a) == key(b)`` iff ``observe(a) == observe(b)``."""
    a = space.random_value(rng)
    b = space.rebuild(a) if rebuilt else space.random_value(rng)
    assert (key_of(a) == key_of(b)) == (space.observe(a) == space.observe(b))


@settings(max_examples=200, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_keyword_arguments_gathered_by_kwargs_share_a_key_only_in_the_same_order(
    rng: random.Random,
) -> None:
    """``**kwargs`` reach the function as an ordered dict: order and values both count."""

    @instructor_cache
    def gather(**options: object) -> Echo:
        return Echo(text=repr(space.observe(options)))

    first = {name: space.random_value(rng) for name in rng.sample("abcd", rng.randrange(4))}
    second = dict(reversed(first.items())) if rng.randrange(2) else dict(first)
    same = space.observe(first) == space.observe(second)
    assert (gather.cache_key(**first) == gather.cache_key(**second)) == same


@settings(max_examples=200, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_closures_share_a_key_exactly_when_their_captured_values_do(rng: random.Random) -> None:
    """Two closures of one factory share keys only if what they captured is indistinguishable."""

    def make(captured: object) -> Any:
        @instructor_cache
        def extract(text: str) -> Echo:
            return Echo(text=f"{text}{space.observe(captured)!r}")

        return extract

    a = space.random_value(rng)
    b = space.rebuild(a) if rng.randrange(2) else space.random_value(rng)
    same = space.observe(a) == space.observe(b)
    assert (make(a).cache_key("t") == make(b).cache_key("t")) == same


def test_the_value_space_gives_the_same_keys_under_other_hash_seeds() -> None:
    """Rebuilt in subprocesses with other PYTHONHASHSEEDs, 300 values get the same keys."""
    expected = space.keys_for_seed(7, 300)
    script = (
        "import json; from tests._value_space import keys_for_seed; "
        "print(json.dumps(keys_for_seed(7, 300)))"
    )
    for seed in ("0", "4242"):
        assert json_under_hash_seed(script, seed) == expected
