"""What a decorated function is, apart from its arguments: its name and what it carries.

A key names the function by a stable identity, the same in every process that
runs the same code: ``module.qualname``, where a script's ``__main__`` is
replaced by the name the file would be imported under (so ``python a.py`` and
``python b.py`` never share ``__main__.run``, and a cache warmed by a script is
read by the tests that import it), or the ``name=`` the user pinned.

A function also sees values that are not arguments: a closure's free
variables and a bound method's instance. They are read at call time, since a
captured list filled after decorating, or an instance changed after
``instructor_cache(obj.method)``, changes what the function does.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
from collections.abc import Callable, Collection
from typing import Any

from instructor_cache._encoding import Unencodable, encode
from instructor_cache._names import main_module_name, type_path
from instructor_cache._source import code_digest
from instructor_cache.errors import UnencodableArgumentError

__all__ = [
    "CallContext",
    "cached_layers_below",
    "free_variables",
    "function_name",
]


def function_name(fn: Callable[..., Any]) -> str:
    """The module and qualified name that identify ``fn`` across processes."""
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    if module in ("__main__", "__mp_main__"):
        module = main_module_name(module)
    return f"{module}.{qualname}"


def free_variables(fn: Callable[..., Any]) -> set[str]:
    """The names ``fn`` captures, with its wrappers and the functions it captures, at any depth."""
    names: set[str] = set()
    pending: list[Any] = [getattr(fn, "__func__", fn)]
    seen: set[int] = set()
    while pending:
        layer = pending.pop()
        if layer is None or id(layer) in seen:
            continue
        seen.add(id(layer))
        for variable, cell in _cells_of(layer):
            names.add(variable)
            with contextlib.suppress(ValueError):  # an empty cell
                if isinstance(cell.cell_contents, (types.FunctionType, types.MethodType)):
                    pending.append(getattr(cell.cell_contents, "__func__", cell.cell_contents))
        pending.append(getattr(layer, "__wrapped__", None))
    return names


def cached_layers_below(fn: Callable[..., Any]) -> int:
    """How many cached layers ``fn`` already is (0 for a plain function)."""
    layers, seen = 0, set()
    layer: Any = fn
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        layers += callable(getattr(layer, "cache_info", None))
        layer = getattr(layer, "__wrapped__", None)
    return layers


class CallContext:
    """Reads, at call time, the values ``fn`` sees besides its arguments.

    Two closures made by one factory (``make_extractor("French")`` and
    ``make_extractor("German")``) share a module and a qualified name: what
    they captured joins the key, read at each call (a list of examples filled
    after decorating is seen). A captured function joins by its code and, in
    turn, what it captured (a ``build_prompt`` closure over the language); a
    bound method by its function and instance. A captured object with no
    stable encoding (a client, whose base URL may change the answer) cannot
    be proved not to matter, so it is refused, naming the variable: list it
    in ``ignore=`` if it does not matter. So is a variable the function
    changes itself (a call counter), which would change the key at every
    call. A bound method's instance is part of its identity and must be
    encodable.
    """

    __slots__ = ("_cells", "_ignore", "_instance", "_name")

    def __init__(self, fn: Callable[..., Any], name: str, ignore: Collection[str] = ()) -> None:
        self._name = name
        self._ignore = frozenset(ignore)
        self._instance: list[Any] = []
        if inspect.ismethod(fn):
            self._instance.append(fn.__self__)
            fn = fn.__func__
        # Free variables of the function and of every wrapper around it (a
        # functools.wraps decorator closes over the function, not the
        # prompt), except our own cached layers, whose cells are internals.
        self._cells: list[tuple[str, Any]] = []
        layer: Any = fn
        depth, seen = 0, set()
        while layer is not None and id(layer) not in seen:
            seen.add(id(layer))
            if not callable(getattr(layer, "cache_info", None)):
                for variable, cell in _cells_of(layer):
                    if variable not in ignore:
                        self._cells.append((f"{variable}@{depth}" if depth else variable, cell))
            layer, depth = getattr(layer, "__wrapped__", None), depth + 1
        self.read()  # what cannot be encoded fails at decoration

    def __bool__(self) -> bool:
        return bool(self._instance or self._cells)

    def read(self) -> str:
        """The encoded context now: the instance, then each captured value."""
        values: dict[str, Any] = {}
        if self._instance:
            instance = self._instance[0]
            try:
                values["__self__"] = encode(instance)
            except Unencodable:
                raise _unencodable_instance(self._name, instance) from None
        for variable, cell in self._cells:
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell: assigned later in the enclosing function
                values[variable] = ("empty",)
                continue
            try:
                values[variable] = _captured(value, set(), self._ignore)
            except Unencodable as exc:
                raise _unencodable_capture(self._name, variable.split("@")[0], value, exc) from None
        return encode(values)


def _cells_of(function: Any) -> list[tuple[str, Any]]:
    """A function's free variables and their cells; ``__class__`` (for super()) is its own."""
    code = getattr(function, "__code__", None)
    cells = getattr(function, "__closure__", None) or ()
    names = code.co_freevars if code is not None else ()
    return [(n, c) for n, c in zip(names, cells, strict=False) if n != "__class__"]


