"""Memoize LLM extraction functions that return pydantic models.

``@instructor_cache`` turns a repeated call into a lookup in memory, on disk or
in Redis, keyed by the arguments and the model's schema, and never returns a
wrong or stale object.

Architecture (the tree is the architecture):

- ``_decorator`` inspects the function once and composes what its calls use:
  the ``Memo`` (``_memo``: key, codec, statistics; no I/O), the guarded store
  (``backends._compose``) and a driver, sync or async (``_drivers``: all I/O).
- ``_streams`` does for generator functions what the drivers do for the
  others; ``_events`` turns the counts of a call into a ``CacheEvent``.
- ``_control`` holds what ``cache_control`` sets (mode, TTL, store), and
  ``_steering`` runs a call under it; ``_tracking`` collects events per block.
- What a call is: ``_identity``, ``_encoding``, ``_keys``, ``_fingerprint``;
  what a result is: ``_codec``, ``_schema``, ``_sameness``.
- ``backends._contract`` is the store contract: four string methods and
  optional capabilities as types. Cross-cutting behaviour wraps a store in
  the same contract: ``backends._guard`` (fail open, count, log, the one
  circuit breaker), ``backends._tiers`` (L1 -> L2 -> L3 with backfill) and
  ``backends._async`` (native, inline or worker-thread async).
- The stores only store and raise: ``backends.memory``, ``backends.disk``,
  ``backends.redis``. ``testing`` is the conformance suite for a store of
  your own.

``DiskCache`` and ``RedisCache`` load diskcache and redis on first use.
"""

from __future__ import annotations

import typing

from instructor_cache._batch import WarmCounts
from instructor_cache._breaker import CircuitBreaker
from instructor_cache._control import cache_control
from instructor_cache._decorator import (
    AsyncCachedFunction,
    CachedFunction,
    instructor_cache,
)
from instructor_cache._events import CacheEvent, add_event_hook, remove_event_hook
from instructor_cache._make_key import make_cache_key
from instructor_cache._options import CacheOptions, KeyOptions
from instructor_cache._raw import RawResponse
from instructor_cache._shortcuts import disk_cache, memory_cache, redis_cache, tiered_cache
from instructor_cache._stats import CacheInfo
from instructor_cache._stream_types import AsyncStreamFunction, StreamFunction
from instructor_cache._tracking import track_calls
from instructor_cache.backends import FixtureStore, MemoryCache, Store, TieredCache

if typing.TYPE_CHECKING:
    from instructor_cache.backends.disk import DiskCache
    from instructor_cache.backends.redis import RedisCache

__all__ = [
    "AsyncCachedFunction",
    "AsyncStreamFunction",
    "CacheEvent",
    "CacheInfo",
    "CacheOptions",
    "CachedFunction",
    "CircuitBreaker",
    "DiskCache",
    "FixtureStore",
    "KeyOptions",
    "MemoryCache",
    "RawResponse",
    "RedisCache",
    "Store",
    "StreamFunction",
    "TieredCache",
    "WarmCounts",
    "add_event_hook",
    "cache_control",
    "disk_cache",
    "instructor_cache",
    "make_cache_key",
    "memory_cache",
    "redis_cache",
    "remove_event_hook",
    "tiered_cache",
    "track_calls",
]

__version__ = "0.1.0"

del typing


def __dir__() -> list[str]:
    """The public names, the lazy ones too, for ``dir()``, completion and ``help()``."""
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> type:
    """``DiskCache`` and ``RedisCache``, imported with their libraries on first use."""
    if name in ("DiskCache", "RedisCache"):
        from instructor_cache import backends  # noqa: PLC0415

        value: type = getattr(backends, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
