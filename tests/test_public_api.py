"""The public names are exactly those in __all__, sorted, documented and importable."""

from __future__ import annotations

import instructor_cache

PROMISED = {
    "instructor_cache",
    "memory_cache",
    "disk_cache",
    "MemoryCache",
    "DiskCache",
    "CacheInfo",
    "make_cache_key",
    "RedisCache",
    "TieredCache",
    "redis_cache",
    "tiered_cache",
}


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, holds every promised name, and every name in it exists."""
    names = instructor_cache.__all__
    assert names == sorted(names)
    assert set(names) >= PROMISED
    for name in names:
        assert getattr(instructor_cache, name) is not None


def test_public_names_have_docstrings() -> None:
    """Every public class and function says what it is for."""
    for name in instructor_cache.__all__:
        assert getattr(instructor_cache, name).__doc__, name


def test_no_private_module_leaks_into_the_namespace() -> None:
    """Public names only: nothing underscore-prefixed is re-exported by accident."""
    public = {n for n in vars(instructor_cache) if not n.startswith("_")}
    modules = {"backends", "errors"}
    assert public - modules - {"annotations"} == set(instructor_cache.__all__)
