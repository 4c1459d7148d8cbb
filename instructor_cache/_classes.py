"""What a class does, beyond its name and fields: part of the key of its instances and itself.

Two classes made by one factory (``make_task("French")``, ``create_model(
"Result", __validators__=...)``) share a module and a qualified name, and
two models may share a JSON schema while one upper-cases a field in a
validator or carries another ``ClassVar`` prompt. A function given one or the
other, or an instance of one or the other, can answer differently, so the
class's behaviour joins the key: the code of the methods, validators and
serializers its own code defines (by the code fingerprint, the same on every
Python), its class attributes and its pydantic config. Library classes in its
bases (``BaseModel``, ``Enum``, ``object``) are the same everywhere and are
left out.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import types
from typing import Any

from instructor_cache._fingerprint import code_fingerprint
from instructor_cache._names import is_library, type_path

__all__ = ["class_behaviour"]

# Attributes every class, dataclass or model has, made by Python or pydantic:
# their content is the fields (keyed on their own) or differs by version.
_MADE_FOR_EVERY_CLASS = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__dict__",
        "__weakref__",
        "__annotations__",
        "__annotate__",
        "__annotate_func__",
        "__annotations_cache__",
        "__static_attributes__",
        "__firstlineno__",
        "__slots__",
        "__orig_bases__",
        "__parameters__",
        "__abstractmethods__",
        "_abc_impl",
        "__signature__",
        "__class_vars__",
        "__private_attributes__",
        "__dataclass_fields__",
        "__dataclass_params__",
        "__match_args__",
        "model_fields",
        "model_computed_fields",
        "__hash__",
    }
)


_IN_PROGRESS = threading.local()


def class_behaviour(cls: type) -> str:
    """A digest of what ``cls``'s own code adds to its behaviour (see the module docstring).

    A class met again while its own digest is being made in this thread (a
    class attribute holding an instance of a class that refers back) counts
    by name there. Per thread: another thread digesting the same class at the
    same time makes its own, whole digest.
    """
    in_progress: set[type] = _IN_PROGRESS.__dict__.setdefault("classes", set())
    if cls in in_progress:
        return f"again:{cls.__qualname__}"
    in_progress.add(cls)
    try:
        return _behaviour(cls)
    finally:
        in_progress.discard(cls)


def _behaviour(cls: type) -> str:
    parts: list[str] = []
    for klass in cls.__mro__:
        if is_library(klass):
            continue
        parts.append(f"class {klass.__qualname__}")
        for name, value in sorted(vars(klass).items()):
            if name in _MADE_FOR_EVERY_CLASS or name.startswith("__pydantic"):
                continue
            if isinstance(value, cls) or (name.startswith("_") and name.endswith("_")):
                continue  # an enum's members (keyed by value) and its _sunder_ internals
            function = _function_inside(value)
            if name.startswith("__") and name.endswith("__") and not _is_written(function):
                continue  # a dunder Python or a dataclass generated
            parts.append(f"{name}={_attribute(value, function)}")
    decorators = getattr(cls, "__pydantic_decorators__", None)
    kinds = [f.name for f in dataclasses.fields(decorators)] if decorators is not None else []
    for kind in sorted(kinds):
        for name, decorator in sorted(getattr(decorators, kind).items()):
            function = _function_inside(decorator.func)
            info = decorator.info
            described = {
                f.name: _attribute(getattr(info, f.name), _function_inside(getattr(info, f.name)))
                for f in dataclasses.fields(info)
            }
            parts.append(f"{kind}:{name}:{described}:{_attribute(None, function)}")
    import hashlib  # noqa: PLC0415  (once per class: OpenSSL's module loads when needed)

    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _function_inside(value: Any) -> types.FunctionType | None:
    """The function behind a method, classmethod, staticmethod, property or pydantic proxy."""
    for _ in range(6):
        if isinstance(value, types.FunctionType):
            return value
        inner = None
        for attribute in ("__func__", "wrapped", "fget", "func"):
            inner = getattr(value, attribute, None)
            if inner is not None:
                break
        if inner is None:
            return None
        value = inner
    return None


def _is_written(function: types.FunctionType | None) -> bool:
    """Whether a function was written in the user's file (not generated, not a library's)."""
    if function is None or function.__code__.co_filename.startswith("<"):
        return False
    top = (function.__module__ or "").partition(".")[0]
    return top not in sys.stdlib_module_names and top not in ("pydantic", "pydantic_core")


def _captures(function: types.FunctionType) -> str:
    """The values in a function's closure cells, encoded where they can be."""
    cells = zip(function.__code__.co_freevars, function.__closure__ or (), strict=False)
    described = []
    for name, cell in cells:
        if name == "__class__":
            continue
        try:
            contents = cell.cell_contents
        except ValueError:
            described.append(f"{name}=empty")
            continue
        inner = _function_inside(contents)
        if inner is not None and inner is not function:
            described.append(f"{name}=code:{code_fingerprint(inner)}")
        else:
            described.append(f"{name}={_attribute(contents, None)}")
    return ";".join(described)


def _attribute(value: Any, function: types.FunctionType | None) -> str:
    if function is not None:
        # Its code, and the values it captured: two validators made by one
        # factory differ only there (``lambda v: v + suffix``).
        return f"code:{code_fingerprint(function)}:{_captures(function)}"
    if isinstance(value, dict):  # model_config
        items = sorted(value.items(), key=lambda item: str(item[0]))
        return "{" + ",".join(f"{k}:{_attribute(v, _function_inside(v))}" for k, v in items) + "}"
    from instructor_cache._encoding import Unencodable, encode  # noqa: PLC0415  (a cycle)

    try:
        return f"value:{encode(value)}"
    except Unencodable:
        return f"class:{type_path(type(value))}"
