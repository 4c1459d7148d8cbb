"""Code fingerprints: a key changes when the code behind an answer changes.

Editing the prompt inside a cached function, or a module-level constant it
reads, must not serve the old prompt's answers. ``code_fingerprint`` digests
what a function's answer depends on in its code:

* Its syntax tree, written canonically (``_source``): node kinds and literal
  values, never positions, comments or docstrings, so that formatting
  changes nothing and the same source gives the same digest on every
  supported Python. A docstring stays in when the function reads ``__doc__``.
* Its decorators, with the names they read, except this package's, the
  builtins' and the standard library's: ``@instructor_cache(ttl=...)``,
  ``@staticmethod`` or ``@lru_cache(maxsize)`` do not change an answer, but
  another decorator may carry the prompt or the model in its arguments
  (``@ell.simple(model="gpt-4o")``). A wrapper written in the user's code is
  fingerprinted too, as a layer (``__wrapped__``); under a library's wrapper
  the docstring counts, as it may be sent as the prompt, and a library object
  without ``__wrapped__`` is searched for the user functions it holds.
* The values of module-level constants it reads by name, or through a user
  module, class or instance's class, an enum, or a method's ``self``
  (``prompts.SYSTEM``, ``Prompts.SYSTEM``, ``Mode.FAST``, ``self.PROMPT``):
  str, bytes, numbers, bools, None, enum members and tuples or frozensets of
  them. Lists and dicts are left out, and so is instance state: a value set
  at run time would give every process its own key.
* Recursively, the fingerprints of the user's own functions it reaches the
  same ways, or holds in its closure or defaults, never those of the standard
  library, site-packages or this package (but those of the function's own
  top-level package, even when installed). A function already being
  fingerprinted adds only its name, so recursion ends. Classes (a pydantic
  model) are skipped: the schema fingerprint covers the return model.

Where the source cannot be had (a builtin, ``exec`` without ``linecache``, a
``.pyc`` without its ``.py``) or does not compile to the running code (the file
was edited after import, an import hook rewrote it), the digest is of the code
object instead (bytecode, constants, names, plus the globals above) with the
interpreter's version mixed in: a miss across versions, never a stale hit. A
callable with no code object is known by its module and qualified name. No
failure escapes: the worst outcome is a coarser fingerprint.
"""

from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import enum
import functools
import inspect
import os
import site
import sys
import sysconfig
import types
from collections.abc import Mapping, MutableMapping
from typing import Any

from instructor_cache._source import (
    Canon,
    chain_of,
    code_digest,
    code_names,
    constant_text,
    digest,
    reads_docs,
    source_nodes,
)

__all__ = ["code_fingerprint", "is_user_code"]

_FORMAT = "instructor_cache/code/1"
_INTERPRETER = sys.implementation.cache_tag or sys.version
_MAX_LAYERS = 64
_MISSING = object()


def code_fingerprint(fn: Any) -> str:
    """A hex digest (blake2b, 32 bytes) of what fn's answer depends on in its code."""
    try:
        return _Walker(fn).callable_digest(fn)
    except Exception:  # noqa: BLE001  (a fingerprint must never break the app)
        return _fallback(fn)


def is_user_code(obj: Any) -> bool:
    """Whether the function behind obj is the user's own code, whose edits must change keys."""
    try:
        function = _function_of(_layers(obj)[-1])
        return function is not None and _is_user_file(
            function.__code__.co_filename, _module_of(function)
        )
    except Exception:  # noqa: BLE001  (an odd object is simply not user code)
        return False


