"""``make_cache_key``: the decorator's key builder, usable without decorating."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from typing_extensions import Unpack

from instructor_cache._keys import KeyBuilder
from instructor_cache._memo import codec_and_keys
from instructor_cache._options import KeyOptions, Options, parse_options

__all__ = ["make_cache_key"]


def make_cache_key(
    func: Callable[..., Any],
    /,
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    **options: Unpack[KeyOptions],
) -> str:
    """Return the key under which ``@instructor_cache`` stores ``func(*args, **kwargs)``.

    The key options (``namespace``, ``version``, ``ignore``, ``key``,
    ``name``, ``code_fingerprint``, ``stream``) must be those the decorator was given
    for the keys to match.

    For a function already decorated, ``func.cache_key(*args, **kwargs)`` is the
    shorter spelling. The builder (schema fingerprint included, the costly
    part) is made once per function and options.
    """
    if callable(getattr(func, "cache_info", None)):
        func = func.__wrapped__  # type: ignore[attr-defined]  # its own layer's key
    parsed = parse_options(dict(options))
    try:
        build = _builder(func, parsed)
    except TypeError:  # an unhashable key= (a dataclass instance): made afresh, uncached
        build = codec_and_keys(func, parsed)[1]
    return build(tuple(args), kwargs or {})


@functools.lru_cache(maxsize=256)
def _builder(func: Callable[..., Any], options: Options) -> KeyBuilder:
    return codec_and_keys(func, options)[1]
