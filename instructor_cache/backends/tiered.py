"""L1 -> L2 -> L3: read through in order with backfill, write through to every tier."""

from __future__ import annotations

import asyncio
from typing import Any

from instructor_cache._failopen import FailOpen, Unknown
from instructor_cache._stats import CacheInfo, Stats
from instructor_cache._ttl import TTL
from instructor_cache.backends._protocol import Backend, check_backend
from instructor_cache.errors import ConfigurationError

__all__ = ["TieredCache"]


class TieredCache:
    """Tiers from fastest to slowest: ``TieredCache(MemoryCache(), DiskCache(d), RedisCache(u))``.

    A read asks each tier in turn; a hit in a lower tier is written back into
    the faster tiers above it with the entry's remaining TTL, where the lower
    tier can tell it (a tier that cannot is never copied up: the copy could
    outlive the original). A write goes to every tier. Each tier is guarded on its
    own, as a decorated function guards its backend: a failing tier is
    skipped, counted and logged, its circuit breaker applies, and the other
    tiers still serve. So a TieredCache never raises for a tier's failure.

    Decorated functions see their own statistics per tier in
    ``cache_info().tiers``; the tiers themselves are shared.
    """

    def __init__(self, *tiers: Backend, name: str = "TieredCache") -> None:
        if not tiers:
            raise ConfigurationError("TieredCache needs at least one tier")
        for tier in tiers:
            check_backend(tier)
        self.tiers = tiers
        self._name = name
        self._stats = tuple(Stats() for _ in tiers)
        self._guards = tuple(
            FailOpen(tier, stats, f"{name} tier {i + 1}")
            for i, (tier, stats) in enumerate(zip(tiers, self._stats, strict=True))
        )
        self._first_get, self._first_hit = self._guards[0].get, self._stats[0].hit

    def __repr__(self) -> str:
        return f"TieredCache({', '.join(map(repr, self.tiers))})"

    @property
    def maxsize(self) -> int | None:
        """The fastest tier's, which bounds what a hit costs least."""
        return self._guards[0].size()[0]

    def __len__(self) -> int:
        currsize = self._guards[0].size()[1]
        if currsize is None:
            raise TypeError("the first tier does not report its size")
        return currsize

    def for_function(self, name: str) -> TieredCache:
        """The same tiers, guarded and counted for one decorated function."""
        return TieredCache(*self.tiers, name=name)

    def tier_infos(self) -> tuple[CacheInfo, ...]:
        """One ``CacheInfo`` per tier, in tier order."""
        return tuple(
            stats.info(*guard.size())
            for stats, guard in zip(self._stats, self._guards, strict=True)
        )

    # -- reads -----------------------------------------------------------------

    fails_open = True
    """Each tier is guarded: a decorated function may read from it without another guard."""

    def get(self, key: str) -> str | None:
        # An L1 hit, the common case, in the fewest steps; then the loop below.
        text = self._first_get(key)
        if text is not None:
            self._first_hit(0.0)
            return text
        self._stats[0].miss()
        for level in range(1, len(self._guards)):
            guard = self._guards[level]
            text = guard.get(key)
            if text is not None:
                self._stats[level].hit(0.0)
                self._backfill(level, key, text, guard.remaining_ttl(key))
                return text
            self._stats[level].miss()
        return None

    async def aget(self, key: str) -> str | None:
        for level, guard in enumerate(self._guards):
            text = await guard.aget(key)
            if text is not None:
                self._stats[level].hit(0.0)
                if level:
                    ttl = await guard.aremaining_ttl(key)
                    if _worth_backfilling(ttl):
                        for upper in self._guards[:level]:
                            await upper.aset(key, text, ttl)  # type: ignore[arg-type]
                return text
            self._stats[level].miss()
        return None

    def _backfill(self, level: int, key: str, text: str, ttl: float | Unknown | None) -> None:
        if _worth_backfilling(ttl):
            for upper in self._guards[:level]:
                upper.set(key, text, ttl)  # type: ignore[arg-type]

    # -- writes ----------------------------------------------------------------

    def set(self, key: str, value: str, ttl: TTL = None) -> None:
        for guard in self._guards:
            guard.set(key, value, ttl)  # type: ignore[arg-type]  # tiers normalise the ttl

    async def aset(self, key: str, value: str, ttl: TTL = None) -> None:
        await asyncio.gather(*(guard.aset(key, value, ttl) for guard in self._guards))  # type: ignore[arg-type]

    def delete(self, key: str) -> bool:
        return any([guard.delete(key) for guard in self._guards])  # noqa: C419  (from every tier)

    async def adelete(self, key: str) -> bool:
        return any(await asyncio.gather(*(guard.adelete(key) for guard in self._guards)))

    def clear(self) -> None:
        for guard in self._guards:
            guard.clear()

    async def aclear(self) -> None:
        await asyncio.gather(*(guard.aclear() for guard in self._guards))

    def clear_prefix(self, prefix: str) -> int:
        """Clear the prefix in every tier; the count is the largest tier's (entries, not copies)."""
        return max(guard.clear_prefix(prefix) for guard in self._guards)

    def close(self) -> None:
        for tier in self.tiers:
            close: Any = getattr(tier, "close", None)
            if callable(close):
                close()


def _worth_backfilling(ttl: float | Unknown | None) -> bool:
    """Copy an entry up only with a TTL no longer than its own: never when that is unknown.

    ``None`` is no expiry below, so none above either; an unknown TTL (the
    tier cannot tell, or failed to) could make a stale copy outlive the
    original, and an entry with nothing left has expired in between.
    """
    return ttl is None or (not isinstance(ttl, Unknown) and ttl > 0)
