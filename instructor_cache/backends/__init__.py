"""Storage backends: anything with the ``Backend`` methods can hold a cache."""

from instructor_cache.backends._contract import Store
from instructor_cache.backends._protocol import Backend
from instructor_cache.backends.disk import DiskCache
from instructor_cache.backends.memory import MemoryCache
from instructor_cache.backends.redis import RedisCache
from instructor_cache.backends.tiered import TieredCache

__all__ = ["Backend", "DiskCache", "MemoryCache", "RedisCache", "Store", "TieredCache"]
