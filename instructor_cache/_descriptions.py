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

from instructor_cache._encoding import encode
from instructor_cache._keys import KeyBuilder, KeyBuildFunction
from instructor_cache.backends._contract import DescribesCalls

__all__ = ["describing", "readable"]


def describing(builder: KeyBuilder, store: DescribesCalls) -> KeyBuildFunction:
    """``builder.build``, telling ``store`` which function and arguments each key stands for."""
    build, name, describe = builder.build, builder.name, store.describe

    def build_and_describe(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        key = build(args, kwargs)

        def arguments() -> dict[str, Any] | None:
            try:
                found = builder.arguments(args, kwargs)
                return None if found is None else {k: readable(v) for k, v in found.items()}
            except Exception:  # noqa: BLE001  (a key function or a model's dump may raise anything)
                return None  # a description is worth less than the call: none, then

        # A third-party store's describe must not cost the call either.
        with contextlib.suppress(Exception):
            describe(key, name, arguments)
        return key

    return build_and_describe


def readable(value: Any) -> Any:
    """``value`` as plain JSON a reviewer can read: models dumped, anything else its key token.

    Only exact built-in types are shown as themselves (a ``str`` subclass
    or a ``bool`` is not an ``int`` here); the canonical token that the key
    hashes stands for whatever has no plain JSON form, so nothing shown is
    a guess at what the key holds.
    """
    kind = type(value)
    if value is None or kind in (str, int, bool):
        return value
    if kind is float:
        return value if math.isfinite(value) else encode(value)
    if kind in (list, tuple):
        return [readable(item) for item in value]
    if kind is dict and all(type(key) is str for key in value):
        return {key: readable(item) for key, item in value.items()}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return encode(value)
