"""Code fingerprints: a key changes when the code behind an answer changes.

Editing the prompt inside a cached function, or a module-level constant it
reads, must not serve the old prompt's answers. ``code_fingerprint`` digests
what a function's answer depends on in its code:

* Its syntax tree, walked canonically: node kinds, fields in sorted order and
  literal values with type tags, never positions, comments or docstrings. So
  formatting (ruff format, black) changes nothing, and the same source gives
  the same digest on every supported Python, which bytecode and ``ast.dump``
  do not. The walk evens out what the parsers disagree on: fields newer
  Pythons add empty (``type_params``), ``Constant.kind`` (``u"..."``) and how
  an f-string is split into parts: 3.12 adds an empty ``Constant`` to a nested
  format spec (``f"{x!r:>{w}}"``), so adjacent string parts are merged, empty
  ones dropped, an empty spec counts as none and a part-less f-string as its
  plain string. A docstring stays in when the function reads ``__doc__``.
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
import hashlib
import inspect
import linecache
import os
import site
import sys
import sysconfig
import types
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["code_fingerprint", "is_user_code"]

_FORMAT = "instructor_cache/code/1"
_INTERPRETER = sys.implementation.cache_tag or sys.version
_UNCANONICAL = frozenset(
    {"lineno", "col_offset", "end_lineno", "end_col_offset", "type_comment", "kind"}
)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_MAX_LAYERS = 64
_MAX_NESTING = 32
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
        self._cycles = 0
        # The package of the function the user decorated is the user's, even when
        # installed in site-packages; not so a library's object's class.
        innermost = _layers(root)[-1]
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
        return _digest(*parts)

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
            self._cycles += 1
            return _digest("cycle", function.__qualname__)
        if key in self._done:
            return self._done[key]
        cycles = self._cycles
        self._stack.add(id(function))
        try:
            digest = self._function_text(function, keep_docstring)
        finally:
            self._stack.discard(id(function))
        if self._cycles == cycles:  # a digest cut short by a cycle depends on the stack
            self._done[key] = digest
        return digest

    def _function_text(self, function: types.FunctionType, keep_docstring: bool) -> str:
        code = function.__code__
        names = _code_names(code)
        nodes = _source_nodes(function)
        scope: MutableMapping[str, Any] = function.__globals__
        owner = _owner(function) if code.co_argcount else None
        self_name = code.co_varnames[0] if owner is not None else None
        if owner is not None:
            # self.PROMPT and self.helper() are read from the class defining the method.
            scope = collections.ChainMap({code.co_varnames[0]: owner}, scope)
        chains: set[tuple[str, ...]] = set()
        if nodes is None:
            own = ["code", _INTERPRETER, _code_digest(code)]
        else:
            keep = keep_docstring or any(_reads_docs(node) for node in nodes)
            canon, decorators = _Canon(keep_docstrings=keep), _Canon(keep_docstrings=keep)
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
        dependencies += [self._dependency(held, (name,), constants=False) for name in sorted(held)]
        return _digest(*own, *(d for d in dependencies if d is not None))

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
            constant = _constant(value) if constants else None
            if constant is not None:
                return _digest("constant", name, constant)
            if _is_function_like(value) and self._is_user(value):
                return _digest("function", name, self.callable_digest(value))
        except RecursionError:
            raise  # depends on the caller's stack depth: the whole walk falls back
        except Exception:  # noqa: BLE001  (a descriptor or proxy that fails to read)
            return _digest("unreadable", name)
        return None


class _Canon:
    """The canonical text of syntax trees, and the global names and chains they load."""

    def __init__(self, *, keep_docstrings: bool) -> None:
        self.out: list[str] = []
        self.loaded: set[str] = set()
        self.chains: set[tuple[str, ...]] = set()
        self._keep_docstrings = keep_docstrings

    def root(self, node: ast.AST) -> None:
        """Add a fingerprinted function but not its decorators, which run in another scope."""
        self.node(node, skip=("decorator_list",))

    def node(self, node: ast.AST, skip: tuple[str, ...] = ()) -> None:
        # An explicit stack, as a long ``"..." + "..." + ...`` prompt nests
        # deeper than Python's recursion limit allows.
        pending: list[tuple[bool, Any]] = [(False, node)]  # (is text to emit, item)
        while pending:
            is_text, item = pending.pop()
            if is_text:
                self.out.append(item)
            elif isinstance(item, ast.AST):
                pending += self._open(item, skip if item is node else ())
            elif isinstance(item, list):
                self.out.append("[")
                pending.append((True, "]"))
                pending += [(False, value) for value in reversed(item)]
            else:
                self.out.append(_literal(item))

    def _open(self, node: ast.AST, skip: tuple[str, ...]) -> list[tuple[bool, Any]]:
        """Emit node's head; return its fields, last first, for the stack."""
        if isinstance(node, ast.JoinedStr):
            node = _joined(node)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            self.loaded.add(node.id)
        elif isinstance(node, ast.Attribute):
            chain = _chain(node)
            if chain is not None:
                self.chains.add(chain)
        self.out.append("(" + type(node).__name__)
        fields: list[tuple[bool, Any]] = [(True, ")")]
        for field in sorted(node._fields, reverse=True):
            if field in _UNCANONICAL or field in skip:
                continue
            value: Any = getattr(node, field, None)
            if field == "body" and isinstance(node, _DEFINITIONS) and not self._keep_docstrings:
                value = _without_docstring(value)
            if field == "format_spec" and isinstance(value, ast.JoinedStr):
                value = _joined(value)
                if isinstance(value, ast.Constant) and value.value == "":
                    value = None  # f"{x:}" formats like f"{x}"
            if value is None or (isinstance(value, list) and not value):
                continue  # a field an older Python lacks reads as empty
            fields += [(False, value), (True, f" {field}=")]
        return fields