class _Walker:
    """One fingerprint's walk: the functions on its stack and those it has finished."""

    def __init__(self, root: Any) -> None:
        self._stack: set[int] = set()
        self._done: dict[tuple[int, bool], str] = {}
        # The package of the function the user decorated is the user's, even when
        # installed in site-packages; not so a library's object's class.
        layers = _layers(root)
        # The decorated function's own closure cells are read at every call
        # (the call context); a helper's are not, so its constant ones count here.
        self._called_ones = {id(_function_of(layer)) for layer in layers}
        innermost = layers[-1]
        function = _function_of(innermost)
        plain = isinstance(innermost, (types.FunctionType, types.MethodType))
        module = _module_of(function) if function is not None and plain else ""
        self._home = (module or "__main__").partition(".")[0]

    def callable_digest(self, obj: Any) -> str:
        parts, seen = [_FORMAT], set()
        layers = _layers(obj)
        # A library's wrapper may send the docstring as the prompt (ell does).
        keep_docstring = any(self._may_send_docstring(layer) for layer in layers[:-1])
        for depth, layer in enumerate(layers):
            innermost = depth == len(layers) - 1
            if isinstance(layer, functools.partial):
                parts.append("p" + _partial_text(layer))
                continue
            function = _function_of(layer)
            users = function is not None and self._is_user_function(function)
            if innermost and not users:  # a library's object may hold the user's function
                parts += self._held_by(layer)
            if function is None:
                if innermost:
                    parts.append("n" + _name_of(layer))
            elif id(function) not in seen and (innermost or users):
                seen.add(id(function))
                parts.append("f" + self._function_digest(function, innermost and keep_docstring))
        return digest(*parts)

    def _is_user(self, obj: Any) -> bool:
        """Whether the function at the heart of obj is the user's, so its edits count."""
        function = _function_of(_layers(obj)[-1])
        return function is not None and self._is_user_function(function)

    def _is_user_function(self, function: types.FunctionType) -> bool:
        module = _module_of(function)
        return _is_user_file(function.__code__.co_filename, module) or (
            self._home != "__main__" and module.partition(".")[0] == self._home
        )

    def _may_send_docstring(self, layer: Any) -> bool:
        function = _function_of(layer)
        if function is not None and self._is_user_function(function):
            return False
        module = _module_of(function) if function is not None else type(layer).__module__
        return not _is_inert_module(module)

    def _held_by(self, obj: Any) -> list[str]:
        state = getattr(obj, "__dict__", None)
        if not isinstance(state, dict):
            return []
        held = {key: value for key, value in state.items() if isinstance(key, str)}
        found = [self._dependency(held, (key,), constants=False) for key in sorted(held)]
        return ["h" + text for text in found if text is not None]

    def _function_digest(self, function: types.FunctionType, keep_docstring: bool) -> str:
        key = (id(function), keep_docstring)
        if id(function) in self._stack:
            return digest("cycle", function.__qualname__)
        if key in self._done:
            return self._done[key]
        self._stack.add(id(function))
        try:
            text = self._function_text(function, keep_docstring)
        finally:
            self._stack.discard(id(function))
        # Kept even when a cycle cut it short: within one walk (one root, its
        # dependencies in sorted order) every function reached is expanded in
        # full once, so each edit still reaches the root, and the walk stays
        # linear where caching only uncut digests made helpers that call one
        # another cost 1.6x more per helper (22 of them: 14 s).
        self._done[key] = text
        return text

    def _function_text(self, function: types.FunctionType, keep_docstring: bool) -> str:
        code = function.__code__
        names = code_names(code)
        nodes = source_nodes(function)
        scope: MutableMapping[str, Any] = function.__globals__
        owner = _owner(function) if code.co_argcount else None
        self_name = code.co_varnames[0] if owner is not None else None
        if owner is not None:
            # self.PROMPT and self.helper() are read from the class defining the method.
            scope = collections.ChainMap({code.co_varnames[0]: owner}, scope)
        chains: set[tuple[str, ...]] = set()
        if nodes is None:
            own = ["code", _INTERPRETER, code_digest(code)]
        else:
            keep = keep_docstring or any(reads_docs(node) for node in nodes)
            canon, decorators = Canon(keep_docstrings=keep), Canon(keep_docstrings=keep)
            for node in nodes:
                for decorator in getattr(node, "decorator_list", ()):
                    if not _is_inert_decorator(decorator, function.__globals__):
                        decorators.node(decorator)
                canon.root(node)
            own = ["source", "".join(canon.out), "".join(decorators.out)]
            # A decorator runs in the enclosing scope: its names are not in co_names.
            names = (names & canon.loaded) | decorators.loaded
            chains = {
                c for c in canon.chains | decorators.chains if c[0] in names or c[0] == self_name
            }
        dependencies = [
            self._dependency(scope, chain) for chain in sorted({(name,) for name in names} | chains)
        ]
        # User functions it holds rather than names: in closure cells and as defaults.
        held: dict[str, Any] = {}
        for name, cell in zip(code.co_freevars, function.__closure__ or (), strict=False):
            with contextlib.suppress(ValueError):  # an empty cell: not yet bound
                held[f"cell {name}"] = cell.cell_contents
        held.update((f"default {i}", v) for i, v in enumerate(function.__defaults__ or ()))
        held.update((f"default {k}", v) for k, v in (function.__kwdefaults__ or {}).items())
        constants = id(function) not in self._called_ones
        dependencies += [
            self._dependency(held, (name,), constants=constants) for name in sorted(held)
        ]
        return digest(*own, *(d for d in dependencies if d is not None))

    def _dependency(
        self, scope: Mapping[str, Any], chain: tuple[str, ...], *, constants: bool = True
    ) -> str | None:
        """What the value a name or chain reads adds: a constant, a user function, or nothing."""
        name = ".".join(chain)
        try:
            value = scope.get(chain[0], _MISSING)
            for attribute in chain[1:]:
                value = getattr(_namespace_of(value), attribute, _MISSING)
            if value is _MISSING:
                return None
            constant = constant_text(value) if constants else None
            if constant is not None:
                return digest("constant", name, constant)
            if _is_function_like(value) and self._is_user(value):
                return digest("function", name, self.callable_digest(value))
        except RecursionError:
            raise  # depends on the caller's stack depth: the whole walk falls back
        except Exception:  # noqa: BLE001  (a descriptor or proxy that fails to read)
            return digest("unreadable", name)
        return None