def _captured(value: Any, seen: set[int], ignore: frozenset[str]) -> Any:
    """The encoded form of one captured value, following functions into what they capture.

    A variable named in ``ignore`` is left out at any depth: ``ignore=("client",)``
    also covers a helper closure over the same client.
    """
    try:
        return encode(value)
    except Unencodable:
        if isinstance(value, types.ModuleType):  # import json inside the factory
            return ("module", value.__name__)
        if isinstance(value, types.BuiltinFunctionType):  # len, or "a".join
            owner = value.__self__
            bound = owner.__name__ if isinstance(owner, types.ModuleType) else encode(owner)
            return ("builtin", value.__qualname__, bound)
        wrapped = getattr(value, "__wrapped__", None)
        if callable(getattr(value, "cache_info", None)) and wrapped is not None:
            value = wrapped  # a cached function of ours: what it wraps (itself, if recursive)
        elif not isinstance(value, (types.FunctionType, types.MethodType)):
            raise
    if id(value) in seen:  # a recursive helper: its code and captures are already in
        return ("again", value.__qualname__)
    seen.add(id(value))
    if isinstance(value, types.MethodType):
        return ("method", encode(value.__self__), _captured(value.__func__, seen, ignore))
    captures = {}
    for variable, cell in _cells_of(value):
        if variable in ignore:
            continue
        try:
            contents = cell.cell_contents
        except ValueError:
            captures[variable] = ("empty",)
            continue
        captures[variable] = _captured(contents, seen, ignore)
    defaults = [_captured(d, seen, ignore) for d in value.__defaults__ or ()]
    keyword_defaults = {
        k: _captured(d, seen, ignore) for k, d in (value.__kwdefaults__ or {}).items()
    }
    return (
        "function",
        value.__qualname__,
        _code_identity(value.__code__),
        encode((captures, defaults, keyword_defaults)),
    )


@functools.lru_cache(maxsize=1024)
def _code_identity(code: types.CodeType) -> str:
    # The exact code object (bytecode, constants, names) of this interpreter:
    # two lambdas of one qualified name never match.
    return code_digest(code)


def _unencodable_capture(
    name: str, variable: str, value: Any, exc: Unencodable
) -> UnencodableArgumentError:
    inner = exc.value
    what = type_path(type(value))
    if inner is not value:
        what += f" holding a {type_path(inner if isinstance(inner, type) else type(inner))}"
    return UnencodableArgumentError(
        f"cannot cache {name}(): it captures {variable!r}, a {what}, which has no stable "
        "encoding for a key, so calls that differ in it could share results. If its state "
        f"never changes the answer (a client), leave it out with ignore=({variable!r},); "
        "otherwise pass it as an argument with a stable value.",
        parameter=variable,
    )


def _unencodable_instance(name: str, instance: Any) -> UnencodableArgumentError:
    return UnencodableArgumentError(
        f"cannot cache the bound method {name}(): its instance, a "
        f"{type_path(type(instance))}, has no stable encoding for a key. Decorate "
        "the method in the class body instead, where self is an argument (with "
        "ignore=('self',) if all instances may share results).",
        parameter="self",
    )
