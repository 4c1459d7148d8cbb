"""The public names are exactly those in __all__, sorted, documented and importable."""

from __future__ import annotations

from pathlib import Path

import instructor_cache
from tests._subprocess import json_under_hash_seed

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
    "cache_control",
    "track_calls",
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
    # "@py_builtins" and "@pytest_ar": pytest rewrites the asserts of a package whose
    # distribution registers a pytest plugin, and leaves these names behind.
    public = {n for n in dir(instructor_cache) if not n.startswith(("_", "@"))}
    modules = {"backends", "errors", "pricing", "pytest_plugin", "testing"}  # once imported
    assert public - modules - {"annotations"} == set(instructor_cache.__all__)


LAZY_IMPORTS = """
import json, sys
heavy = ("redis", "hiredis", "diskcache", "asyncio", "concurrent.futures", "hashlib", "instructor")
import instructor_cache
from instructor_cache.backends import Store
loaded = [name for name in heavy if name in sys.modules]
disk, redis_cache = instructor_cache.DiskCache, instructor_cache.RedisCache
from instructor_cache.backends import DiskCache, RedisCache
store = disk(sys.argv[1])
store.set("k", "v", None)
print(json.dumps({
    "loaded on import": loaded,
    "names": [disk.__name__, redis_cache.__name__],
    "same classes": disk is DiskCache and redis_cache is RedisCache,
    "disk store works": store.get("k") == "v" and isinstance(store, Store),
}))
store.close()
"""


def test_import_leaves_redis_and_diskcache_unloaded(tmp_path: Path) -> None:
    """Importing loads no store library, instructor, asyncio or executor; stores load on use."""
    seen = json_under_hash_seed(LAZY_IMPORTS, "0", str(tmp_path / "disk"))
    assert seen == {
        "loaded on import": [],
        "names": ["DiskCache", "RedisCache"],
        "same classes": True,
        "disk store works": True,
    }


LISTED = """
import json
import instructor_cache, instructor_cache.backends
print(json.dumps([
    sorted(set(module.__all__) - set(dir(module)))
    for module in (instructor_cache, instructor_cache.backends)
]))
"""


def test_lazy_names_are_listed_before_first_use() -> None:
    """dir() of a fresh import lists every name in __all__, lazy ones too (completion, help)."""
    assert json_under_hash_seed(LISTED, "0") == [[], []]
