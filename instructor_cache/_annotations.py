"""Which parameter annotations no value could ever be keyed under, so decorating fails early."""

from __future__ import annotations

import abc
import dataclasses
import datetime
import decimal
import enum
import pathlib
import typing
import uuid
from typing import Any, TypeGuard

from pydantic import BaseModel

from instructor_cache._encoding import BUILTIN_BASES
from instructor_cache._names import is_library

__all__ = ["never_encodable"]


_ENCODABLE_BASES: tuple[type, ...] = (
    *BUILTIN_BASES,
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

    Only a plain concrete class of a library qualifies (``OpenAI``, ``threading.Lock``):
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
    if not is_library(annotation):  # the user's own base: a subclass defined later may encode
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
