"""The provider's raw completion behind a result: stored as JSON, read back as a view.

instructor hangs the provider's response on what it returns, as
``_raw_response``: on a model (its own subclass of the response model) and on
the ``ListResponse`` it returns for ``list[Model]``. Code reads it for token
usage and the model that answered, so a hit that dropped it would break that
code only once the call is cached. The entry keeps it as JSON (never pickle:
the provider's classes need not exist where the entry is read), and a hit
puts a ``RawResponse`` back: a read-only view with the same attribute access
(``raw.usage.total_tokens``, ``raw.choices[0].message.content``), without
importing the provider's package.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

__all__ = ["RawResponse", "attach_raw", "items_raw_text", "raw_of", "raw_text"]

RAW_ATTRIBUTE = "_raw_response"


class RawResponse(dict[str, Any]):
    """A read-only view over a stored raw completion: a dict whose keys also read as attributes.

    A dict, because a raw completion that was one (the README's example,
    instructor's Bedrock responses) must keep working on hits (``.get``,
    ``json.dumps``, ``isinstance(raw, dict)``); attribute access, because one
    that was a provider's object (``raw.usage.total_tokens``) must too.
    Nested objects read as views, arrays as lists of views, by attribute or
    by key; numbers, strings, booleans and ``None`` as they are.
    ``model_dump()`` returns a copy of the JSON data, as pydantic's does.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        # Not for protocol probes (copy's __deepcopy__, numpy's __array__): they
        # would find a field of that name and pretend.
        if not name.startswith("__") and dict.__contains__(self, name):
            return _view(dict.__getitem__(self, name))
        raise AttributeError(f"the stored raw response has no field {name!r}")

    def __getitem__(self, key: str) -> Any:
        return _view(dict.__getitem__(self, key))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a stored raw response is read-only")

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a stored raw response is read-only")

    __setitem__ = __delitem__ = _read_only
    clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __dir__(self) -> list[str]:
        return sorted({*self.keys(), "model_dump", "model_dump_json", "to_dict", "to_json"})

    def __repr__(self) -> str:
        return f"RawResponse({dict(self)!r})"

    def __reduce__(self) -> tuple[type[RawResponse], tuple[dict[str, Any]]]:
        """Rebuilt through ``__init__``, so that ``copy`` and ``pickle`` of a hit's model work
        (they would otherwise restore the items by assignment, which is refused)."""
        return RawResponse, (dict(self),)

    def model_dump(
        self, *, mode: str = "python", exclude_none: bool = False, **options: Any
    ) -> dict[str, Any]:
        """A copy of the stored JSON data (as pydantic's ``model_dump`` gives a dict).

        Takes the options code commonly passes a provider's response when it
        logs one, so that code does not raise on hits only: ``exclude_none``;
        ``mode``, any of which gives JSON data here; and those in
        ``_SAME_DATA``, which change nothing here: the entry holds every field
        the response had, under its API name, and no record of which were set.
        """
        _check(options, "model_dump")
        copied: dict[str, Any] = json.loads(json.dumps(self))
        return _without_none(copied) if exclude_none else copied

    def model_dump_json(
        self, *, indent: int | None = None, exclude_none: bool = False, **options: Any
    ) -> str:
        """The stored JSON data as text, compact unless ``indent`` is given, as pydantic's."""
        _check(options, "model_dump_json")
        data = _without_none(self.model_dump()) if exclude_none else self
        if indent is None:
            return json.dumps(data, allow_nan=False, separators=(",", ":"))
        return json.dumps(data, allow_nan=False, indent=indent)

    def to_dict(
        self, *, mode: str = "python", exclude_none: bool = False, **options: Any
    ) -> dict[str, Any]:
        """The openai SDK's ``to_dict``: ``model_dump``'s data."""
        return self.model_dump(mode=mode, exclude_none=exclude_none, **options)

    def to_json(self, *, indent: int | None = 2, exclude_none: bool = False, **options: Any) -> str:
        """The openai SDK's ``to_json``: indented by 2 unless told otherwise, as there."""
        return self.model_dump_json(indent=indent, exclude_none=exclude_none, **options)


_SAME_DATA = frozenset(
    {
        "by_alias",
        "context",
        "exclude_defaults",
        "exclude_unset",
        "fallback",
        "round_trip",
        "serialize_as_any",
        "use_api_names",
        "warnings",
    }
)
"""Dump options, of pydantic and of the openai SDK, that leave a stored response's data as it is."""


