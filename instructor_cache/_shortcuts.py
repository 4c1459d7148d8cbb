"""Decorator factories named after their store, for stacking by hand."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from instructor_cache._decorator import DEFAULT_MAXSIZE, CacheDecorator, instructor_cache
from instructor_cache._options import CacheOptions
from instructor_cache.backends._contract import Store
from instructor_cache.backends.memory import MemoryCache
from instructor_cache.backends.tiered import TieredCache

if TYPE_CHECKING:  # the Redis client is imported when a RedisCache is made, not before
    from instructor_cache.backends.redis import AsyncClient, SyncClient

__all__ = ["disk_cache", "memory_cache", "redis_cache", "tiered_cache"]


def memory_cache(maxsize: int = DEFAULT_MAXSIZE, **options: Unpack[CacheOptions]) -> CacheDecorator:
    """``@instructor_cache(MemoryCache(maxsize), **options)``: an in-process LRU layer."""
    return instructor_cache(MemoryCache(maxsize), **options)


def disk_cache(
    directory: str | os.PathLike[str],
    *,
    timeout: float | None = None,
    disk_settings: dict[str, Any] | None = None,
    **options: Unpack[CacheOptions],
) -> CacheDecorator:
    """``@instructor_cache(DiskCache(directory), **options)``: a persistent layer.

    ``timeout`` and ``disk_settings`` (diskcache settings such as
    ``size_limit``) go to the ``DiskCache``; the rest are decorator options.
    """
    from instructor_cache.backends.disk import DiskCache  # noqa: PLC0415  (lazy: diskcache)

    settings = dict(disk_settings or {})
    if timeout is not None:
        settings["timeout"] = timeout
    return instructor_cache(DiskCache(directory, **settings), **options)


def redis_cache(
    url_or_client: str | SyncClient | AsyncClient = "redis://localhost:6379/0",
    *,
    prefix: str = "",
    redis_options: dict[str, Any] | None = None,
    **options: Unpack[CacheOptions],
) -> CacheDecorator:
    """``@instructor_cache(RedisCache(url_or_client, prefix=prefix), **options)``: a shared layer.

    ``redis_options`` go to the ``RedisCache`` (``timeout``, ``cluster``,
    client options); the rest are decorator options.
    """
    from instructor_cache.backends.redis import RedisCache  # noqa: PLC0415  (lazy: redis)

    return instructor_cache(
        RedisCache(url_or_client, prefix=prefix, **(redis_options or {})), **options
    )


def tiered_cache(*tiers: Store, **options: Unpack[CacheOptions]) -> CacheDecorator:
    """``@instructor_cache(TieredCache(*tiers), **options)``: L1, L2, ... in one layer."""
    return instructor_cache(TieredCache(*tiers), **options)
