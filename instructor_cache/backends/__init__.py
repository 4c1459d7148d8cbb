"""Stores: anything with the ``Store`` methods can hold a cache.

``DiskCache`` and ``RedisCache`` are imported on first use, so that
``import instructor_cache`` does not load diskcache or the Redis client
for a user who caches in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from instructor_cache.backends._contract import (
    AsyncBulkReadsWithTTL,
    AsyncBulkStore,
    AsyncLockingStore,
    AsyncReadsWithTTL,
    AsyncStore,
    BulkReadsWithTTL,
    BulkStore,
    ClosableStore,
    DescribesCalls,
    LockingStore,
    ReadsWithTTL,
    ScanningStore,
    SizedStore,
    Store,
)
from instructor_cache.backends.fixtures import FixtureStore
from instructor_cache.backends.memory import MemoryCache
from instructor_cache.backends.tiered import TieredCache

if TYPE_CHECKING:
    from instructor_cache.backends.disk import DiskCache
    from instructor_cache.backends.redis import RedisCache

__all__ = [
    "AsyncBulkReadsWithTTL",
    "AsyncBulkStore",
    "AsyncLockingStore",
    "AsyncReadsWithTTL",
    "AsyncStore",
    "BulkReadsWithTTL",
    "BulkStore",
    "ClosableStore",
    "DescribesCalls",
    "DiskCache",
    "FixtureStore",
    "LockingStore",
    "MemoryCache",
    "ReadsWithTTL",
    "RedisCache",
    "ScanningStore",
    "SizedStore",
    "Store",
    "TieredCache",
]

_LAZY = {
    "DiskCache": "instructor_cache.backends.disk",
    "RedisCache": "instructor_cache.backends.redis",
}


def __dir__() -> list[str]:
    """The public names, the lazy ones too, for ``dir()``, completion and ``help()``."""
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    """Import a heavy store's module when its class is first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
