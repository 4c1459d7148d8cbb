"""One key builder for every call path: sync, async, ``cache_key`` and ``make_cache_key``.

A key reads ``<namespace>:<name>[~<context8>]:<schema8>:[<version>:]<digest>``.
The readable head lets a user find a function's entries on disk or in Redis
and lets ``cache_clear`` delete them by prefix (a closure's, or a bound
method's, by the hash of what it carries, so one closure clears its own). The
digest is a BLAKE2b-256 over everything that identifies the entry (namespace,
function identity, code fingerprint, full schema fingerprint, version,
parameter names, context, arguments), so two keys are equal only when all of
those are: the head is a label, never the source of uniqueness.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

from instructor_cache._annotations import never_encodable
from instructor_cache._blake import blake2b
from instructor_cache._encoding import Unencodable, encode
from instructor_cache._fingerprint import code_fingerprint
from instructor_cache._identity import (
    CallContext,
    cached_layers_below,
    free_variables,
    function_name,
)
from instructor_cache._names import type_path
from instructor_cache._options import Options
from instructor_cache.errors import ConfigurationError, UnencodableArgumentError

__all__ = ["IGNORED_ATTRIBUTE", "KeyBuilder"]

IGNORED_ATTRIBUTE = "__instructor_cache_ignore__"
"""Set on each decorated function: the names its key leaves out, for layers stacked over it."""

KeyBuildFunction = Callable[[tuple[Any, ...], Mapping[str, Any]], str]

_KEY_FORMAT = "instructor_cache/key/2"
_FIRST_KEY_LOCK = threading.RLock()  # an RLock: fingerprinting may decorate (and key) again
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class KeyBuilder:
    """Builds the backend key for one decorated function's calls.

    Everything that does not depend on the arguments is computed once: the
    head, and the hash state fed with the function's identity, which waits
    for the first key because the code fingerprint reads module constants
    that may be defined after the function. A call whose positional
    arguments fill the signature skips ``Signature.bind``, which costs
    several times the rest of the key.
    """

    __slots__ = (
        "_base",
        "_context",
        "_defaults_known",
        "_fingerprinted",
        "_head",
        "_identity",
        "_key_function",
        "_keyed",
        "_name",
        "_root",
        "_signature",
        "_tail",
        "build",
        "ignored",
        "name",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        options: Options,
        *,
        schema_fingerprint: str,
        hints: Mapping[str, Any],
    ) -> None:
        namespace, version, key = options.namespace, options.version, options.key
        # Over a cached layer, what it leaves out of its key (a client, a call
        # counter) is left out here too: it said the answer does not depend on it.
        below: tuple[str, ...] = tuple(getattr(fn, IGNORED_ATTRIBUTE, ()))
        ignore = (*options.ignore, *(name for name in below if name not in options.ignore))
        self.ignored = ignore
        signature, self._defaults_known = _call_signature(fn)
        parameters = list(signature.parameters.values())
        names = [p.name for p in parameters]
        self.name = options.name or function_name(fn)
        unknown = sorted(set(ignore) - set(names) - free_variables(fn))
        if unknown:
            raise ConfigurationError(
                f"ignore names {unknown} that {self.name}() does not have; its parameters "
                f"are {names} and the variables it captures {sorted(free_variables(fn))}"
            )
        ignored_parameters = [name for name in ignore if name in names]
        self._signature = signature
        layers = cached_layers_below(fn)
        # An outer layer stacked on a cached function keys its own entries, so
        # that on a shared backend each layer keeps (and clears) its own.
        self._name = self.name + (f"@{layers + 1}" if layers else "")
        if key is None:
            self._reject_unencodable_annotations(parameters, ignore, hints)
        self._key_function = key
        self._keyed = tuple(n for n in names if n not in ignore)
        context = CallContext(fn, self._name, ignore)
        self._context = context if context else None
        self._root = f"{namespace}:{self._name}"
        self._tail = f"{schema_fingerprint[:8]}:" + (f"{version}:" if version is not None else "")
        self._head = f"{self._root}:{self._tail}"
        self._identity: tuple[Any, ...] = (
            _KEY_FORMAT,
            namespace,
            self._name,
            schema_fingerprint,
            version,
            self._keyed,
            "k" if key else "a",
            self._context is not None,
        )
        self._fingerprinted = fn if options.code_fingerprint else None
        self._base: blake2b | None = None

        simple = (
            key is None
            and self._defaults_known
            and not ignored_parameters
            and self._context is None
            and all(p.kind in _POSITIONAL for p in parameters)
        )
        self.build = self._fast_builder(parameters) if simple else self._slow_build

    @property
    def prefix(self) -> str:
        """What every key of this function (of this closure, as it is now) starts with."""
        if self._context is None:
            return f"{self._root}:"
        return f"{self._root}~{_short_hash(self._context.read())}:"

    def context_moved(self, key: str) -> bool:
        """Whether what the function captures differs now from when ``key`` was made.

        Asked after the call, which has been paid for: a capture the call
        made unencodable (a lazily created client) is a change like any
        other, never an error that would lose the result.
        """
        if self._context is None:
            return False
        try:
            return not key.startswith(self.prefix)
        except (Unencodable, UnencodableArgumentError):
            return True

    def _hash_state(self) -> blake2b:
        """The BLAKE2b state fed with the function's identity (and code), made on first use."""
        base = self._base
        if base is None:
            # Once, before any call runs the function: threads making the first
            # keys at once must not each fingerprint code another has started
            # running (what it reads may have moved), nor get different keys.
            with _FIRST_KEY_LOCK:
                base = self._base
                if base is None:
                    identity = self._identity
                    if self._fingerprinted is not None:
                        identity += (code_fingerprint(self._fingerprinted),)
                    # BLAKE2b-256: as strong as SHA-256 and measurably cheaper per key.
                    base = self._base = blake2b(_to_bytes(encode(identity)), digest_size=32)
        return base

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

    def _slow_build(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        text = self._encode_arguments(self._bind(args, kwargs))
        head = self._head
        if self._context is not None:
            context = self._context.read()
            head = f"{self._root}~{_short_hash(context)}:{self._tail}"
            text = context + text
        digest = self._hash_state().copy()
        digest.update(_to_bytes(text))
        return head + digest.hexdigest()

    def _fast_builder(self, parameters: list[inspect.Parameter]) -> KeyBuildFunction:
        """A builder for calls that pass positional arguments only, the common case.

        It writes the same text as ``encode(values)`` for the bound values,
        without binding, when every value is a scalar (a ``str``, the usual
        argument, inlined): the given arguments' tokens, then those of the
        defaults they leave out, encoded here once. Anything else takes the
        slow path, which encodes all the values in one pass.
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
        head, slow, hash_state = self._head, self._slow_build, self._hash_state
        base: blake2b | None = None

        def start() -> blake2b:
            nonlocal base
            base = hash_state()
            return base

        # The tail after a single positional argument, when one may stand alone.
        single_tail = tails[1 - first_default] if first_default <= 1 <= count_all else None

        def build(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
            # extract(text): one str argument, the commonest call, in the fewest steps.
            if len(args) == 1 and not kwargs and type(args[0]) is str and single_tail is not None:
                first = args[0]
                digest = (base or start()).copy()
                digest.update(
                    f"ts{len(first)}:{first}{single_tail}".encode("utf-8", "surrogatepass")
                )
                return head + digest.hexdigest()
            return build_positional(args, kwargs)

        def build_positional(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
            count = len(args)
            if kwargs or not first_default <= count <= count_all:
                return slow(args, kwargs)
            tail = tails[count - first_default]
            # Only values without parts are encoded one by one here: a container's
            # token may refer back to one met before it (encode(x) of [x, x]),
            # which only one pass over all the arguments numbers the same way.
            if tail is None or not all(type(a) in _IMMUTABLE for a in args):
                return slow(args, kwargs)
            text = "".join([f"s{len(a)}:{a}" if type(a) is str else encode(a) for a in args])
            digest = (base or start()).copy()
            digest.update(f"t{text}{tail}".encode("utf-8", "surrogatepass"))
            return head + digest.hexdigest()

        return build

    def arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        """What this call's key encodes, by parameter name, for a reader: never an ignored one.

        With ``key=``, what the key function returned, under ``"key="``.
        ``None`` where the arguments are not known by name (a pass-through
        wrapper's call that did not bind): which of them is ignored is then
        unknown, and none may be shown.
        """
        arguments = self._bind(args, kwargs)
        if arguments.keys() == {"*", "**"}:
            return None
        chosen = {name: arguments[name] for name in self._keyed if name in arguments}
        if self._key_function is not None:
            return {"key=": self._key_function(chosen)}
        return chosen

    def _bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if self._defaults_known:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return bound.arguments
        # Under a pass-through wrapper (*args, **kwargs), which may add, drop
        # or default arguments before the function sees them: the arguments
        # as given, by name where they bind, as they came where they do not.
        try:
            return dict(self._signature.bind(*args, **kwargs).arguments)
        except TypeError:
            return {"*": args, "**": dict(kwargs)}

    def _encode_arguments(self, arguments: dict[str, Any]) -> str:
        if self._key_function is not None:
            chosen = {name: arguments[name] for name in self._keyed if name in arguments}
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
            except Unencodable as exc:
                raise UnencodableArgumentError(
                    f"the key function of {self._name}() returned {_describe(result, exc)}, "
                    "which has no stable encoding; return str, numbers, tuples, lists, dicts "
                    "or pydantic models"
                ) from None
        unbound = arguments.keys() == {"*", "**"}  # a call that did not bind: as given
        given = ["*", "**"] if unbound else [n for n in self._keyed if n in arguments]
        values = {name: arguments[name] for name in given} if not self._defaults_known else None
        try:
            if values is not None:
                return encode(values)
            return encode(tuple(arguments[name] for name in self._keyed))
        except Unencodable:
            pass
        for name in given:  # only reached to name the culprit
            try:
                encode(arguments[name])
            except Unencodable as exc:  # noqa: PERF203
                raise UnencodableArgumentError(
                    f"cannot build a cache key for {self._name}(): argument {name!r} is "
                    f"{_describe(arguments[name], exc)}, which has no stable encoding. "
                    f"Leave it out of the key with ignore=({name!r},), or build the key "
                    "yourself with key=lambda args: ...",
                    parameter=name,
                ) from None
        raise AssertionError("unreachable: some argument did not encode")  # pragma: no cover


def _call_signature(fn: Callable[..., Any]) -> tuple[inspect.Signature, bool]:
    """The signature calls are bound against, and whether its defaults are the function's.

    ``inspect.signature`` follows ``__wrapped__`` to the innermost function,
    but a ``functools.wraps`` decorator may take other parameters or other
    defaults than the function it wraps: its own signature is the one the
    caller meets, and binds. Only a pass-through wrapper (``*args, **kwargs``)
    says nothing; there the innermost parameters name the arguments, but its
    defaults are not applied, since the wrapper may supply others. Cached
    layers of our own pass calls through unchanged, so they are looked through.
    """
    layer: Any = fn
    while callable(getattr(layer, "cache_info", None)) and hasattr(layer, "__wrapped__"):
        layer = layer.__wrapped__
    if getattr(layer, "__wrapped__", None) is None:
        return inspect.signature(layer), True
    own = inspect.signature(layer, follow_wrapped=False)
    kinds = [parameter.kind for parameter in own.parameters.values()]
    if sorted(kinds) != sorted(_VARIADIC):
        return own, True
    return inspect.signature(layer), False


def _describe(value: Any, exc: Unencodable) -> str:
    if exc.cycle:
        return "a structure that contains itself"
    inner = exc.value
    if isinstance(inner, type):
        held = f"the class {type_path(inner)}, which is neither importable by that name nor a model"
        return held if inner is value else f"a {type_path(type(value))} holding {held}"
    where = "" if inner is value else f" holding a {type_path(type(inner))}"
    return f"a {type_path(type(value))}{where}"


def _short_hash(text: str) -> str:
    return blake2b(_to_bytes(text), digest_size=4).hexdigest()


def _to_bytes(text: str) -> bytes:
    # surrogatepass keeps lone surrogates (legal in a Python str) distinct
    # instead of failing or collapsing them.
    return text.encode("utf-8", "surrogatepass")
