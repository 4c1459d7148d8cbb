"""Whether a value read back from its entry is the value the function returned.

``==`` is far too loose for a cache's write check: ``1 == 1.0 == True``,
``Decimal("1.0") == Decimal("1.00")``, ``0.0 == -0.0``, and two aware
datetimes are equal when they name the same instant, in any zones, though
adding a day to them lands on different hours. ``same_data`` compares types
and data all the way down instead, and walks with an explicit stack, so a
deeply nested value is a "no", never a ``RecursionError``.

A model must also have the same fields set (``model_fields_set``, which
``model_dump(exclude_unset=True)`` and argument keys read). What it
deliberately lets through, because the return annotation promised no more:
instructor's own subclass of the annotated model and a subclass that adds
nothing public (see ``_model_like``), a model's private attributes (never
stored: instructor's ``_raw_response`` comes back as ``None``), and a
container subclass that adds only private state (instructor's
``ListResponse``; see ``_plain_like``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import decimal
import inspect
import struct
import zoneinfo
from typing import Any

from pydantic import BaseModel
from pydantic_core import TzInfo

__all__ = ["one_shot_inside", "same_data"]

# Values a serializer would consume: iterating or awaiting them once uses them up.
_ONE_SHOT = (collections.abc.Iterator, collections.abc.AsyncIterator, collections.abc.Awaitable)
_CONTAINERS = (list, tuple, dict, set, frozenset)
_SEQUENCES = (list, tuple, set, frozenset)
_FIXED_OFFSET = (datetime.timezone, TzInfo)  # what pydantic reads an offset back as
# Special methods a container subclass may define and still behave as its base.
_CONSTRUCTION = frozenset({"__init__", "__new__", "__doc__", "__init_subclass__"})
_ABSENT = object()
_ATOMS = frozenset({str, int, float, bool, bytes, type(None)})
_DOUBLE = struct.Struct(">d")
_METHOD_WRAPPERS = (classmethod, staticmethod, property)
# What pydantic itself may put in a model subclass's namespace: the merged
# config, and the hook that initialises private attributes.
_PYDANTIC_PUBLIC = frozenset({"model_config", "model_post_init"})


def same_data(original: Any, reread: Any) -> bool:
    """Whether ``reread`` holds exactly the data of ``original``, as the same kinds of values."""
    pending: list[tuple[Any, Any]] = [(original, reread)]
    try:
        while pending:
            a, b = pending.pop()
            if a is not b and not _same_node(a, b, pending):
                return False
    except RecursionError:  # a leaf's own __eq__ recursing too deep: cannot tell, so no
        return False
    return True


def one_shot_inside(value: Any) -> Any:
    """The first iterator, stream or awaitable in ``value`` (``None`` if there is none).

    Serializing one would consume it before the caller sees it, so it is
    looked for before anything is dumped.
    """
    pending, seen = [value], set()
    while pending:
        item = pending.pop()
        if type(item) in _ATOMS:
            continue
        if isinstance(item, _ONE_SHOT):
            return item
        if id(item) in seen:
            continue
        seen.add(id(item))
        # Through the builtin's own iteration: a subclass's may have side effects.
        if isinstance(item, dict):
            pending.extend(dict.keys(item))
            pending.extend(dict.values(item))
        elif isinstance(item, _SEQUENCES):
            builtin: Any = next(b for b in _SEQUENCES if isinstance(item, b))
            pending.extend(builtin.__iter__(item))
        elif isinstance(item, BaseModel):
            pending.extend(item.__dict__.values())
            pending.extend((item.__pydantic_extra__ or {}).values())
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            pending.extend(getattr(item, f.name) for f in dataclasses.fields(item))
    return None


def _same_node(a: Any, b: Any, pending: list[tuple[Any, Any]]) -> bool:
    """Compare one pair; push the pairs of its parts, which are compared later."""
    cls = type(b)
    if type(a) is not cls:
        return _same_across_types(a, b, pending)
    if cls is float:
        return _DOUBLE.pack(a) == _DOUBLE.pack(b)  # bitwise: -0.0 is not 0.0, -nan not nan
    if isinstance(b, _CONTAINERS):
        return _push_container(a, b, pending)
    if isinstance(b, BaseModel):
        return _push_model(a, b, pending)
    return _same_leaf(a, b, pending)


def _same_across_types(a: Any, b: Any, pending: list[tuple[Any, Any]]) -> bool:
    """The few cases where the annotation promised no more than the type read back."""
    if isinstance(a, BaseModel) and isinstance(b, BaseModel):
        return _push_model(a, b, pending)
    if isinstance(a, _FIXED_OFFSET) and isinstance(b, _FIXED_OFFSET):
        return _same_zone(a, b)
    cls = type(b)
    return (
        cls in _CONTAINERS
        and isinstance(a, cls)
        and _plain_like(a, cls)
        and _push_container(a, b, pending)
    )


def _push_container(a: Any, b: Any, pending: list[tuple[Any, Any]]) -> bool:
    if len(a) != len(b):
        return False
    if isinstance(b, dict):
        # In order: a dict's order is visible, and JSON keeps it.
        pending.extend(zip(a.keys(), b.keys(), strict=True))
        pending.extend(zip(a.values(), b.values(), strict=True))
        return True
    if isinstance(b, (set, frozenset)):
        return _push_set(a, b, pending)
    pending.extend(zip(a, b, strict=True))
    return True


def _same_leaf(a: Any, b: Any, pending: list[tuple[Any, Any]]) -> bool:
    if isinstance(b, (datetime.datetime, datetime.time)):
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.fold == b.fold
            and _same_zone(a.tzinfo, b.tzinfo)
        )
    if type(b) is decimal.Decimal:
        return bool(a.as_tuple() == b.as_tuple())  # Decimal("1.0") is not Decimal("1.00")
    if dataclasses.is_dataclass(b):
        pending.extend((getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(b))
        return True
    return bool(a == b)


def _push_model(a: BaseModel, b: BaseModel, pending: list[tuple[Any, Any]]) -> bool:
    """Fields, extras and the set of fields given; private attributes are not stored.

    ``a`` may be an instance of a subclass of ``b``'s class if the subclass
    behaves as the class (``_model_like``) and has the same fields.
    """
    cls = type(b)
    if (
        not isinstance(a, cls)
        or type(a).model_fields.keys() != cls.model_fields.keys()
        or a.__pydantic_fields_set__ != b.__pydantic_fields_set__
        or (type(a) is not cls and not _model_like(type(a), cls))
    ):
        return False
    pending.extend((getattr(a, name), getattr(b, name)) for name in cls.model_fields)
    pending.append((a.__pydantic_extra__, b.__pydantic_extra__))
    return True


def _push_set(a: Any, b: Any, pending: list[tuple[Any, Any]]) -> bool:
    counterparts = {item: item for item in b}
    for item in a:
        # The element of b equal to item (1 finds True): compared strictly later.
        match = counterparts.get(item, _ABSENT)
        if match is _ABSENT:
            return False
        pending.append((item, match))
    return True


def _same_zone(a: datetime.tzinfo | None, b: datetime.tzinfo | None) -> bool:
    """Whether two zones give every datetime the same offset, name and DST flag.

    pydantic reads any offset back as its own fixed-offset ``TzInfo``: that
    is the same zone as a ``datetime.timezone`` only if the name agrees too
    (``%Z``); a ``ZoneInfo`` never comes back (the offset after DST arithmetic
    would be wrong), so it is never the same as a fixed offset.
    """
    if a is b:
        return True
    if isinstance(a, _FIXED_OFFSET) and isinstance(b, _FIXED_OFFSET):
        return (a.utcoffset(None), a.tzname(None), a.dst(None)) == (
            b.utcoffset(None),
            b.tzname(None),
            b.dst(None),
        )
    if type(a) is zoneinfo.ZoneInfo and type(b) is zoneinfo.ZoneInfo:
        return a.key == b.key
    return a is not None and type(a) is type(b) and bool(a == b)


def _model_like(subclass: type[BaseModel], cls: type[BaseModel]) -> bool:
    """Whether an instance of ``subclass`` can come back as an instance of ``cls``.

    Yes for the subclass instructor makes of a response model (it mixes in
    its own ``ResponseSchema``, whose methods are instructor's, not the
    caller's), and for a subclass that adds nothing public: no method,
    property, attribute or special method (``__str__``) beyond what pydantic
    itself writes into every model class, and the same config. No for
    anything a caller could tell apart (a ``Dog(Animal)`` that overrides
    ``speak``, a computed field, a validator, a frozen config): a hit would
    return ``cls`` and lose it.
    """
    added = [klass for klass in subclass.__mro__ if klass not in cls.__mro__]
    by_instructor = any(_from_instructor(klass) for klass in added)
    for klass in added:
        if _from_instructor(klass):
            continue
        namespace = vars(klass)
        public = {name for name in namespace if not name.startswith("_")}
        if not public <= _PYDANTIC_PUBLIC or _special_methods(namespace):
            return False
        hook = namespace.get("model_post_init")
        if hook is not None and not getattr(hook, "__module__", "").startswith("pydantic."):
            return False
        config = namespace.get("model_config", cls.model_config)
        if config != cls.model_config and not by_instructor:
            return False
    return True


def _from_instructor(klass: type) -> bool:
    return klass.__module__.partition(".")[0] == "instructor"


def _special_methods(namespace: Any) -> set[str]:
    """The special methods a class defines itself (``__str__``, ``__eq__``, ``__call__``).

    Construction hooks do not count: a hit is built by validation, and the
    instance behaves the same whichever way it was made.
    """
    return {
        name
        for name, attribute in namespace.items()
        if name.startswith("__")
        and name not in _CONSTRUCTION
        and (inspect.isfunction(attribute) or isinstance(attribute, _METHOD_WRAPPERS))
    }


def _plain_like(value: Any, base: type) -> bool:
    """Whether a subclass instance of a builtin container can come back as the plain container.

    Yes for instructor's ``ListResponse`` (a ``list[Model]`` result: its only
    additions are the private ``_raw_response`` and ``_total_usage``, which a
    hit returns without, as it returns a model without its private
    attributes) and for any subclass that overrides or adds no special
    method, defines no public name (a method ``total()`` would be missing
    from the hit) and whose instances hold private attributes only.
    No for anything that behaves differently: ``defaultdict`` and ``Counter``
    (missing keys), ``OrderedDict`` (order-aware ``==``), a ``namedtuple``
    (named fields): such a value is returned but not stored.
    """
    cls = type(value)
    if cls.__name__ == "ListResponse" and cls.__module__.partition(".")[0] == "instructor":
        return True
    special = set(dir(base)) - _CONSTRUCTION
    for klass in cls.__mro__[: cls.__mro__.index(base)]:
        namespace = vars(klass)
        slots = namespace.get("__slots__", ())
        names = [slots] if isinstance(slots, str) else list(slots)
        names.extend(namespace)
        if special.intersection(namespace) or _special_methods(namespace):
            return False
        if not all(n.startswith("_") for n in names):
            return False
    return all(name.startswith("_") for name in getattr(value, "__dict__", {}))
