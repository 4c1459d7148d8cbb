"""Memoize LLM extraction functions that return pydantic models.

``@instructor_cache`` turns a repeated call into a lookup in memory, on disk or
in Redis, keyed by the arguments and the model's schema, and never returns a
wrong or stale object.
"""

from instructor_cache._breaker import CircuitBreaker
from instructor_cache._decorator import (
    AsyncCachedFunction,
    CachedFunction,
    CacheOptions,
    instructor_cache,
)
from instructor_cache._make_key import make_cache_key
from instructor_cache._shortcuts import disk_cache, memory_cache, redis_cache, tiered_cache
from instructor_cache._stats import CacheInfo
from instructor_cache.backends import Backend, DiskCache, MemoryCache, RedisCache, TieredCache

__all__ = [
    "AsyncCachedFunction",
    "Backend",
    "CacheInfo",
    "CacheOptions",
    "CachedFunction",
    "CircuitBreaker",
    "DiskCache",
    "MemoryCache",
    "RedisCache",
    "TieredCache",
    "disk_cache",
    "instructor_cache",
    "make_cache_key",
    "memory_cache",
    "redis_cache",
    "tiered_cache",
]

__version__ = "0.1.0"