def _layers(obj: Any) -> list[Any]:
    """obj and what it wraps (``__wrapped__``, a partial's function), outermost first."""
    layers: list[Any] = []
    seen: set[int] = set()
    while obj is not None and id(obj) not in seen and len(layers) < _MAX_LAYERS:
        seen.add(id(obj))
        layers.append(obj)
        obj = obj.func if isinstance(obj, functools.partial) else getattr(obj, "__wrapped__", None)
    return layers


def _function_of(layer: Any) -> types.FunctionType | None:
    """The Python function whose code runs when layer is called, if there is one."""
    if isinstance(layer, types.FunctionType):
        return layer
    if isinstance(layer, types.MethodType):
        return _function_of(layer.__func__)
    if isinstance(layer, (staticmethod, classmethod, functools.partial, type)):
        return None  # a descriptor or a partial wraps a layer of its own; a class is skipped
    call = inspect.getattr_static(type(layer), "__call__", None)
    return call if isinstance(call, types.FunctionType) else None


def _namespace_of(value: Any) -> Any:
    """What ``value.NAME`` is read from: a user module or class, any enum, an instance's class.

    An instance is read through its class only, so a class constant or a method
    counts but instance state, which may change at run time, does not.
    """
    if isinstance(value, enum.EnumMeta):
        return value
    found: Any = value
    module: Any = value
    if not isinstance(value, types.ModuleType):
        found = value if isinstance(value, type) else type(value)
        module = sys.modules.get(found.__module__)
    if isinstance(module, types.ModuleType) and _is_user_file(
        getattr(module, "__file__", None) or "<>", module.__name__
    ):
        return found
    return None


