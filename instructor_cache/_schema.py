"""A type's JSON schema fingerprint, the same in every process.

The fingerprint joins every key (the return type's) and the token of every
model class or instance passed as an argument, so it must not depend on
``PYTHONHASHSEED``. pydantic writes a field default that holds a set, nested in
a model, a dict or a list, in the set's iteration order, which is hash order:
the defaults are made canonical (sets sorted, models as their fields) before
pydantic writes them, and the schema text is written with sorted keys.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

__all__ = ["adapter_fingerprint", "model_class_fingerprint"]


def _canonical(value: Any) -> Any:
    """``value`` with every set sorted and every model replaced by its field values."""
    if isinstance(value, BaseModel):
        fields = {name: _canonical(getattr(value, name)) for name in type(value).model_fields}
        return {"__model__": type(value).__qualname__, **fields}
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(item) for item in value), key=repr)
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


class _CanonicalJsonSchema(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        return super().encode_default(_canonical(dft))


def _json_default(value: Any) -> Any:
    # Objects pydantic left in the schema (a set in json_schema_extra, say).
    canonical = _canonical(value)
    return canonical if canonical is not value else repr(value)


def adapter_fingerprint(adapter: TypeAdapter[Any]) -> str:
    """SHA-256 of the validation and serialization schemas of ``adapter``'s type."""
    schemas = {
        mode: adapter.json_schema(mode=mode, schema_generator=_CanonicalJsonSchema)
        for mode in ("validation", "serialization")
    }
    text = json.dumps(schemas, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def model_class_fingerprint(cls: type[BaseModel]) -> str:
    """The fingerprint of a model class, computed once per class.

    The cache holds its classes strongly, so a class collected and another
    made at the same address can never be mistaken for it.
    """
    return adapter_fingerprint(TypeAdapter(cls))
