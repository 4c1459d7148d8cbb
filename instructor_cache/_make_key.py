"""``make_cache_key``: the decorator's key builder, usable without decorating."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from typing import Any

from instructor_cache._codec import Codec
from instructor_cache._keys import KeyBuilder, KeyFunction, function_name
from instructor_cache._memo import Options, return_type_of

__all__ = ["make_cache_key"]


def make_cache_key(
    func: Callable[..., Any],
    /,
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    namespace: str = "instructor_cache",
    version: str | None = None,
    ignore: Collection[str] = (),
    key: KeyFunction | None = None,
) -> str:
    """Return the key under which ``@instructor_cache`` stores ``func(*args, **kwargs)``.

    The options must be those the decorator was given for the keys to match.

    For a function already decorated, ``func.cache_key(*args, **kwargs)`` is the
    shorter spelling. The builder (schema fingerprint included, the costly
    part) is made once per function and options.
    """
    options = Options.parse(
        {"namespace": namespace, "version": version, "ignore": ignore, "key": key}
    )
    return _builder(func, options)(tuple(args), kwargs or {})


@functools.lru_cache(maxsize=256)
def _builder(func: Callable[..., Any], options: Options) -> KeyBuilder:
    codec: Codec[Any] = Codec(return_type_of(func), where=f"{function_name(func)}()")
    return KeyBuilder(
        func,
        namespace=options.namespace,
        schema_fingerprint=codec.fingerprint,
        version=options.version,
        ignore=options.ignore,
        key=options.key,
    )