def _check(options: dict[str, Any], method: str) -> None:
    unknown = sorted(set(options) - _SAME_DATA)
    if unknown:
        raise TypeError(f"{method}() of a stored raw response got unexpected options {unknown}")


def _without_none(item: Any) -> Any:
    """``item`` without the ``None`` fields of its objects, at any depth (pydantic's
    ``exclude_none``: array items stay)."""
    if isinstance(item, dict):
        return {key: _without_none(value) for key, value in item.items() if value is not None}
    if isinstance(item, list):
        return [_without_none(value) for value in item]
    return item


def _view(item: Any) -> Any:
    if isinstance(item, dict):
        return item if isinstance(item, RawResponse) else RawResponse(item)
    if isinstance(item, list):
        return [_view(element) for element in item]
    return item


def raw_of(value: Any) -> Any:
    """The raw completion instructor attached to ``value``, or ``None``.

    In a tuple (``create_with_completion``'s model and completion), that of
    its first model, which is where ``attach_raw`` puts it back on a hit.
    """
    if isinstance(value, tuple):
        model = _first_model(value)
        return None if model is None else raw_of(model)
    if not isinstance(value, (BaseModel, list)):
        return None
    try:
        return getattr(value, RAW_ATTRIBUTE, None)
    except Exception:  # noqa: BLE001  (a model's __getattr__ may raise anything)
        return None


def raw_text(raw: Any) -> str | None:
    """``raw`` as JSON text, or ``None`` if it has no faithful JSON form.

    A pydantic object (OpenAI's, Anthropic's and Google's responses are) is
    dumped with ``model_dump_json``, a dict with ``json`` if it reads back
    equal (not one with an int key or a tuple inside); anything else is
    not stored: no pickle, and no ``str()``, which would read back as a
    string pretending to be the response. Credentials a response carries
    back from its request are blanked (see ``_blanked``).
    """
    try:
        if isinstance(raw, RawResponse):
            text = raw.model_dump_json()
        elif isinstance(raw, BaseModel):
            text = raw.model_dump_json(warnings=False)
        elif isinstance(raw, dict):
            text = json.dumps(raw, allow_nan=False, separators=(",", ":"))
            if json.loads(text) != raw:  # an int key, a tuple: JSON would change them
                return None
        else:
            return None
        lowered = text.lower()
        if any(f'"{name}":' in lowered for name in _CREDENTIALS):
            text = json.dumps(_blanked(json.loads(text)), allow_nan=False, separators=(",", ":"))
    except Exception:  # noqa: BLE001  (json's TypeError/ValueError, a pydantic or model error)
        return None
    return text


_CREDENTIALS = frozenset({"authorization", "headers", "api_key", "api-key", "x-api-key"})
"""Fields that hold a credential where a response echoes its request (a Responses API
response's MCP tools carry ``authorization`` and ``headers``): a cache entry is no place for
them, so they are stored as ``null``, as OpenAI itself sends them back."""


def _blanked(item: Any) -> Any:
    if isinstance(item, dict):
        return {
            key: None if key.lower() in _CREDENTIALS else _blanked(value)
            for key, value in item.items()
        }
    if isinstance(item, list):
        return [_blanked(value) for value in item]
    return item


def items_raw_text(value: list[Any]) -> str | None:
    """The raw completions of a list's models, each its own call's (a stream of calls), as a
    JSON array aligned with the list (``null`` where an item has none, or none JSON can keep);
    ``None`` if no item has one."""
    raws = [raw_of(item) if isinstance(item, BaseModel) else None for item in value]
    if all(raw is None for raw in raws):
        return None
    return "[" + ",".join("null" if raw is None else raw_text(raw) or "null" for raw in raws) + "]"


def attach_raw(value: Any, data: Any) -> None:
    """Put the stored raw completion back on a hit's model (a tuple's first), as instructor
    had it; or, an array of them, on each of a list's models."""
    if isinstance(value, list) and isinstance(data, list) and len(data) == len(value):
        for item, each in zip(value, data, strict=True):
            if isinstance(item, BaseModel) and isinstance(each, dict):
                object.__setattr__(item, RAW_ATTRIBUTE, RawResponse(each))
        return
    if isinstance(value, tuple):
        value = _first_model(value)
    if isinstance(value, BaseModel) and isinstance(data, dict):  # only objects are written
        object.__setattr__(value, RAW_ATTRIBUTE, RawResponse(data))


def _first_model(items: tuple[Any, ...]) -> BaseModel | None:
    return next((item for item in items if isinstance(item, BaseModel)), None)
