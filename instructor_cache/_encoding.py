"""Canonical, injective text encoding of argument values.

A cache key must separate every pair of arguments a function could tell apart,
including those Python calls equal (``1``, ``1.0``, ``True``) and those a naive
join would merge (``("a:b", "c")`` and ``("a", "b:c")``). So every token
starts with a one-letter type tag, strings carry their length, containers end
with ``.``, which no tag uses, and the grammar is prefix-free: two different
values can never produce the same text. The text depends only on the values,
never on ``hash()``, ``id()`` or ``repr()`` of arbitrary objects, so it is the
same in every process, under every ``PYTHONHASHSEED`` and on every Python.

Grammar (one token per value)::

    N | T | F                      None, True, False
    i<hex>;                        int
    f<float.hex()>;                float
    s<len>:<text>                  str
    b<len>:<hex>                   bytes (y for bytearray)
    P<flavour token><text token>   a path: posix or windows, and its text
    l<tokens>.  t<tokens>.         list, tuple
    d<key token><value token>...   dict, pairs sorted by the key's token, then .
    e<tokens>.  E<tokens>.         set, frozenset, sorted by token
    o<len>:<class path><token>     any other supported object: its class, then
                                   tokens for its data (enum name, ISO date and
                                   zone, model or dataclass field values, ...)
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import decimal
import enum
import pathlib
import typing
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any, TypeGuard

from pydantic import BaseModel

__all__ = ["Unencodable", "encode", "never_encodable", "type_path"]


class Unencodable(TypeError):  # noqa: N818  (internal signal, re-raised with the parameter name)
    """Raised for a value with no stable encoding; carries the offending value."""

    def __init__(self, value: Any) -> None:
        super().__init__(type_path(type(value)))
        self.value = value


def type_path(cls: type) -> str:
    """The importable name of a class, which is stable where ``id()`` and ``hash()`` are not."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _str(value: str) -> str:
    return f"s{len(value)}:{value}"


def _object(cls: type, payload: str) -> str:
    path = type_path(cls)
    return f"o{len(path)}:{path}{payload}"


def _encode_sequence(tag: str, values: Any) -> str:
    return tag + "".join([encode(item) for item in values]) + "."


def _encode_unordered(tag: str, values: Any) -> str:
    return tag + "".join(sorted([encode(item) for item in values])) + "."


def _encode_dict(value: dict[Any, Any]) -> str:
    pairs = sorted([(encode(k), encode(v)) for k, v in value.items()])
    return "d" + "".join([k + v for k, v in pairs]) + "."


# Exact-type dispatch first: it is one dict lookup on the hot path. Subclasses
# (bool is an int, IntEnum is an int, a NamedTuple is a tuple) never match it,
# so they fall through to ``_encode_other``, which records their class.
_EXACT: dict[type, Callable[[Any], str]] = {
    str: _str,
    int: lambda v: f"i{v:x};",
    float: lambda v: f"f{v.hex()};",
    bool: lambda v: "T" if v else "F",
    type(None): lambda _v: "N",
    bytes: lambda v: f"b{len(v)}:{v.hex()}",
    bytearray: lambda v: f"y{len(v)}:{v.hex()}",
    list: lambda v: _encode_sequence("l", v),
    tuple: lambda v: _encode_sequence("t", v),
    dict: _encode_dict,
    set: lambda v: _encode_unordered("e", v),
    frozenset: lambda v: _encode_unordered("E", v),
}

# Base classes whose exact encoder also fits a subclass, once the subclass's
# own name is recorded in front of it.
_BUILTIN_BASES: tuple[type, ...] = (
    bool,
    int,
    float,
    str,
    bytes,
    bytearray,
    list,
    tuple,
    dict,
    set,
    frozenset,
)


def _zone(tzinfo: datetime.tzinfo | None, value: Any) -> str:
    if tzinfo is None:
        return ""
    if isinstance(tzinfo, datetime.timezone):
        return f"timezone:{tzinfo}"
    if isinstance(tzinfo, zoneinfo.ZoneInfo) and tzinfo.key is not None:
        return f"zoneinfo:{tzinfo.key}"
    zone = getattr(tzinfo, "zone", None)  # pytz
    if isinstance(zone, str):
        return f"{type_path(type(tzinfo))}:{zone}"
    raise Unencodable(value)  # a tzinfo with no stable name


def encode(value: Any) -> str:
    """Return the canonical token for ``value`` or raise ``Unencodable``."""
    encoder = _EXACT.get(type(value))
    if encoder is not None:
        return encoder(value)
    try:
        return _encode_other(value)
    except AttributeError:  # a dataclass field never set, a model_construct() missing one
        raise Unencodable(value) from None


def _encode_other(value: Any) -> str:  # noqa: PLR0911  (one branch per supported kind)
    cls = type(value)
    if isinstance(value, enum.Enum):
        return _object(cls, _str(value.name))
    if isinstance(value, BaseModel):
        # By field values, not model_dump_json(): JSON writes inf and NaN as
        # null and a tuple, a list and a set alike, and sets in hash order.
        fields = {name: getattr(value, name) for name in cls.model_fields}
        return _object(cls, _encode_dict(fields) + _encode_dict(value.__pydantic_extra__ or {}))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _object(cls, _encode_dict(fields))
    if isinstance(value, (datetime.datetime, datetime.time)):
        # isoformat() keeps the UTC offset but not the zone, whose rules decide
        # what adding a day does: the zone is part of the value.
        return _object(cls, _str(value.isoformat()) + _str(_zone(value.tzinfo, value)))
    if isinstance(value, datetime.date):
        return _object(cls, _str(value.isoformat()))
    if isinstance(value, datetime.timedelta):
        return _object(cls, encode((value.days, value.seconds, value.microseconds)))
    if isinstance(value, pathlib.PurePath):
        # By flavour, not class: pathlib.PosixPath lives in pathlib._local on 3.13+.
        flavour = "windows" if isinstance(value, pathlib.PureWindowsPath) else "posix"
        return f"P{_str(flavour)}{_str(str(value))}"
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return _object(cls, _str(str(value)))
    if isinstance(value, type):
        return _object(type, _str(type_path(value)))
    for base in _BUILTIN_BASES:
        if isinstance(value, base):
            return _object(cls, _EXACT[base](value))
    raise Unencodable(value)


_ENCODABLE_BASES: tuple[type, ...] = (
    *_BUILTIN_BASES,
    type(None),
    type,
    enum.Enum,
    BaseModel,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
    pathlib.PurePath,
)


def never_encodable(annotation: Any) -> TypeGuard[type]:
    """Whether no value of the annotated class can have a token, so decorating can fail early.

    Only a plain concrete class qualifies (``OpenAI``, ``threading.Lock``):
    neither it nor any subclass defined so far is a kind ``encode`` handles.
    Generics, unions, ``Any``, protocols and ABCs (which ``list`` or a model
    may satisfy) never do; for them the call-time check is the one that speaks.
    """
    if not isinstance(annotation, type) or annotation in (object, Any):  # Any is a class on 3.11+
        return False
    if typing.get_origin(annotation) is not None:  # list[int] passes isinstance(type) on 3.10
        return False
    if isinstance(annotation, abc.ABCMeta) or getattr(annotation, "_is_protocol", False):
        return False
    pending, seen = [annotation], set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if issubclass(cls, _ENCODABLE_BASES) or dataclasses.is_dataclass(cls):
            return False
        pending.extend(type.__subclasses__(cls))
    return True
