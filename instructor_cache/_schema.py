"""A type's JSON schema fingerprint, the same in every process.

The fingerprint joins every key (the return type's) and the token of every
model class or instance passed as an argument, so it must not depend on
``PYTHONHASHSEED``. pydantic writes a set in its iteration order, which is
hash order, wherever one reaches the schema: a field default (nested in a
model, a dict or a list), the ``examples`` and ``json_schema_extra`` of a
field (of a model, dataclass or TypedDict, or a ``Field()`` inside a type such
as ``list[Annotated[str, Field(...)]]``), an ``Examples()`` annotation, an
enum or literal value. Each is made canonical (sets sorted, models as their
fields) before pydantic writes it; a schema without sets is written exactly
as pydantic writes it. The schema text is written with sorted keys.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import typing
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any, Protocol

from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic.json_schema import Examples, GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema, to_jsonable_python

from instructor_cache._classes import class_behaviour

__all__ = ["adapter_fingerprint", "model_class_fingerprint", "return_type_fingerprint"]

_ABSENT = object()


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


def _holds_set(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (set, frozenset)):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return False


class _CanonicalJsonSchema(GenerateJsonSchema):
    """pydantic's JSON schema, with every set it would write in hash order sorted first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._classes: list[type[Any]] = []  # the model or dataclass being written
        self._nested: list[list[Any]] = []  # set-holding examples of Field()s inside types

    def encode_default(self, dft: Any) -> Any:
        return super().encode_default(_canonical(dft))

    def generate_inner(self, schema: Any) -> JsonSchemaValue:
        # A dict json_schema_extra is kept as given and made JSON-able only
        # here, so its sets can be sorted here.
        metadata = schema.get("metadata") or {}
        extra = metadata.get("pydantic_js_extra")
        if isinstance(extra, dict) and _holds_set(extra):
            metadata = {**metadata, "pydantic_js_extra": _canonical(extra)}
            schema = {**schema, "metadata": metadata}
        # So is an ``Examples(...)`` annotation's list.
        functions = metadata.get("pydantic_js_annotation_functions") or []
        if any(_examples_with_set(function) for function in functions):
            canonical = [_canonical_examples(function) for function in functions]
            metadata = {**metadata, "pydantic_js_annotation_functions": canonical}
            schema = {**schema, "metadata": metadata}
        # A Field() inside a type (list[Annotated[str, Field(examples=...)]])
        # has no FieldInfo at hand here: its examples are recognised by
        # content, sets as any order of their items, and written sorted.
        updates = metadata.get("pydantic_js_updates") or {}
        written = updates.get("examples") if self._nested else None
        for examples in self._nested if isinstance(written, list) else ():
            if _written_from(written, examples):
                updates = {**updates, "examples": to_jsonable_python(_canonical(examples))}
                schema = {**schema, "metadata": {**metadata, "pydantic_js_updates": updates}}
                break
        return super().generate_inner(schema)

    # A field's examples were made JSON-able (a set into a list in hash order)
    # when its class was built: they are made again from the field's own
    # FieldInfo, sorted, where they hold a set. The class is the one whose
    # fields are being written, pushed by the schema method of its kind.

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        with self._writing(schema["cls"]):
            return super().model_schema(schema)

    def dataclass_schema(self, schema: core_schema.DataclassSchema) -> JsonSchemaValue:
        with self._writing(schema["cls"]):
            return super().dataclass_schema(schema)

    @contextlib.contextmanager
    def _writing(self, cls: type) -> Iterator[None]:
        """While ``cls``'s fields are written: its nested examples known, it the current class."""
        self._nested.extend(_nested_examples(cls))
        self._classes.append(cls)
        try:
            yield
        finally:
            self._classes.pop()

    def model_fields_schema(self, schema: core_schema.ModelFieldsSchema) -> JsonSchemaValue:
        cls = self._classes[-1] if self._classes else None
        infos = _field_infos(cls)
        fields = {
            name: _with_canonical_examples(field, infos.get(name))
            for name, field in schema["fields"].items()
        }
        computed = getattr(cls, "__pydantic_computed_fields__", {})
        computed_fields = [
            _with_canonical_examples(field, computed.get(field["property_name"]))
            for field in schema.get("computed_fields", [])
        ]
        canonical: Any = {**schema, "fields": fields, "computed_fields": computed_fields}
        return super().model_fields_schema(canonical)

    def dataclass_args_schema(self, schema: core_schema.DataclassArgsSchema) -> JsonSchemaValue:
        infos = _field_infos(self._classes[-1] if self._classes else None)
        fields = [
            _with_canonical_examples(field, infos.get(field["name"])) for field in schema["fields"]
        ]
        return super().dataclass_args_schema({**schema, "fields": fields})

    def typed_dict_schema(self, schema: core_schema.TypedDictSchema) -> JsonSchemaValue:
        self._nested.extend(_nested_examples(schema.get("cls")))
        infos = _field_infos(schema.get("cls"))
        fields = {
            name: _with_canonical_examples(field, infos.get(name))
            for name, field in schema["fields"].items()
        }
        return super().typed_dict_schema({**schema, "fields": fields})

    def enum_schema(self, schema: core_schema.EnumSchema) -> JsonSchemaValue:
        json_schema = super().enum_schema(schema)
        if any(_holds_set(member.value) for member in schema["members"]):
            json_schema["enum"] = [
                to_jsonable_python(_canonical(member.value)) for member in schema["members"]
            ]
        return json_schema

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        expected = [v.value if isinstance(v, Enum) else v for v in schema["expected"]]
        if not _holds_set(expected):
            return super().literal_schema(schema)
        canonical = [_canonical(v) for v in expected]
        return super().literal_schema({**schema, "expected": canonical})


