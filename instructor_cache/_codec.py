"""Return values to versioned JSON envelopes and back, never through pickle.

The codec is built once per decorated function from its return annotation, so
a hit costs one ``validate_json`` call in pydantic-core and nothing else.

An entry is a small JSON object::

    {"v": 2, "created": 1732406400.5, "duration": 1.93, "value": <the value>}

``v`` is the format version; unknown keys are ignored, so later versions can
add fields without breaking old readers. Version 2 leaves out a model's unset
fields, so they read back unset; a version 1 entry (every field set) is a
miss. Two optional fields came later within version 2, written only when
known, so entries without them (and readers that ignore them) stay valid:
``"usage": {"model": "gpt-4o-mini", "input": 9, "output": 5}``, the tokens the
call used (``_usage``), and ``"raw": {...}``, the provider's raw completion
instructor attached to the result (``_raw``). Neither is part of the value:
the write check compares the value alone, and a field that is not what we
write is ignored, not a miss.
"""

from __future__ import annotations

import collections.abc
import functools
import typing
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from pydantic import (
    PydanticSchemaGenerationError,
    PydanticUserError,
    TypeAdapter,
)
from pydantic.errors import PydanticInvalidForJsonSchema
from typing_extensions import NotRequired, TypedDict

from instructor_cache._sameness import one_shot_inside, same_data
from instructor_cache.errors import UncacheableFunctionError

__all__ = ["FORMAT_VERSION", "Codec", "DecodeError", "EncodeError"]

R = TypeVar("R")

FORMAT_VERSION = 2

# Return types that look like data but are promises of data to come: caching
# them would store an iterator or a coroutine, not a result.
_STREAMING_ORIGINS = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.Awaitable,
    collections.abc.Generator,
    collections.abc.AsyncGenerator,
)


class EncodeError(ValueError):
    """A value that cannot be stored so that it reads back equal."""


class DecodeError(ValueError):
    """Stored text that is not a valid entry for this function's return type."""


class Codec(Generic[R]):
    """Encodes and decodes one return type; also fingerprints its schema and models' behaviour."""

    __slots__ = ("_adapter", "fingerprint", "read_envelope", "return_type")

    def __init__(self, return_type: Any, *, where: str) -> None:
        _reject_unstorable(return_type, where)
        self.return_type = return_type
        try:
            self._adapter: TypeAdapter[R] = TypeAdapter(return_type)
            from instructor_cache._schema import return_type_fingerprint  # noqa: PLC0415  (heavy)

            self.fingerprint = return_type_fingerprint(return_type, self._adapter)
            envelope: Any = TypedDict(  # type: ignore[name-match]  # built per return type
                "Envelope",
                {
                    "v": Literal[2],
                    "created": float,
                    "duration": float,
                    "usage": NotRequired[Any],  # read by _usage.read_usage, leniently
                    "raw": NotRequired[Any],
                    "value": return_type,
                },
            )
            envelope_adapter: TypeAdapter[Any] = TypeAdapter(envelope)
        except (
            PydanticSchemaGenerationError,
            PydanticInvalidForJsonSchema,
            PydanticUserError,
        ) as exc:
            raise UncacheableFunctionError(
                f"{where} returns {_type_name(return_type)}, which cannot round-trip through "
                f"JSON ({exc.__class__.__name__}: {str(exc).splitlines()[0]}). Return a pydantic "
                "model, a list or Optional of one, or plain JSON types."
            ) from exc
        # Values are written by field name, so they are read by name alone:
        # a serialization alias, an alias generator or validate_by_name=False
        # cannot make them unreadable. The flags are only needed where the
        # schema has aliases or alias settings; passing them elsewhere would
        # cost a measurable share of a hit.
        validate = envelope_adapter.validator.validate_json
        self.read_envelope: Callable[[str | bytes], dict[str, Any]] = (
            functools.partial(validate, by_alias=False, by_name=True)
            if "alias" in repr(self._adapter.core_schema)
            else validate
        )
        """Validates an entry's text into its envelope dict; raises ``ValidationError``."""

    def encode(
        self,
        value: R,
        *,
        created: float,
        duration: float,
        usage: str | None = None,
        raw: str | None = None,
    ) -> str:
        """Return the entry's text, or raise ``EncodeError`` if it would not read back equal.

        ``usage`` and ``raw`` are the optional fields' JSON texts, if known.

        Dumping by field name in round-trip mode keeps aliases, ``Json[...]``
        fields and computed fields (left out) readable by ``decode``; leaving
        out unset fields makes them read back unset, with their defaults, so
        a hit has the ``model_fields_set`` the call returned (argument keys
        and ``exclude_unset`` dumps read it). Whatever still cannot round-trip
        (a field excluded from dumps, an unset ``default_factory`` field that
        makes a new value, a subclass that adds behaviour, a NaN) is caught
        here by reading the text back and comparing strictly (``same_data``),
        on the write, where the cost is negligible next to the call that
        produced the value.
        An iterator or stream is refused before anything is dumped, since
        dumping it would consume it and hand the caller an empty one.
        """
        try:
            one_shot = one_shot_inside(value)
        except Exception as exc:
            raise EncodeError(_describe(exc)) from exc
        if one_shot is not None:
            raise EncodeError(
                f"it is or holds a one-shot {type(one_shot).__name__} (an iterator, stream or "
                "awaitable), which storing would consume. Return a list or a model instead"
            )
        try:
            dumped = self._adapter.dump_json(
                value, by_alias=False, exclude_unset=True, round_trip=True, warnings=False
            )
            text = '{"v":%d,"created":%r,"duration":%r,%s%s"value":%s}' % (  # noqa: UP031  (fastest exact float text)
                FORMAT_VERSION,
                float(created),
                float(duration),
                "" if usage is None else f'"usage":{usage},',
                "" if raw is None else f'"raw":{raw},',
                dumped.decode(),
            )
            reread, _ = self.decode(text)
            same = same_data(value, reread)
        except Exception as exc:
            raise EncodeError(_describe(exc)) from exc
        if not same:
            raise EncodeError(
                f"it reads back as a different value ({_short(reread)} instead of {_short(value)})"
            )
        return text

    def decode(self, text: str | bytes) -> tuple[R, float]:
        """Return the value stored in ``text`` and how long computing it took.

        Raises ``DecodeError`` for anything that is not an entry of this
        format whose value validates against the return type.
        """
        try:
            envelope = self.read_envelope(text)
        except Exception as exc:
            raise DecodeError(_describe(exc)) from exc
        return envelope["value"], envelope["duration"]


def _reject_unstorable(return_type: Any, where: str) -> None:
    if return_type is None or return_type is type(None):
        raise UncacheableFunctionError(
            f"{where} is annotated to return None: there is nothing to cache. "
            "Annotate the type it returns, e.g. -> UserDetail."
        )
    if return_type is Any or return_type is object:
        raise UncacheableFunctionError(
            f"{where} returns {_type_name(return_type)}, which does not say how to read a "
            "stored value back. Annotate the concrete type, e.g. -> UserDetail."
        )
    origin = typing.get_origin(return_type) or return_type
    if origin in _STREAMING_ORIGINS:
        raise UncacheableFunctionError(
            f"{where} returns {_type_name(return_type)}: a stream or iterator is consumed "
            "once and cannot be replayed from a cache. Return a list or a model instead."
        )


def _describe(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _type_name(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
