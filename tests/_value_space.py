"""The space of supported argument values, generated from a seed, and what a function sees of them.

``random_value`` draws from every kind the key encoder supports, with the
cases that once shared keys over-represented: ordered dicts in both orders,
naive datetimes differing only in ``fold``, models differing only in a
private attribute or in which fields were set, model classes of one name made
by ``create_model``, unnamed flags, signed NaNs, deep nesting. ``observe`` is
the reference: an independent account of everything a function can tell
about a value. Two values must share a key exactly when they observe equal.
It is deterministic for a seed, so a subprocess under another
``PYTHONHASHSEED`` rebuilds the same values.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import math
import random
import struct
import uuid
import zoneinfo
from typing import Any

from pydantic import BaseModel, PrivateAttr, create_model

from instructor_cache import make_cache_key


class Shade(enum.Flag):
    LIGHT = 1
    DARK = 2
    WARM = 4


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int
    y: float = 0.0
    _label: str = PrivateAttr("")


# Classes of one name and module whose fields differ: a function given one
# as response_model= builds a different answer.
RESULT_MODELS = [
    create_model("Result", answer=(int, ...)),
    create_model("Result", answer=(str, ...)),
    create_model("Result", answer=(int, ...), note=(str, "")),
    create_model("Result", answer=(list[int], ...)),
]

_ZONES = [None, datetime.timezone.utc, zoneinfo.ZoneInfo("America/New_York")]
_WORDS = ["", "a", "b", "a:b", "é", "日本", "\ud800", "1"]
_FLOATS = [0.0, -0.0, 1.0, 2.5, math.inf, -math.inf, math.nan, -math.nan]


def _scalar(rng: random.Random) -> Any:  # noqa: PLR0911  (one branch per kind)
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, 1, -1, 2**70, rng.randrange(-5, 5)])
    if kind == 2:
        return rng.choice(_FLOATS)
    if kind == 3:
        return rng.choice(_WORDS)
    if kind == 4:
        return rng.choice([b"", b"a", b"\x00\xff"])
    if kind == 5:
        return complex(rng.choice(_FLOATS), rng.choice(_FLOATS))
    if kind == 6:
        moment = datetime.datetime(2024, 11, 3, 1, rng.choice([0, 30]), fold=rng.randrange(2))
        return moment.replace(tzinfo=rng.choice(_ZONES))
    if kind == 7:
        return rng.choice([Shade(0), Shade.LIGHT, Shade.LIGHT | Shade.DARK, Color.RED, Color.BLUE])
    if kind == 8:
        return rng.choice([decimal.Decimal("1.0"), decimal.Decimal("1.00"), uuid.UUID(int=7)])
    if kind == 9:
        return rng.choice([*RESULT_MODELS, Point, int, list[Point], list[RESULT_MODELS[0]]])
    if kind == 10:
        point = Point(x=rng.randrange(2)) if rng.randrange(2) else Point(x=rng.randrange(2), y=0.0)
        if rng.randrange(2):
            point._label = rng.choice(["", "label"])
        return point
    return datetime.timedelta(seconds=rng.randrange(3))


def random_value(rng: random.Random, depth: int = 0) -> Any:  # noqa: PLR0911  (a branch per kind)
    """One value of the supported space; containers nest up to three levels."""
    kind = rng.randrange(9) if depth < 3 else 0
    if kind <= 2:
        return _scalar(rng)
    size = rng.randrange(4)
    if kind == 3:
        return [random_value(rng, depth + 1) for _ in range(size)]
    if kind == 4:
        return tuple(random_value(rng, depth + 1) for _ in range(size))
    if kind == 5:
        items = [(rng.choice(_WORDS), random_value(rng, depth + 1)) for _ in range(size)]
        return (collections.OrderedDict if rng.randrange(2) else dict)(items)
    if kind == 6:
        return rng.choice([set, frozenset])(rng.choice(_WORDS) for _ in range(size))
    if kind == 7:
        deep: Any = random_value(rng, 3)
        for _ in range(rng.choice([1, 2, 300, 3000])):
            deep = [deep]
        return deep
    return {rng.choice([1, 2.5, "k"]): random_value(rng, depth + 1) for _ in range(size)}


def observe(value: Any) -> Any:  # noqa: PLR0911  (one branch per kind)
    """Everything a function can tell about ``value``, as plain comparable data.

    Deep chains of one-item lists are counted, not recursed into, so the
    reference has no depth limit either.
    """
    depth = 0
    while type(value) is list and len(value) == 1 and type(value[0]) is list:
        value, depth = value[0], depth + 1
    if depth:
        return ("chain", depth, observe(value))
    cls = type(value)
    kind = f"{cls.__module__}.{cls.__qualname__}"
    if cls is float:
        return (kind, struct.pack(">d", value))
    if cls is complex:
        return (kind, struct.pack(">dd", value.real, value.imag))
    if cls in (list, tuple):
        return (kind, tuple(observe(item) for item in value))
    if isinstance(value, dict):
        return (kind, tuple((observe(k), observe(v)) for k, v in value.items()))
    if cls in (set, frozenset):
        return (kind, frozenset(observe(item) for item in value))
    if isinstance(value, datetime.datetime):
        return (kind, value.isoformat(), value.fold, repr(value.tzinfo))
    if isinstance(value, enum.Enum):
        return (kind, value.value)
    if isinstance(value, BaseModel):
        fields = {name: observe(getattr(value, name)) for name in cls.model_fields}
        private = value.__pydantic_private__ or {}
        return (
            kind,
            tuple(fields.items()),
            tuple(private.items()),
            frozenset(value.model_fields_set),
        )
    if isinstance(value, type):
        fields = getattr(value, "model_fields", {})
        return (
            "class",
            kind,
            value.__qualname__,
            tuple((n, repr(f.annotation)) for n, f in fields.items()),
        )
    if isinstance(value, decimal.Decimal):
        return (kind, str(value))
    return (kind, repr(value))


def rebuild(value: Any) -> Any:
    """An equal, separately built value: fresh containers, sets filled in another order."""
    depth = 0
    while type(value) is list and len(value) == 1 and type(value[0]) is list:
        value, depth = value[0], depth + 1
    cls = type(value)
    if cls in (list, tuple):
        copy: Any = cls(rebuild(item) for item in value)
    elif isinstance(value, dict):
        copy = cls((rebuild(k), rebuild(v)) for k, v in value.items())
    elif cls in (set, frozenset):
        copy = cls(reversed([rebuild(item) for item in value]))
    elif isinstance(value, BaseModel):
        copy = value.model_copy(deep=True)
    else:
        copy = value
    for _ in range(depth):
        copy = [copy]
    return copy


def probe(value: object) -> Point:
    """A function of one argument that returns what it sees of it."""
    return Point(x=len(repr(observe(value))))


def keys_for_seed(seed: int, count: int) -> list[str]:
    """The keys of ``count`` values drawn from ``seed``, for comparing across processes."""
    rng = random.Random(seed)
    return [make_cache_key(probe, (random_value(rng),)) for _ in range(count)]
