"""What a key stands for, told to a store that writes it down for people to read.

Only a store with the ``DescribesCalls`` capability is told, and only
because it was chosen when decorating: for every other store the key
builder is left as it is, so their hit path does not change.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from instructor_cache._encoding import encode
from instructor_cache._keys import KeyBuilder, KeyBuildFunction
from instructor_cache.backends._contract import DescribesCalls

__all__ = ["describe_call", "describing", "readable"]


def describing(builder: KeyBuilder, store: DescribesCalls) -> KeyBuildFunction:
    """``builder.build``, telling ``store`` which function and arguments each key stands for."""
    build = builder.build

    def build_and_describe(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        key = build(args, kwargs)
        describe_call(builder, store, key, args, kwargs)
        return key

    return build_and_describe


def describe_call(
    builder: KeyBuilder,
    store: DescribesCalls,
    key: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> None:
    """Tell ``store`` that ``key`` stands for this call; never raises.

    Apart from ``describing``, for a store chosen per call rather than when
    decorating (a test session routing every function to its fixtures).
    """

    def arguments() -> dict[str, Any] | None:
        try:
            found = builder.arguments(args, kwargs)
            return None if found is None else {name: readable(v) for name, v in found.items()}
        except Exception:  # noqa: BLE001  (a key function or a model's dump may raise anything)
            return None  # a description is worth less than the call: none, then

    # A third-party store's describe must not cost the call either.
    with contextlib.suppress(Exception):
        store.describe(key, builder.name, arguments)


def readable(value: Any) -> Any:
    """``value`` as plain JSON a reviewer can read, the same in every process.

    Containers and models are shown by their parts; a set sorted (its order
    would change with the hash seed) if its items sort; a value pydantic
    serializes to one JSON scalar (a date, an enum, a UUID) as that; anything
    else as the canonical token the key hashes. It is for reading only: the
    key, not this, decides what an entry answers.
    """
    kind = type(value)
    if kind in (list, tuple):
        return [readable(item) for item in value]
    if kind is dict and all(type(key) is str for key in value):
        return {key: readable(item) for key, item in value.items()}
    if kind in (set, frozenset) and {type(item) for item in value} in ({str}, {int}, set()):
        return sorted(value)
    if isinstance(value, BaseModel):
        return readable(value.model_dump())
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if _plain(value):
        return value
    try:
        plain = to_jsonable_python(value)
    except Exception:  # noqa: BLE001  (a type pydantic cannot serialize: its token, then)
        return encode(value)
    return plain if _plain(plain) else encode(value)


def _plain(value: Any) -> bool:
    kind = type(value)
    return value is None or kind in (str, int, bool) or (kind is float and math.isfinite(value))
