"""Canonical, injective text encoding of argument values.

A cache key must separate every pair of arguments a function could tell apart,
including those Python calls equal (``1``, ``1.0``, ``True``; ``nan`` and
``-nan``; two naive datetimes that differ only in ``fold``; two
``OrderedDict`` s in another order) and those a naive join would merge
(``("a:b", "c")`` and ``("a", "b:c")``). So every token starts with a one-letter
type tag, strings carry their length, containers end with ``.``, which no tag
uses, and the grammar is prefix-free: two different values can never produce
the same text. The text depends only on the values, never on ``hash()``,
``id()`` or ``repr()`` of arbitrary objects, so it is the same in every process,
under every ``PYTHONHASHSEED`` and on every Python.

Grammar (one token per value)::

    N | T | F                      None, True, False
    i<hex>;                        int
    f<float.hex()>;                float; n<IEEE bytes hex>; for a NaN (sign and payload kept)
    j<float token><float token>    complex
    s<len>:<text>                  str
    b<len>:<hex>                   bytes (y for bytearray)
    P<flavour token><text token>   a path: posix or windows, and its text
    l<tokens>.  t<tokens>.         list, tuple
    d<key token><value token>... . dict, in insertion order (a function sees that order)
    e<tokens>.  E<tokens>.         set, frozenset, sorted by token (their order means nothing)
    c<len>:<class path>[<schema>]  a class: importable by that path, or a model with its
                                   schema fingerprint
    g<origin token><args token>    a parametrised type (list[User], Optional[User])
    r<hex>;                        the same container met again: which one, by the order
                                   in which containers were finished
    o<len>:<class path><tokens>.   any other supported object: its class (a model's with
                                   its schema fingerprint), then tokens for its data (enum
                                   value, ISO date, zone and fold, model fields, private
                                   attributes and which fields were set, dataclass fields)

Values are encoded by an explicit stack, not by recursion, so nesting depth is
bounded by memory only; a container met again on its own path is a cycle, told
by identity, and raises ``Unencodable`` with ``cycle=True``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import functools
import ipaddress
import itertools
import pathlib
import struct
import sys
import types
import typing
import uuid
import zoneinfo
from collections.abc import Callable, Iterable
from typing import Any

import pydantic_core
from pydantic import BaseModel

from instructor_cache._classes import class_behaviour
from instructor_cache._names import UNNAMED_BUILTINS, is_library, resolves_to, type_path

__all__ = ["BUILTIN_BASES", "Unencodable", "class_token", "encode"]


class Unencodable(TypeError):  # noqa: N818  (internal signal, re-raised with the parameter name)
    """Raised for a value with no stable encoding; carries the offending value."""

    def __init__(self, value: Any, *, cycle: bool = False) -> None:
        super().__init__(type_path(value if isinstance(value, type) else type(value)))
        self.value = value
        self.cycle = cycle


def _str(value: str) -> str:
    return f"s{len(value)}:{value}"


def _float(value: float) -> str:
    if value != value:  # noqa: PLR0124  (NaN: float.hex() drops its sign and payload)
        return f"n{struct.pack('>d', value).hex()};"
    return f"f{value.hex()};"


def _object(cls: type, tag: str = "") -> str:
    path = type_path(cls)
    return f"o{len(path)}:{path}{_class_tag(cls)}{tag}"


@functools.lru_cache(maxsize=1024)
def _class_tag(cls: type) -> str:
    """What an instance's token adds after its class path: the class's schema and behaviour.

    A model's schema and behaviour; any other class of the user's own code its
    behaviour (methods, class attributes), so an edited method that reads
    ``self`` or a factory's local class with another ``ClassVar`` prompt makes
    another key. Classes of Python and of libraries add nothing.
    """
    if issubclass(cls, BaseModel):
        return _model_schema(cls)
    if cls in UNNAMED_BUILTINS or is_library(cls):
        return ""
    return "~" + class_behaviour(cls)[:32]


def _model_schema(cls: type[BaseModel]) -> str:
    # Imported here: pydantic's JSON-schema machinery is not worth loading
    # with the package; the fingerprint itself is cached per class.
    from instructor_cache._schema import model_class_fingerprint  # noqa: PLC0415

    try:
        return model_class_fingerprint(cls)[:32]
    except Exception:  # noqa: BLE001  (a schema pydantic cannot write has no stable token)
        raise Unencodable(cls) from None


# Values with no parts: one exact-type lookup and one call, the hot path.
# Subclasses (bool is an int, IntEnum is an int, a NamedTuple is a tuple)
# never match it, so they reach ``_node``, which records their class.
_LEAVES: dict[type, Callable[[Any], str]] = {
    str: _str,
    int: lambda v: f"i{v:x};",
    float: _float,
    bool: lambda v: "T" if v else "F",
    type(None): lambda _v: "N",
    bytes: lambda v: f"b{len(v)}:{v.hex()}",
    bytearray: lambda v: f"y{len(v)}:{v.hex()}",
    complex: lambda v: f"j{_float(v.real)}{_float(v.imag)}",
}

# The containers: tag, and whether their order is meaningful to a function.
_CONTAINERS: dict[type, tuple[str, bool]] = {
    list: ("l", True),
    tuple: ("t", True),
    dict: ("d", True),
    set: ("e", False),
    frozenset: ("E", False),
}

BUILTIN_BASES: tuple[type, ...] = (*_LEAVES, *_CONTAINERS)

# Values whose text is their whole identity (with their class): what pydantic
# parses from JSON, so one cached function's result can be another's argument.
_BY_TEXT: tuple[type, ...] = (
    uuid.UUID,
    decimal.Decimal,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
    pydantic_core.Url,
    pydantic_core.MultiHostUrl,
)


class _Node(typing.NamedTuple):
    """A value with parts: its opening text, the values inside, and how to close it."""

    opening: str
    parts: Iterable[Any]
    ordered: bool = True


def encode(value: Any) -> str:
    """Return the canonical token for ``value`` or raise ``Unencodable``."""
    leaf = _LEAVES.get(type(value))
    if leaf is not None:
        return leaf(value)
    return _encode_tree(value)


def _encode_tree(root: Any) -> str:
    """Encode a value with parts, depth-first on an explicit stack.

    A frame is ``[node's id, iterator over its parts, tokens so far, ordered,
    where its token goes, opening text, the value]``. Parts are encoded in order; when a
    frame's iterator is spent, its tokens (sorted where the order means
    nothing) close into one token in the parent's list.
    """
    out: list[str] = []
    stack: list[list[Any]] = []
    on_path: set[int] = set()
    # Containers already encoded in this call, by id (all alive until it
    # returns), and the order they were finished in. One met again is written
    # as a reference to that order, so a value shared many times over (x =
    # [x, x], forty times) costs forty tokens, not 2**40. The function can tell
    # [a, a] from [a, copy(a)] (change one, and see), so the key may too. Not
    # so for an immutable one (a tuple, an enum member), whose sharing is an
    # accident of the interpreter (the empty tuple is one object on some
    # versions, not on others): it is referenced only once its token is long,
    # which bounds the cost and leaves small values keyed by value alone.
    # Each finished container is held here too, so that no temporary made
    # while encoding (a model's field dict) is freed and its id reused.
    done: dict[int, tuple[int, Any]] = {}
    value, into = root, out
    while True:
        leaf = _LEAVES.get(type(value))
        if leaf is not None:
            into.append(leaf(value))
        elif id(value) in done:
            into.append(f"r{done[id(value)][0]:x};")
        else:
            _open(value, into, stack, on_path)
        while stack:
            frame = stack[-1]
            value = next(frame[1], _DONE)
            if value is not _DONE:
                into = frame[2]
                break
            stack.pop()
            on_path.discard(frame[0])
            tokens = frame[2] if frame[3] else sorted(frame[2])
            token = frame[5] + "".join(tokens) + "."
            frame[4].append(token)
            if frame[0] != -1 and (
                len(token) > _SHARE_IMMUTABLE_FROM or not isinstance(frame[6], _IMMUTABLE)
            ):
                done[frame[0]] = (len(done), frame[6])
        else:
            return out[0]


def _open(value: Any, into: list[str], stack: list[list[Any]], on_path: set[int]) -> None:
    """Append the token of a value without parts, or push a frame for one with parts."""
    if type(value) is _Node:  # a part made by _node itself (a subclass's base value)
        node: _Node | str = value
        identity = -1  # never an id() of a live object in CPython, and always on the path
    else:
        node, identity = _node(value), id(value)
        if isinstance(node, _Node):
            if identity in on_path:
                raise Unencodable(value, cycle=True)
            on_path.add(identity)
    if isinstance(node, str):
        into.append(node)
    else:
        stack.append([identity, iter(node.parts), [], node.ordered, into, node.opening, value])


_DONE = object()
_IMMUTABLE = (tuple, frozenset, enum.Enum, datetime.timedelta, types.GenericAlias)
_SHARE_IMMUTABLE_FROM = 1024  # characters of token


def _node(value: Any) -> _Node | str:  # noqa: PLR0911, PLR0912  (one branch per kind)
    """The token of a value without parts, or the ``_Node`` of one with parts."""
    cls = type(value)
    container = _CONTAINERS.get(cls)
    if container is not None:
        tag, ordered = container
        parts = itertools.chain.from_iterable(value.items()) if cls is dict else value
        return _Node(tag, parts, ordered)
    if isinstance(value, enum.Enum):
        # By value, which every member has (a Flag's 0 or combination has no
        # name on some Pythons); a plain enum's name joins it for aliases' sake.
        parts = [value._value_] if isinstance(value, enum.Flag) else [value._value_, value._name_]
        return _Node(_object(cls), parts)
    if isinstance(value, BaseModel):
        try:
            fields = {name: getattr(value, name) for name in cls.model_fields}
        except AttributeError:  # a model_construct() missing a field
            raise Unencodable(value) from None
        # Private attributes and which fields were set (model_dump's
        # exclude_unset sees it) are part of what the function is given.
        state = (
            fields,
            value.__pydantic_extra__ or {},
            value.__pydantic_private__ or {},
            frozenset(value.__pydantic_fields_set__),
        )
        return _Node(_object(cls), state)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        except AttributeError:  # a field never set
            raise Unencodable(value) from None
        return _Node(_object(cls), [fields, _instance_state(value, fields)])
    if isinstance(value, (datetime.datetime, datetime.time)):
        # isoformat() keeps the UTC offset but neither the zone, whose rules
        # decide what adding a day does, nor fold, which picks the repeated hour.
        zone = _zone(value.tzinfo, value)
        return _kept(value, _object(cls, _str(value.isoformat()) + _str(zone) + f"i{value.fold};"))
    if isinstance(value, datetime.date):
        return _kept(value, _object(cls, _str(value.isoformat())))
    if isinstance(value, datetime.timedelta):
        return _kept(value, _Node(_object(cls), (value.days, value.seconds, value.microseconds)))
    if isinstance(value, pathlib.PurePath):
        # By flavour and pathlib's class name, not module: pathlib.PosixPath
        # lives in pathlib._local on 3.13+. A subclass of the user's by path.
        flavour = "windows" if isinstance(value, pathlib.PureWindowsPath) else "posix"
        kind = cls.__qualname__ if cls.__module__.startswith("pathlib") else type_path(cls)
        return _kept(value, f"P{_str(flavour)}{_str(kind)}{_str(str(value))}")
    if isinstance(value, _BY_TEXT):
        return _kept(value, _object(cls, _str(str(value))))
    # pydantic's URL and e-mail types, which cost an import (email, annotated-types)
    # that no caller needs before one of them exists: none can exist before it.
    networks = sys.modules.get("pydantic.networks")
    if networks is not None:
        # _BaseMultiHostUrl is the base of pydantic's multi-host URLs.
        if isinstance(value, (networks.AnyUrl, networks._BaseMultiHostUrl)):
            return _kept(value, _object(cls, _str(str(value))))
        if isinstance(value, networks.NameEmail):
            return _kept(value, _Node(_object(cls), (value.name, value.email)))
    if typing.get_origin(value) is not None:  # list[User], Optional[User], Literal["a"]
        return _Node("g", (_origin(value), typing.get_args(value)))
    if isinstance(value, type):
        return class_token(value)
    for base in BUILTIN_BASES:
        if isinstance(value, base):
            return _subclass_node(value, base)
    raise Unencodable(value)


def _kept(value: Any, plain: _Node | str) -> _Node | str:
    """``plain``, the token of a value read by its text or parts, with what a subclass adds.

    A class of the user's own (``class Money(Decimal)`` with a ``currency``)
    may carry attributes its text does not show: two instances that differ
    only there must not share a key. Classes of Python and of libraries add
    nothing, so their tokens stay as they are.
    """
    cls = type(value)
    if is_library(cls):
        return plain
    state = {name: item for name, item in _instance_state(value, {}).items() if _users(name, cls)}
    if not state:
        return plain
    # A tag no other token has, then what the plain token showed, then the state.
    shown = plain if isinstance(plain, str) else tuple(plain.parts)
    return _Node(_object(cls, "+"), (shown, state))


def _users(name: str, cls: type) -> bool:
    """Whether ``name`` (from ``_instance_state``) is in ``__dict__`` or a user class's slot."""
    owner, _, _ = name.rpartition(".")
    return not owner or any(k.__qualname__ == owner and not is_library(k) for k in cls.__mro__)