def _joined(node: ast.JoinedStr) -> ast.expr:
    """An f-string with adjacent string parts merged and empty ones dropped."""
    values: list[ast.expr] = []
    for part in node.values:
        if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
            values.append(part)
            continue
        text = part.value
        if values and isinstance(values[-1], ast.Constant):
            text = values.pop().value + text  # type: ignore[attr-defined]
        if text:
            values.append(ast.Constant(text))
    if not values:
        return ast.Constant("")
    if len(values) == 1 and isinstance(values[0], ast.Constant):
        return values[0]  # no placeholders: the f-string is its plain string
    return ast.JoinedStr(values)


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return body[1:]
    return body


def _reads_docs(node: ast.AST) -> bool:
    """Whether code reads a docstring (some prompt helpers use ``__doc__``)."""
    for child in ast.walk(node):
        name = child.attr if isinstance(child, ast.Attribute) else getattr(child, "id", None)
        if name in {"__doc__", "getdoc"}:
            return True
    return False


def _chain(node: ast.Attribute) -> tuple[str, ...] | None:
    """``a.b.c`` as ``("a", "b", "c")``, or None when the base is not a name."""
    attributes: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        attributes.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    return (current.id, *reversed(attributes))


def _source_nodes(function: types.FunctionType) -> list[ast.AST] | None:
    """The syntax nodes of function, or None when its source is missing or not what runs."""
    code = function.__code__
    linecache.checkcache(code.co_filename)
    lines = linecache.getlines(code.co_filename, function.__globals__)
    parsed = _parse(code.co_filename, "".join(lines)) if lines else None
    if parsed is None:
        return None
    definitions, compiled = parsed
    where = (code.co_name, code.co_firstlineno)
    if _code_digest(code) not in compiled.get(where, ()):
        return None
    nodes = definitions.get(where, [])
    if code.co_name == "<lambda>":
        # Lambdas sharing a line are told apart by their parameters; any left
        # ambiguous are fingerprinted together, which can only split keys.
        count = code.co_argcount + code.co_kwonlyargcount
        count += bool(code.co_flags & inspect.CO_VARARGS)
        count += bool(code.co_flags & inspect.CO_VARKEYWORDS)
        parameters = code.co_varnames[:count]
        nodes = [node for node in nodes if _parameters(node) == parameters]
    return nodes or None


def _parameters(node: ast.AST) -> tuple[str, ...]:
    if not isinstance(node, ast.Lambda):
        return ()
    arguments = node.args
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return tuple(names)


Parsed = tuple[dict[tuple[str, int], list[ast.AST]], dict[tuple[str, int], set[str]]]


@functools.lru_cache(maxsize=32)
def _parse(filename: str, text: str) -> Parsed | None:
    """A module's definitions and compiled code objects, by name and first line.

    Cached on the text itself rather than the file's mtime, which can miss an
    edit made within its resolution, so a module with many cached functions is
    parsed and compiled once.
    """
    try:
        tree = ast.parse(text, filename)
        module = compile(tree, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, TypeError):
        return None
    definitions: dict[tuple[str, int], list[ast.AST]] = {}
    for node in ast.walk(tree):
        if isinstance(node, _FUNCTIONS):
            lines = [node.lineno, *(d.lineno for d in node.decorator_list)]
            definitions.setdefault((node.name, min(lines)), []).append(node)
        elif isinstance(node, ast.Lambda):
            definitions.setdefault(("<lambda>", node.lineno), []).append(node)
    compiled: dict[tuple[str, int], set[str]] = {}
    pending = [module]
    while pending:
        for const in pending.pop().co_consts:
            if isinstance(const, types.CodeType):
                where = (const.co_name, const.co_firstlineno)
                compiled.setdefault(where, set()).add(_code_digest(const))
                pending.append(const)
    return definitions, compiled


