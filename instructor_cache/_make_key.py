"""``make_cache_key``: the decorator's key builder, usable without decorating."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from typing import Any

from instructor_cache._keys import KeyBuilder
from instructor_cache._memo import codec_and_keys
from instructor_cache._options import KeyFunction, Options

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
    name: str | None = None,
    code_fingerprint: bool = True,
) -> str:
    """Return the key under which ``@instructor_cache`` stores ``func(*args, **kwargs)``.

    The options must be those the decorator was given for the keys to match.

    For a function already decorated, ``func.cache_key(*args, **kwargs)`` is the
    shorter spelling. The builder (schema fingerprint included, the costly
    part) is made once per function and options.
    """
    if callable(getattr(func, "cache_info", None)):
        func = func.__wrapped__  # type: ignore[attr-defined]  # its own layer's key
    options = Options.parse(
        {
            "namespace": namespace,
            "version": version,
            "ignore": ignore,
            "key": key,
            "name": name,
            "code_fingerprint": code_fingerprint,
        }
    )
    return _builder(func, options)(tuple(args), kwargs or {})


@functools.lru_cache(maxsize=256)
def _builder(func: Callable[..., Any], options: Options) -> KeyBuilder:
    return codec_and_keys(func, options)[1]
