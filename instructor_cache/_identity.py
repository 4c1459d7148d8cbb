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

import inspect
import os
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from instructor_cache._encoding import Unencodable, encode, type_path
from instructor_cache.errors import UnencodableArgumentError

__all__ = [
    "CallContext",
    "cached_layers_below",
    "free_variables",
    "function_name",
    "main_module_name",
]


def function_name(fn: Callable[..., Any]) -> str:
    """The module and qualified name that identify ``fn`` across processes."""
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    if module == "__main__":
        module = main_module_name()
    return f"{module}.{qualname}"


def main_module_name() -> str:
    """The name under which ``__main__`` would be imported, where that can be told.

    ``python -m pkg.tool`` has a module spec naming it; ``python pkg/tool.py``
    has a file, named here as an import would name it (the package
    directories above it, while they hold an ``__init__.py``). A REPL or a
    notebook has neither and stays ``__main__``: there the code fingerprint
    tells its functions apart.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return str(spec.name)
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return "__main__"
    path = Path(os.path.abspath(file))
    parts = [path.stem]
    directory = path.parent
    while (directory / "__init__.py").is_file() and directory.parent != directory:
        parts.insert(0, directory.name)
        directory = directory.parent
    return ".".join(parts)


def free_variables(fn: Callable[..., Any]) -> set[str]:
    """The names of the free variables of ``fn`` and of the wrappers around it."""
    names: set[str] = set()
    layer: Any = getattr(fn, "__func__", fn)
    seen: set[int] = set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        code = getattr(layer, "__code__", None)
        names.update(code.co_freevars if code else ())
        layer = getattr(layer, "__wrapped__", None)
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
    ``make_extractor("German")``) share a module and a qualified name: their
    free variables join the key. Those with a stable encoding (a prompt, a
    model name, a list of examples) join by value; those without (a client)
    by their class only, so two closures that differ only in a client share
    entries, as two calls with an ignored argument do. A free variable named
    in ``ignore`` (a call counter the function appends to, which would
    otherwise change the key at every call) is left out. A bound method's
    instance is part of its identity and must be encodable.
    """

    __slots__ = ("_cells", "_instance", "_name")

    def __init__(self, fn: Callable[..., Any], name: str, ignore: Collection[str] = ()) -> None:
        self._name = name
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
                code = getattr(layer, "__code__", None)
                cells = getattr(layer, "__closure__", None) or ()
                for variable, cell in zip(code.co_freevars if code else (), cells, strict=False):
                    if variable not in ignore:
                        self._cells.append((f"{variable}@{depth}" if depth else variable, cell))
            layer, depth = getattr(layer, "__wrapped__", None), depth + 1
        self.read()  # an instance with no stable encoding fails at decoration

    def __bool__(self) -> bool:
        return bool(self._instance or self._cells)

    def read(self) -> str:
        """The encoded context now: the instance, then each free variable's value or class."""
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
                values[variable] = encode(value)
            except Unencodable:
                values[variable] = ("class", type_path(type(value)))
        return encode(values)


def _unencodable_instance(name: str, instance: Any) -> UnencodableArgumentError:
    return UnencodableArgumentError(
        f"cannot cache the bound method {name}(): its instance, a "
        f"{type_path(type(instance))}, has no stable encoding for a key. Decorate "
        "the method in the class body instead, where self is an argument (with "
        "ignore=('self',) if all instances may share results).",
        parameter="self",
    )