def _subclass_node(value: Any, base: type) -> _Node:
    """A builtin subclass (``OrderedDict``, a ``NamedTuple``): its class, then its base token.

    The base value is read through the base's own methods, never the
    subclass's (a ``__str__`` or ``__iter__`` it overrides could hide data).
    """
    cls = type(value)
    extra: list[Any] = []
    if isinstance(value, collections.defaultdict):
        extra.append(value.default_factory)  # what a missing key turns into
    state = _instance_state(value, {})
    if state:
        extra.append(state)
    if base in _LEAVES:
        base_part: Any = _BASE_VALUE[base](value)
    else:
        tag, ordered = _CONTAINERS[base]
        parts = (
            itertools.chain.from_iterable(dict.items(value))
            if base is dict
            else base.__iter__(value)  # type: ignore[attr-defined]
        )
        base_part = _Node(tag, parts, ordered)
    return _Node(_object(cls), [base_part, *extra])


_BASE_VALUE: dict[type, Callable[[Any], Any]] = {
    str: str.__str__,
    int: int.__int__,
    float: float.__float__,
    bytes: lambda v: bytes(memoryview(v)),
    bytearray: lambda v: bytearray(memoryview(v)),
    complex: lambda v: complex(complex.real.__get__(v), complex.imag.__get__(v)),
}