def _examples_with_set(function: Any) -> bool:
    owner = getattr(function, "__self__", None)
    return isinstance(owner, Examples) and _holds_set(owner.examples)


def _canonical_examples(function: Any) -> Any:
    if not _examples_with_set(function):
        return function
    owner = copy.copy(function.__self__)
    owner.examples = _canonical(owner.examples)
    return owner.__get_pydantic_json_schema__


def _field_infos(cls: Any) -> Mapping[str, Any]:
    """The FieldInfo of each field of a model, dataclass or TypedDict, by field name.

    pydantic keeps them on models and pydantic dataclasses; for a standard
    dataclass or a TypedDict they are the ``Field()`` in each annotation's
    metadata or default, the last of which wins, as in pydantic.
    """
    known = getattr(cls, "__pydantic_fields__", None)
    if isinstance(known, Mapping):
        return known
    if cls is None:
        return {}
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001  (an unresolvable hint: pydantic resolved it another way)
        return {}
    defaults = (
        {f.name: f.default for f in dataclasses.fields(cls)}
        if dataclasses.is_dataclass(cls)
        else {}
    )
    infos: dict[str, Any] = {}
    for name, hint in hints.items():
        candidates = [*getattr(hint, "__metadata__", ()), defaults.get(name)]
        found = [c for c in candidates if isinstance(c, FieldInfo) and c.examples is not None]
        if found:
            infos[name] = found[-1]
    return infos


def _annotations(cls: Any) -> list[Any]:
    known = getattr(cls, "__pydantic_fields__", None)
    if isinstance(known, Mapping):
        return [info.annotation for info in known.values()]
    try:
        return list(typing.get_type_hints(cls, include_extras=True).values())
    except Exception:  # noqa: BLE001  (an unresolvable hint: pydantic resolved it another way)
        return []


