"""One key builder for every call path: sync, async, ``cache_key`` and ``make_cache_key``.

A key reads ``<namespace>:<module.qualname>:<schema8>:[<version>:]<digest>``.
The readable head lets a user find a function's entries on disk or in Redis
and lets ``cache_clear`` delete them by prefix. The digest is a BLAKE2b-256 over
everything that identifies the entry (namespace, function, full schema
fingerprint, version, parameter names, arguments), so two keys are equal only
when all of those are: the head is a label, never the source of uniqueness.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from instructor_cache._encoding import Unencodable, encode, never_encodable, type_path
from instructor_cache._options import Options
from instructor_cache.errors import ConfigurationError, UnencodableArgumentError

__all__ = ["KeyBuilder", "cached_layers_below", "function_name"]

KeyBuildFunction = Callable[[tuple[Any, ...], Mapping[str, Any]], str]

_KEY_FORMAT = "instructor_cache/key/1"
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def function_name(fn: Callable[..., Any]) -> str:
    """The module and qualified name that identify ``fn`` across processes."""
    return f"{fn.__module__}.{fn.__qualname__}"


class KeyBuilder:
    """Builds the backend key for one decorated function's calls.

    Everything that does not depend on the arguments (the head, the hash state
    fed with the function's identity) is computed here once. A call whose
    positional arguments fill the signature skips ``Signature.bind``, which
    costs several times the rest of the key.
    """

    __slots__ = (
        "_base",
        "_head",
        "_key_function",
        "_keyed",
        "_name",
        "_signature",
        "build",
        "prefix",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        options: Options,
        *,
        schema_fingerprint: str,
        hints: Mapping[str, Any],
    ) -> None:
        namespace, version, ignore, key = (
            options.namespace,
            options.version,
            options.ignore,
            options.key,
        )
        signature = inspect.signature(fn)
        parameters = list(signature.parameters.values())
        names = [p.name for p in parameters]
        unknown = sorted(set(ignore) - set(names))
        if unknown:
            raise ConfigurationError(
                f"ignore names {unknown} that {function_name(fn)}() does not have; "
                f"its parameters are {names}"
            )
        self._signature = signature
        layers = cached_layers_below(fn)
        # An outer layer stacked on a cached function keys its own entries, so
        # that on a shared backend each layer keeps (and clears) its own.
        self._name = function_name(fn) + (f"@{layers + 1}" if layers else "")
        if key is None:
            self._reject_unencodable_annotations(parameters, ignore, hints)
        self._key_function = key
        self._keyed = tuple(n for n in names if n not in ignore)
        self.prefix = f"{namespace}:{self._name}:"
        self._head = f"{self.prefix}{schema_fingerprint[:8]}:" + (
            f"{version}:" if version is not None else ""
        )
        identity: tuple[Any, ...] = (
            _KEY_FORMAT,
            namespace,
            self._name,
            schema_fingerprint,
            version,
            self._keyed,
        )
        context = _bound_context(fn, self._name)
        if context:
            identity += (context,)
        # BLAKE2b-256: as strong as SHA-256 and measurably cheaper per key.
        self._base = hashlib.blake2b(
            _to_bytes(encode(identity) + ("k" if key else "a")), digest_size=32
        )

        simple = key is None and not ignore and all(p.kind in _POSITIONAL for p in parameters)
        self.build = self._fast_builder(parameters) if simple else self._slow_build

    def _reject_unencodable_annotations(
        self,
        parameters: list[inspect.Parameter],
        ignore: tuple[str, ...],
        hints: Mapping[str, Any],
    ) -> None:
        """Fail at decoration for a parameter whose annotation no key could ever encode."""
        for parameter in parameters:
            if parameter.name in ignore or parameter.kind in _VARIADIC:
                continue
            annotation = hints.get(parameter.name)
            if never_encodable(annotation):
                name = parameter.name
                raise UnencodableArgumentError(
                    f"cannot cache {self._name}(): parameter {name!r} is annotated "
                    f"{type_path(annotation)}, which has no stable encoding for a key. "
                    f"Leave it out of the key with ignore=({name!r},), or build the key "
                    "yourself with key=lambda args: ...",
                    parameter=name,
                )

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Return the key for a call with these arguments."""
        return self.build(args, kwargs)

    def _finish(self, text: str) -> str:
        digest = self._base.copy()
        digest.update(text.encode("utf-8", "surrogatepass"))
        return self._head + digest.hexdigest()

    def _slow_build(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        return self._finish(self._encode_arguments(self._bind(args, kwargs)))

    def _fast_builder(self, parameters: list[inspect.Parameter]) -> KeyBuildFunction:
        """A builder for calls that pass positional arguments only, the common case.

        It writes the same text as ``encode(values)`` for the bound values,
        without binding: the given arguments' tokens (a ``str``, the usual
        argument, inlined), then the tokens of the defaults they leave out,
        encoded here once when the defaults are immutable.
        """
        count_all = len(parameters)
        defaults = tuple(p.default for p in parameters if p.default is not inspect.Parameter.empty)
        first_default = count_all - len(defaults)
        if all(type(d) in _IMMUTABLE for d in defaults):
            tails: list[str | None] = [
                "".join(encode(d) for d in defaults[i:]) + "." for i in range(len(defaults) + 1)
            ]
        else:
            tails = [None] * (len(defaults) + 1)
        base, head, slow = self._base, self._head, self._slow_build
        # The tail after a single positional argument, when one may stand alone.
        single_tail = tails[1 - first_default] if first_default <= 1 <= count_all else None

        def build(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
            # extract(text): one str argument, the commonest call, in the fewest steps.
            if len(args) == 1 and not kwargs and type(args[0]) is str and single_tail is not None:
                first = args[0]
                digest = base.copy()
                digest.update(
                    f"ts{len(first)}:{first}{single_tail}".encode("utf-8", "surrogatepass")
                )
                return head + digest.hexdigest()
            return build_positional(args, kwargs)

        def build_positional(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
            count = len(args)
            if kwargs or not first_default <= count <= count_all:
                return slow(args, kwargs)
            try:
                if count == 1 and type(args[0]) is str:
                    first = args[0]
                    text = f"s{len(first)}:{first}"
                else:
                    text = "".join(
                        [f"s{len(a)}:{a}" if type(a) is str else encode(a) for a in args]
                    )
                tail = tails[count - first_default]
                if tail is None:
                    tail = "".join([encode(d) for d in defaults[count - first_default :]]) + "."
            except (Unencodable, RecursionError):
                return slow(args, kwargs)  # to raise the error that names the parameter
            digest = base.copy()
            digest.update(f"t{text}{tail}".encode("utf-8", "surrogatepass"))
            return head + digest.hexdigest()

        return build

    def _bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    def _encode_arguments(self, arguments: dict[str, Any]) -> str:
        if self._key_function is not None:
            chosen = {name: arguments[name] for name in self._keyed}
            try:
                result = self._key_function(chosen)
            except (TypeError, KeyError, AttributeError, IndexError) as exc:
                raise UnencodableArgumentError(
                    f"the key function of {self._name}() raised {type(exc).__name__}: {exc}. "
                    f"key= receives one dict of the arguments by parameter name, defaults "
                    f"applied (here with keys {list(chosen)}), e.g. key=lambda args: "
                    'args["text"]'
                ) from exc
            try:
                return encode(result)
            except (Unencodable, RecursionError) as exc:
                raise UnencodableArgumentError(
                    f"the key function of {self._name}() returned {_describe(result, exc)}, "
                    "which has no stable encoding; return str, numbers, tuples, lists, dicts "
                    "or pydantic models"
                ) from None
        for name in self._keyed:  # only reached to name the culprit, so the loop's cost is moot
            try:
                encode(arguments[name])
            except (Unencodable, RecursionError) as exc:  # noqa: PERF203
                raise UnencodableArgumentError(
                    f"cannot build a cache key for {self._name}(): argument {name!r} is "
                    f"{_describe(arguments[name], exc)}, which has no stable encoding. "
                    f"Leave it out of the key with ignore=({name!r},), or build the key "
                    "yourself with key=lambda args: ...",
                    parameter=name,
                ) from None
        return encode(tuple(arguments[name] for name in self._keyed))


def cached_layers_below(fn: Callable[..., Any]) -> int:
    """How many cached layers ``fn`` already is (0 for a plain function)."""
    layers, seen = 0, set()
    layer: Any = fn
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        layers += callable(getattr(layer, "cache_info", None))
        layer = getattr(layer, "__wrapped__", None)
    return layers


def _bound_context(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    """Values a function carries besides its arguments, which its results may depend on.

    Two closures made by one factory (``make_extractor("French")`` and
    ``make_extractor("German")``) share a module and a qualified name, and so
    would share keys on a shared backend: their free variables that have a
    stable encoding (a prompt, a model name) join the key; those that do not
    (a client, a counter's list) cannot and are left out. A bound method's
    instance is part of its identity the same way, and must be encodable.
    """
    context: dict[str, Any] = {}
    if inspect.ismethod(fn):
        try:
            encode(fn.__self__)
        except (Unencodable, RecursionError):
            raise UnencodableArgumentError(
                f"cannot cache the bound method {name}(): its instance, a "
                f"{type_path(type(fn.__self__))}, has no stable encoding for a key. Decorate "
                "the method in the class body instead, where self is an argument (with "
                "ignore=('self',) if all instances may share results).",
                parameter="self",
            ) from None
        context["__self__"] = fn.__self__
        fn = fn.__func__
    # Free variables of the function and of every wrapper around it (a
    # functools.wraps decorator closes over the function, not the prompt).
    layer: Any = fn
    depth, seen = 0, set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        code, cells = getattr(layer, "__code__", None), getattr(layer, "__closure__", None) or ()
        for variable, cell in zip(code.co_freevars if code else (), cells, strict=False):
            try:
                value = cell.cell_contents
                encode(value)
            except (ValueError, Unencodable, RecursionError):  # empty cell, or no stable encoding
                continue
            context[f"{variable}@{depth}" if depth else variable] = value
        layer, depth = getattr(layer, "__wrapped__", None), depth + 1
    return context


def _describe(value: Any, exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "a structure that contains itself"
    inner = exc.value if isinstance(exc, Unencodable) else value
    where = "" if inner is value else f" holding a {type_path(type(inner))}"
    return f"a {type_path(type(value))}{where}"


def _to_bytes(text: str) -> bytes:
    # surrogatepass keeps lone surrogates (legal in a Python str) distinct
    # instead of failing or collapsing them.
    return text.encode("utf-8", "surrogatepass")