def _is_inert_decorator(expression: ast.expr, scope: Mapping[str, Any]) -> bool:
    """Whether a decorator is this package's, a builtin or the standard library's.

    Those set caching, binding or memoizing, never the answer, so their
    arguments (``@instructor_cache(ttl=60)``) stay out of the fingerprint.
    Any other decorator may carry a prompt or a model name in its arguments
    (``@ell.simple(model="gpt-4o")``), so it counts, with the names it reads.
    """
    target = expression.func if isinstance(expression, ast.Call) else expression
    chain = chain_of(target) if isinstance(target, ast.Attribute) else None
    if isinstance(target, ast.Name):
        chain = (target.id,)
    if chain is None:
        return False
    try:
        value = scope.get(chain[0], _MISSING)
        if value is _MISSING:
            value = getattr(builtins, chain[0], _MISSING)
        for attribute in chain[1:]:
            value = getattr(value, attribute, _MISSING)
        if value is _MISSING:
            return False
        module = value.__name__ if isinstance(value, types.ModuleType) else value.__module__
    except Exception:  # noqa: BLE001  (an unreadable decorator counts, to be safe)
        return False
    return isinstance(module, str) and _is_inert_module(module)


def _is_inert_module(module: str) -> bool:
    """This package, builtins and the standard library: code that sends no prompts."""
    top = module.partition(".")[0]
    return top == "instructor_cache" or top in sys.stdlib_module_names


def _owner(function: types.FunctionType) -> type | None:
    """The class a method is defined in, found by its qualified name."""
    path = function.__qualname__.split(".")[:-1]
    if not path or "<locals>" in path:
        return None
    value = function.__globals__.get(path[0])
    for part in path[1:]:
        value = inspect.getattr_static(value, part, None)
    return value if isinstance(value, type) else None


def _module_of(function: types.FunctionType) -> str:
    """The module that defined function: ``functools.wraps`` copies ``__module__``, not this."""
    return str(function.__globals__.get("__name__") or "")


def _is_function_like(value: Any) -> bool:
    return callable(value) and not isinstance(value, type)


@functools.lru_cache(maxsize=1024)
def _is_user_file(filename: str, module: str) -> bool:
    if filename.startswith("<"):  # exec, a REPL, a notebook cell, or a frozen stdlib module
        top = module.partition(".")[0]
        return not filename.startswith("<frozen") and top not in sys.stdlib_module_names
    path = os.path.normcase(os.path.realpath(filename))
    if {"site-packages", "dist-packages"} & set(path.split(os.sep)):
        return False
    return not any(path.startswith(root + os.sep) for root in _library_roots())


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    """The standard library, site-packages and this package: code that is not the user's."""
    paths = sysconfig.get_paths()
    roots = [paths.get(name, "") for name in ("stdlib", "platstdlib", "purelib", "platlib")]
    roots += [*site.getsitepackages(), site.getusersitepackages()]
    roots.append(os.path.dirname(os.path.abspath(__file__)))
    return tuple(os.path.normcase(os.path.realpath(root)) for root in roots if root)


def _partial_text(partial: functools.partial[Any]) -> str:
    """A partial's constant arguments: they change its answers like the code does."""
    arguments = [constant_text(a) or "?" for a in partial.args]
    arguments += sorted(f"{k}={constant_text(v) or '?'}" for k, v in partial.keywords.items())
    return digest(*arguments)


def _name_of(obj: Any) -> str:
    try:
        return f"{obj.__module__}.{obj.__qualname__}"
    except Exception:  # noqa: BLE001  (any object may stand here)
        kind = type(obj)
        return f"{kind.__module__}.{kind.__qualname__}()"


def _fallback(fn: Any) -> str:
    """The code object's digest, or failing that the callable's name, after a failed walk."""
    try:
        function = _function_of(_layers(fn)[-1])
        if function is not None:
            return digest(_FORMAT, "code", _INTERPRETER, code_digest(function.__code__))
    except Exception:  # noqa: BLE001, S110  (the name below is the last resort)
        pass
    return digest(_FORMAT, "name", _name_of(fn))