def _code_digest(code: types.CodeType) -> str:
    """What a code object runs: stable within one interpreter version only."""
    consts = [
        _code_digest(c) if isinstance(c, types.CodeType) else _constant(c) or _name_of(type(c))
        for c in code.co_consts
    ]
    counts = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
    return _digest(
        code.co_code.hex(),
        getattr(code, "co_exceptiontable", b"").hex(),
        ",".join(map(str, counts)),
        *(f"c{c}" for c in consts),
        *(f"n{n}" for n in code.co_names),
        *(f"v{n}" for n in code.co_varnames),
        *(f"f{n}" for n in code.co_freevars),
        *(f"l{n}" for n in code.co_cellvars),
    )


def _code_names(code: types.CodeType) -> set[str]:
    """The global and attribute names code and its nested code objects use."""
    names, pending = set(code.co_names), [code]
    while pending:
        for const in pending.pop().co_consts:
            if isinstance(const, types.CodeType):
                names.update(const.co_names)
                pending.append(const)
    return names


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
    chain = _chain(target) if isinstance(target, ast.Attribute) else None
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


def _constant(value: Any, depth: int = 0) -> str | None:
    """The tagged text of a constant's value, or None for a value that is not one."""
    if depth > _MAX_NESTING:
        return None
    if isinstance(value, enum.Enum):
        inner = _constant(value.value, depth + 1) or "?"
        kind = type(value).__qualname__  # not its module, which is __main__ when run as a script
        name = str(value.name)  # None for a combination of flags on 3.10
        return f"m{len(kind)}:{kind}{len(name)}:{name}{inner}"
    if isinstance(value, (tuple, frozenset)):
        items: list[str] = []
        for item in value:
            text = _constant(item, depth + 1)
            if text is None:
                return None
            items.append(text)
        if isinstance(value, frozenset):
            items.sort()
        tag = "t" if isinstance(value, tuple) else "z"
        kind = "" if type(value) in (tuple, frozenset) else type(value).__qualname__
        return f"{tag}{len(kind)}:{kind}{''.join(items)}."
    return _literal(value) if type(value) in _LITERALS else None


def _literal(value: Any) -> str:
    return _LITERALS[type(value)](value)


# Exact types only: a subclass could carry state or a meaning its value does not show.
_LITERALS: dict[type, Callable[[Any], str]] = {
    type(None): lambda _: "N",
    type(...): lambda _: "E",
    bool: lambda value: "T" if value else "F",
    int: lambda value: f"i{value:x};",  # hex: decimal text is length-limited for huge ints
    float: lambda value: f"f{value.hex()};",
    complex: lambda value: f"c{value.real.hex()},{value.imag.hex()};",
    str: lambda value: f"s{len(value)}:{value}",
    bytes: lambda value: f"b{len(value)}:{value.hex()}",
}


def _partial_text(partial: functools.partial[Any]) -> str:
    """A partial's constant arguments: they change its answers like the code does."""
    arguments = [_constant(a) or "?" for a in partial.args]
    arguments += sorted(f"{k}={_constant(v) or '?'}" for k, v in partial.keywords.items())
    return _digest(*arguments)


def _name_of(obj: Any) -> str:
    try:
        return f"{obj.__module__}.{obj.__qualname__}"
    except Exception:  # noqa: BLE001  (any object may stand here)
        kind = type(obj)
        return f"{kind.__module__}.{kind.__qualname__}()"


def _digest(*parts: str) -> str:
    text = "".join(f"{len(part)}:{part}" for part in parts)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=32).hexdigest()


def _fallback(fn: Any) -> str:
    """The code object's digest, or failing that the callable's name, after a failed walk."""
    try:
        function = _function_of(_layers(fn)[-1])
        if function is not None:
            return _digest(_FORMAT, "code", _INTERPRETER, _code_digest(function.__code__))
    except Exception:  # noqa: BLE001, S110  (the name below is the last resort)
        pass
    return _digest(_FORMAT, "name", _name_of(fn))
