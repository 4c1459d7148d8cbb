"""Fixed functions and calls whose cache keys ``test_keys.py`` pins, in-process and in subprocesses.

A key embeds the module of the function (and of enum and model arguments), so
every object here that a key names is pinned to ``GOLDEN_MODULE``: the keys do
not depend on the name this file is imported under.

From the project root, ``python -c "from tests import _golden_keys as g; g.print_keys()"``
prints every key as JSON, to regenerate the literals in ``test_keys.py``.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import json
import math
import sys
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, PrivateAttr

from instructor_cache import make_cache_key
from instructor_cache._codec import Codec

T = TypeVar("T")

GOLDEN_MODULE = "instructor_cache_golden"
# Classes passed as arguments must be importable by their path: this module is.
sys.modules.setdefault(GOLDEN_MODULE, sys.modules[__name__])


def _pinned(obj: T) -> T:
    obj.__module__ = GOLDEN_MODULE  # type: ignore[attr-defined]
    return obj


@_pinned
class GoldenUser(BaseModel):
    name: str
    age: int


@_pinned
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@_pinned
class Shade(enum.Flag):
    LIGHT = 1
    DARK = 2


@_pinned
class Secretive(BaseModel):
    name: str
    _token: str = PrivateAttr("")


@_pinned
class Tagged(BaseModel):
    """A schema whose defaults hold sets, nested: pydantic writes them in hash order."""

    tags: set[str] = {"alpha", "beta", "gamma", "delta"}
    nested: dict[str, frozenset[str]] = {"k": frozenset({"x", "y", "z", "w"})}
    inner: list[set[str]] = [{"p", "q", "r", "s"}]


@_pinned
def extract(text: str, model: str = "gpt-4o-mini") -> GoldenUser:
    return GoldenUser(name=text, age=len(model))


@_pinned
def describe(value: object, *, note: str | None = None) -> GoldenUser:
    return GoldenUser(name=repr((value, note)), age=0)


@_pinned
def with_options(text: str, **options: object) -> GoldenUser:
    return GoldenUser(name=text, age=len(options))


@_pinned
def tag(text: str) -> Tagged:
    return Tagged(tags={text})


@_pinned
def lowercase_text(arguments: dict[str, Any]) -> str:
    return str(arguments["text"]).lower()


def _secretive(token: str) -> Secretive:
    value = Secretive(name="s")
    value._token = token
    return value


Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], dict[str, Any]]
"""The function, its positional and keyword arguments, and the ``make_cache_key`` options."""

GOLDEN_CALLS: dict[str, Call] = {
    "str-default-model": (extract, ("Jason is 25",), {}, {}),
    "str-explicit-model": (extract, ("Jason is 25",), {"model": "gpt-4o"}, {}),
    "namespace-and-version": (
        extract,
        ("Jason is 25",),
        {},
        {"namespace": "team", "version": "v2"},
    ),
    "ignore-model": (extract, ("Jason is 25", "gpt-4o"), {}, {"ignore": ("model",)}),
    "key-function": (extract, ("Jason is 25",), {}, {"key": lowercase_text}),
    "int": (describe, (42,), {}, {}),
    "negative-big-int": (describe, (-(10**30),), {}, {}),
    "float": (describe, (2.5,), {}, {}),
    "negative-zero": (describe, (-0.0,), {}, {}),
    "none": (describe, (None,), {}, {}),
    "bool-with-keyword-only": (describe, (True,), {"note": "flag"}, {}),
    "bytes": (describe, (b"\x00\xff",), {}, {}),
    "nested-dict-list": (describe, ({"b": [1, 2.5, None], "a": {"x": (True, "y")}},), {}, {}),
    "set": (describe, ({"beta", "alpha", "gamma"},), {}, {}),
    "aware-datetime": (
        describe,
        (datetime.datetime(2024, 11, 24, 3, 28, 5, tzinfo=datetime.timezone.utc),),
        {},
        {},
    ),
    "uuid": (describe, (uuid.UUID("12345678-1234-5678-1234-567812345678"),), {}, {}),
    "decimal": (describe, (decimal.Decimal("19.99"),), {}, {}),
    "enum": (describe, (Color.RED,), {}, {}),
    "model": (describe, (GoldenUser(name="Ada", age=36),), {}, {}),
    "non-ascii-and-surrogate-str": (describe, ("héllo 日本 \ud800",), {}, {}),
    "ordered-dict": (describe, (collections.OrderedDict([("b", 1), ("a", 2)]),), {}, {}),
    "kwargs-in-call-order": (with_options, ("t",), {"b": 1, "a": 2}, {}),
    "naive-datetime-fold-1": (describe, (datetime.datetime(2024, 11, 3, 1, 30, fold=1),), {}, {}),
    "zoneinfo-datetime": (
        describe,
        (datetime.datetime(2024, 3, 9, 12, tzinfo=zoneinfo.ZoneInfo("America/New_York")),),
        {},
        {},
    ),
    "model-class": (describe, (GoldenUser,), {}, {}),
    "list-of-model-type": (describe, (list[GoldenUser],), {}, {}),
    "flag-zero": (describe, (Shade(0),), {}, {}),
    "flag-combination": (describe, (Shade.LIGHT | Shade.DARK,), {}, {}),
    "negative-nan": (describe, (-math.nan,), {}, {}),
    "model-with-private-attribute": (describe, (_secretive("s3cret"),), {}, {}),
    "complex": (describe, (complex(1.5, -2),), {}, {}),
    "name-option": (extract, ("Jason is 25",), {}, {"name": "pinned.extract"}),
    "no-code-fingerprint": (extract, ("Jason is 25",), {}, {"code_fingerprint": False}),
}

STABILITY_CALLS: dict[str, Call] = {
    "set-of-str": (describe, ({"alpha", "beta", "gamma", "delta", "epsilon", "zeta"},), {}, {}),
    "frozenset-mixed": (describe, (frozenset({1, "1", 2.5, None, b"x", ("a", 1)}),), {}, {}),
    "set-of-frozensets": (describe, ({frozenset({"a", "b"}), frozenset({"c"})},), {}, {}),
    "dict-mixed-keys": (
        describe,
        ({"1": "str", 1: "int", 1.5: "float", None: "none", ("a", 1): "tuple", b"k": "bytes"},),
        {},
        {},
    ),
    "dict-of-sets": (describe, ({"x": {"p", "q", "r"}, "y": frozenset({"s", "t"})},), {}, {}),
    "strings": (describe, (["", "a", "héllo", "日本語", "\ud800", "a:b"],), {}, {}),
    "keywords-in-other-order": (extract, (), {"model": "m", "text": "t"}, {}),
    "return-schema-with-set-defaults": (tag, ("t",), {}, {}),
    "model-class-with-set-defaults": (describe, (Tagged,), {}, {}),
    "model-with-set-defaults": (describe, (Tagged(),), {}, {}),
}


def key_for(call: Call) -> str:
    """The key ``make_cache_key`` gives one of the calls above."""
    func, args, kwargs, options = call
    return make_cache_key(func, args, kwargs, **options)


def all_keys() -> dict[str, str]:
    """Every golden and stability key, by case name."""
    calls = {**GOLDEN_CALLS, **STABILITY_CALLS}
    return {name: key_for(call) for name, call in calls.items()}


def golden_fingerprint() -> str:
    """The full schema fingerprint of ``GoldenUser``, which the keys embed."""
    return Codec(GoldenUser, where="golden").fingerprint


def print_keys() -> None:
    """Print ``all_keys()`` as JSON, for a subprocess to report its keys."""
    print(json.dumps(all_keys(), sort_keys=True))