def _instance_state(value: Any, known: dict[str, Any]) -> dict[str, Any]:
    """Attributes an instance carries besides ``known`` fields: its ``__dict__`` and slots."""
    state = {
        name: item
        for name, item in (getattr(value, "__dict__", None) or {}).items()
        if name not in known
    }
    for klass in type(value).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__") or name in known:
                continue
            try:
                state[f"{klass.__qualname__}.{name}"] = object.__getattribute__(value, name)
            except AttributeError:  # a slot never set
                continue
    return state


def _origin(alias: Any) -> Any:
    origin = typing.get_origin(alias)
    if isinstance(origin, type):
        return origin
    return repr(origin)  # typing.Union, typing.Literal: special forms named by the typing module


def class_token(cls: type) -> str:
    """The token of a class: its import path, which must lead back to it, or a model's schema.

    Two classes made by ``create_model("Result", ...)`` share a path; their
    schemas tell them apart. Any other class is encodable only where its path
    resolves to that very object, so two local classes of one name never share
    a key.
    """
    path = type_path(cls)
    if issubclass(cls, BaseModel):
        return f"c{len(path)}:{path}{_model_schema(cls)}"
    if resolves_to(cls) or cls in UNNAMED_BUILTINS:
        return f"c{len(path)}:{path}"
    raise Unencodable(cls)


def _zone(tzinfo: datetime.tzinfo | None, value: Any) -> str:
    if tzinfo is None:
        return ""
    if isinstance(tzinfo, datetime.timezone):
        return f"timezone:{tzinfo}"
    if isinstance(tzinfo, pydantic_core.TzInfo):  # a fixed offset pydantic parsed from JSON
        return f"TzInfo:{tzinfo.tzname(None)}:{tzinfo.utcoffset(None)}"
    if isinstance(tzinfo, zoneinfo.ZoneInfo) and tzinfo.key is not None:
        return f"zoneinfo:{tzinfo.key}"
    zone = getattr(tzinfo, "zone", None)  # pytz
    if isinstance(zone, str):
        return f"{type_path(type(tzinfo))}:{zone}"
    raise Unencodable(value)  # a tzinfo with no stable name
