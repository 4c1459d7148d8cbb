"""``TieredCache``: L1, L2, ... declared as one store, composed into guarded tiers."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from instructor_cache._instructor_hook import InstructorCompatible
from instructor_cache.backends._contract import ClosableStore, Store, check_store
from instructor_cache.backends._tiers import Tiers, guarded_tiers
from instructor_cache.errors import ConfigurationError

__all__ = ["TieredCache"]


class TieredCache(InstructorCompatible):
    """Tiers from fastest to slowest: ``TieredCache(MemoryCache(), DiskCache(d), RedisCache(u))``.

    A read asks each tier in turn; a hit in a lower tier is copied into the
    faster tiers above it with the entry's remaining TTL (see ``_tiers``).
    A write goes to every tier. Each tier is guarded on its own: a failing
    tier is skipped, counted and logged, its circuit breaker applies, and
    the other tiers still serve.

    Decorating a function over a ``TieredCache`` composes its tiers afresh
    for that function, so ``cache_info().tiers`` counts that function
    alone; the stores themselves are shared. Used directly (or by code that
    takes any store), it is a store itself.
    """

    def __init__(self, *tiers: Store) -> None:
        if not tiers:
            raise ConfigurationError("TieredCache needs at least one tier")
        for tier in tiers:
            check_store(tier)
        self.tiers = tiers
        self._writes = itertools.count()  # every composition's writes, for their backfills
        self._tiers = guarded_tiers(tiers, "TieredCache", warn=False, writes=self._writes)

    @property
    def serves_sync_calls(self) -> bool:
        """Whether every tier can serve sync calls (a tier that cannot would fail each one)."""
        return all(
            not isinstance(tier, InstructorCompatible) or tier.serves_sync_calls
            for tier in self.tiers
        )

    def guarded_for(self, name: str) -> Tiers:
        """The tiers guarded and counted for one decorated function, sharing the write count."""
        return guarded_tiers(self.tiers, name, writes=self._writes)

    def __repr__(self) -> str:
        return f"TieredCache({', '.join(map(repr, self.tiers))})"

    @property
    def maxsize(self) -> int | None:
        """The fastest tier's, which bounds what a hit costs least."""
        return self._tiers.size()[0]

    def __len__(self) -> int:
        currsize = self._tiers.size()[1]
        if currsize is None:
            raise TypeError("the first tier does not report its size")
        return currsize

    def get(self, key: str) -> str | None:
        return self._tiers.get(key)

    async def aget(self, key: str) -> str | None:
        return await self._tiers.aget(key)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return self._tiers.get_many(keys)

    async def aget_many(self, keys: Sequence[str]) -> list[str | None]:
        return await self._tiers.aget_many(keys)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._tiers.set(key, value, ttl)

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._tiers.aset(key, value, ttl)

    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        self._tiers.set_many(items, ttl)

    async def aset_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        await self._tiers.aset_many(items, ttl)

    def delete(self, key: str) -> bool:
        return self._tiers.delete(key)

    async def adelete(self, key: str) -> bool:
        return await self._tiers.adelete(key)

    def clear_prefix(self, prefix: str) -> int:
        return self._tiers.clear_prefix(prefix)

    async def aclear_prefix(self, prefix: str) -> int:
        return await self._tiers.aclear_prefix(prefix)

    def clear(self) -> None:
        self._tiers.clear_prefix("")

    async def aclear(self) -> None:
        await self._tiers.aclear_prefix("")

    def close(self) -> None:
        """Close the tiers that can be closed (disk connections, Redis pools)."""
        for tier in self.tiers:
            if isinstance(tier, ClosableStore):
                tier.close()