def _nested_examples(cls: Any) -> list[Any]:
    """The set-holding examples of every ``Field()`` in the annotations of ``cls``'s fields."""
    found, pending, seen = [], _annotations(cls), set()
    while pending:
        item = pending.pop()
        if isinstance(item, FieldInfo):
            if _holds_set(item.examples):
                found.append(item.examples)
        elif id(item) not in seen:
            seen.add(id(item))
            pending.extend(typing.get_args(item))
    return found


def _written_from(written: Any, source: Any) -> bool:
    """Whether pydantic's JSON-able ``written`` is ``source`` with its sets in some order."""
    if isinstance(source, (set, frozenset)):
        return _set_written_from(written, source)
    if isinstance(source, dict):
        return (
            isinstance(written, dict)
            and len(written) == len(source)
            and all(
                str(key) in written and _written_from(written[str(key)], value)
                for key, value in source.items()
            )
        )
    if isinstance(source, (list, tuple)):
        return (
            isinstance(written, list)
            and len(written) == len(source)
            and all(_written_from(w, s) for w, s in zip(written, source, strict=True))
        )
    try:
        return bool(to_jsonable_python(source) == written)
    except Exception:  # noqa: BLE001  (an example pydantic could not make JSON-able either)
        return False


def _set_written_from(written: Any, source: set[Any] | frozenset[Any]) -> bool:
    if not isinstance(written, list) or len(written) != len(source):
        return False
    remaining = list(written)
    for item in source:
        match = next((w for w in remaining if _written_from(w, item)), _ABSENT)
        if match is _ABSENT:
            return False
        remaining.remove(match)
    return True


def _with_canonical_examples(field: Any, info: Any) -> Any:
    examples = getattr(info, "examples", None)
    updates = (field.get("metadata") or {}).get("pydantic_js_updates")
    if not isinstance(updates, Mapping) or "examples" not in updates or not _holds_set(examples):
        return field
    updates = {**updates, "examples": to_jsonable_python(_canonical(examples))}
    return {**field, "metadata": {**field["metadata"], "pydantic_js_updates": updates}}


class _Hash(Protocol):
    def hexdigest(self) -> str: ...


def _sha256(data: bytes) -> _Hash:
    import hashlib  # noqa: PLC0415  (decoration time: OpenSSL's module loads when first needed)

    return hashlib.sha256(data)


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
    import json  # noqa: PLC0415  (decoration time; pydantic alone does not load it)

    text = json.dumps(schemas, sort_keys=True, separators=(",", ":"), default=_json_default)
    return _sha256(text.encode()).hexdigest()


def return_type_fingerprint(return_type: Any, adapter: TypeAdapter[Any]) -> str:
    """A return type's fingerprint: its schemas, and the behaviour of every model in it.

    The JSON schema does not show a validator or a config (``str_to_lower``),
    which decide what a stored entry reads back as: editing one makes new keys.
    """
    behaviours = [class_behaviour(cls) for cls in _models_in(return_type)]
    text = ":".join([adapter_fingerprint(adapter), *behaviours])
    return _sha256(text.encode()).hexdigest()


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation names, with its fields' annotations, in a stable order."""
    found: dict[type[BaseModel], None] = {}
    pending = [annotation]
    while pending:
        current = pending.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            if current in found:
                continue
            found[current] = None
            pending.extend(
                field.annotation for field in reversed(list(current.model_fields.values()))
            )
        pending.extend(reversed(typing.get_args(current)))
    return list(found)


@functools.lru_cache(maxsize=1024)
def model_class_fingerprint(cls: type[BaseModel]) -> str:
    """The fingerprint of a model class as an argument: its schema and its behaviour.

    Two classes of one schema may validate differently (a validator, a
    config), so ``class_behaviour`` joins the schema here. Computed once per
    class; the cache holds its classes strongly, so a class collected and
    another made at the same address can never be mistaken for it.
    """
    schema = adapter_fingerprint(TypeAdapter(cls))
    return _sha256(f"{schema}:{class_behaviour(cls)}".encode()).hexdigest()
