"""A function's source: found, checked against the code that runs, and written canonically.

The canonical text of a syntax tree names node kinds, fields in sorted order
and literal values with type tags, never positions, comments or docstrings,
so formatting changes nothing and the same source gives the same text on
every supported Python, which bytecode and ``ast.dump`` do not. It evens out
what the parsers disagree on: fields newer Pythons add empty
(``type_params``), ``Constant.kind`` (``u"..."``) and how an f-string is split
into parts: 3.12 adds an empty ``Constant`` to a nested format spec
(``f"{x!r:>{w}}"``), so adjacent string parts are merged, empty ones dropped,
an empty spec counts as none and a part-less f-string as its plain string.

The source is trusted only when it compiles to the code that runs: a file
edited after import, or rewritten by an import hook, is not the function's.
This module imports only the standard library, so that tests can load it under
every Python, with or without the package's dependencies.
"""

from __future__ import annotations
import __future__

import ast
import dataclasses
import enum
import functools
import inspect
import linecache
import operator
import pathlib
import re
import string
import threading
import types
from collections.abc import Callable
from typing import Any

from instructor_cache._blake import blake2b

__all__ = [
    "Canon",
    "chain_of",
    "code_digest",
    "code_names",
    "constant_text",
    "digest",
    "reads_docs",
    "source_nodes",
]

_UNCANONICAL = frozenset(
    {"lineno", "col_offset", "end_lineno", "end_col_offset", "type_comment", "kind"}
)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_MAX_NESTING = 32
_LINECACHE_LOCK = threading.Lock()
_FUTURE_FLAGS = functools.reduce(
    operator.or_, (getattr(__future__, name).compiler_flag for name in __future__.all_feature_names)
)


class Canon:
    """The canonical text of syntax trees, and the global names and chains they load."""

    def __init__(self, *, keep_docstrings: bool) -> None:
        self.out: list[str] = []
        self.loaded: set[str] = set()
        self.chains: set[tuple[str, ...]] = set()
        self._keep_docstrings = keep_docstrings

    def root(self, node: ast.AST) -> None:
        """Add a fingerprinted function but not its decorators, which run in another scope.

        Nor its own name: ``name=`` lets a renamed function keep its entries,
        and a name changes nothing the function computes (a recursive call
        by name is in its body, and counts there).
        """
        self.node(node, skip=("decorator_list", "name"))

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
            chain = chain_of(node)
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


def reads_docs(node: ast.AST) -> bool:
    """Whether code reads a docstring (some prompt helpers use ``__doc__``)."""
    for child in ast.walk(node):
        name = child.attr if isinstance(child, ast.Attribute) else getattr(child, "id", None)
        if name in {"__doc__", "getdoc"}:
            return True
    return False


def chain_of(node: ast.Attribute) -> tuple[str, ...] | None:
    """``a.b.c`` as ``("a", "b", "c")``, or None when the base is not a name."""
    attributes: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        attributes.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    return (current.id, *reversed(attributes))


def source_nodes(function: types.FunctionType) -> list[ast.AST] | None:
    """The syntax nodes of function, or None when its source is missing or not what runs."""
    code = function.__code__
    # linecache is not thread-safe: one thread's checkcache() can drop the
    # entry another is reading, which then finds no source and fingerprints
    # the function differently (first concurrent calls got other keys).
    with _LINECACHE_LOCK:
        linecache.checkcache(code.co_filename)
        lines = linecache.getlines(code.co_filename, function.__globals__)
    # Compiled with the function's future flags: a notebook carries a cell's
    # ``from __future__ import annotations`` over to the cells after it.
    flags = code.co_flags & _FUTURE_FLAGS
    parsed = _parse(code.co_filename, "".join(lines), flags) if lines else None
    if parsed is None:
        return None
    definitions, compiled = parsed
    where = (code.co_name, code.co_firstlineno)
    if code_digest(code) not in compiled.get(where, ()):
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
def _parse(filename: str, text: str, flags: int) -> Parsed | None:
    """A module's definitions and compiled code objects, by name and first line.

    Cached on the text itself rather than the file's mtime, which can miss an
    edit made within its resolution, so a module with many cached functions is
    parsed and compiled once.
    """
    try:
        tree = ast.parse(text, filename)
        module = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
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
                compiled.setdefault(where, set()).add(code_digest(const))
                pending.append(const)
    return definitions, compiled


def code_digest(code: types.CodeType) -> str:
    """What a code object runs: stable within one interpreter version only."""
    consts = [
        code_digest(c)
        if isinstance(c, types.CodeType)
        else constant_text(c) or f"?{c!r}"  # a slice (3.14 folds them): repr shows it all
        for c in code.co_consts
    ]
    counts = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
    return digest(
        code.co_code.hex(),
        getattr(code, "co_exceptiontable", b"").hex(),
        ",".join(map(str, counts)),
        *(f"c{c}" for c in consts),
        *(f"n{n}" for n in code.co_names),
        *(f"v{n}" for n in code.co_varnames),
        *(f"f{n}" for n in code.co_freevars),
        *(f"l{n}" for n in code.co_cellvars),
    )


def code_names(code: types.CodeType) -> set[str]:
    """The global and attribute names code and its nested code objects use."""
    names, pending = set(code.co_names), [code]
    while pending:
        for const in pending.pop().co_consts:
            if isinstance(const, types.CodeType):
                names.update(const.co_names)
                pending.append(const)
    return names


def constant_text(value: Any, depth: int = 0) -> str | None:
    """The tagged text of a constant's value, or None for a value that is not one."""
    if depth > _MAX_NESTING:
        return None
    if isinstance(value, enum.Enum):
        inner = constant_text(value.value, depth + 1) or "?"
        kind = type(value).__qualname__  # not its module, which is __main__ when run as a script
        # A flag by its value alone: a combination's name is None on 3.10.
        name = "" if isinstance(value, enum.Flag) else str(value.name)
        return f"m{len(kind)}:{kind}{len(name)}:{name}{inner}"
    if isinstance(value, (tuple, frozenset)):
        items: list[str] = []
        for item in value:
            text = constant_text(item, depth + 1)
            if text is None:
                return None
            items.append(text)
        if isinstance(value, frozenset):
            items.sort()
        tag = "t" if isinstance(value, tuple) else "z"
        kind = "" if type(value) in (tuple, frozenset) else type(value).__qualname__
        return f"{tag}{len(kind)}:{kind}{''.join(items)}."
    if type(value) in _LITERALS:
        return _literal(value)
    return _object_constant(value, depth)


def _object_constant(value: Any, depth: int) -> str | None:
    """Immutable objects a module keeps as constants: a compiled pattern, a template, a path,
    a frozen dataclass of constants. Their text (and their class's name) is their value."""
    kind = type(value).__qualname__
    if isinstance(value, re.Pattern):
        text = f"{value.pattern!r}/{value.flags}"
    elif isinstance(value, string.Template):
        text = repr(value.template)
    elif isinstance(value, pathlib.PurePath):
        text = repr(str(value))
    elif (
        dataclasses.is_dataclass(value)
        and not isinstance(value, type)
        and value.__dataclass_params__.frozen  # type: ignore[attr-defined]
    ):
        fields = []
        for field in dataclasses.fields(value):
            field_text = constant_text(getattr(value, field.name, None), depth + 1)
            if field_text is None:
                return None
            fields.append(f"{field.name}={field_text}")
        text = ",".join(fields)
    else:
        return None
    return f"o{len(kind)}:{kind}{len(text)}:{text}"


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


def digest(*parts: str) -> str:
    text = "".join(f"{len(part)}:{part}" for part in parts)
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=32).hexdigest()
