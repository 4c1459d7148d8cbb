"""L1 -> L2 -> L3 as a composition of guarded stores: read through with backfill, write through.

Each tier is a ``Guard`` of its own, with its own statistics and its
store's circuit breaker, so a failing tier is skipped, counted and logged
while the others still serve; tiers never raise for a tier's failure
(except the explicit ``invalidate`` and ``clear_prefix``, which try every
tier and then report what failed).

A hit in a lower tier is copied into the faster tiers above it with the
entry's remaining TTL, read in the same round trip (``get_with_ttl``). A
tier whose store cannot tell it is read with ``get`` and never copied up:
the copy could outlive the original. ``compose`` logs that once.

Writes go to every tier in order, fastest first, in the sync and the async
driver alike.

The lock under which one process computes an entry lives in the slowest
tier that offers one (``LockingStore``): that is the tier the processes
share (Redis under a memory tier), where a lock in a faster tier would be
seen by this process alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from instructor_cache._log import warning
from instructor_cache._stats import CacheInfo, Stats, counted
from instructor_cache.backends._contract import Store
from instructor_cache.backends._guard import Guard, breaker_for
from instructor_cache.errors import BackendError

__all__ = ["Tiers", "guarded_tiers"]


class _NeverOpen:
    """A gate whose ``open_until`` stays 0.0: the drivers never ask tiers to be bypassed."""

    open_until = 0.0


_NEVER_OPEN = _NeverOpen()


class Tiers:
    """Guarded tiers, fastest first, used as one guarded store."""

    __slots__ = (
        "__weakref__",
        "_first",
        "_first_hit",
        "_first_miss",
        "_locker",
        "_lower",
        "_stats",
        "_writes",
        "guards",
        "locks",
    )

    def __init__(
        self,
        guards: Sequence[Guard],
        stats: Sequence[Stats],
        writes: itertools.count[int] | None = None,
    ) -> None:
        self.guards = tuple(guards)
        self._stats = tuple(stats)
        # (level, guard, stats, whether its reads tell the remaining TTL)
        self._lower = tuple(
            (level, guard, self._stats[level], guard.reads_ttl)
            for level, guard in enumerate(self.guards)
            if level
        )
        self._first = self.guards[0].get
        self._first_hit, self._first_miss = self._stats[0].tier_hit, self._stats[0].miss
        # Moves on every write and removal through these tiers: a backfill
        # whose read began before one of them would copy back what was just
        # replaced or invalidated, so it is dropped.
        # Shared by every composition of one TieredCache (each decorated
        # function's, and its own for direct use), so a write through any of
        # them stops the others' backfills. next() is atomic; += is not.
        self._writes = itertools.count() if writes is None else writes
        self._locker = next((guard for guard in reversed(self.guards) if guard.locks), None)
        self.locks = self._locker is not None
        """Whether a tier offers a lock shared between processes (see the module)."""

    gate = _NEVER_OPEN
    """Tiers are never bypassed as a whole: each tier's breaker is its own."""

    def bypassing(self) -> bool:
        return False

    # -- reads -------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        text = self._first(key)  # an L1 hit, the common case, in the fewest steps
        if text is not None:
            self._first_hit()
            return text
        self._first_miss()
        writes = counted(self._writes)
        for level, guard, stats, reads_ttl in self._lower:
            if reads_ttl:
                entry = guard.get_with_ttl(key)
                if entry is not None:
                    stats.tier_hit()
                    text, ttl = entry
                    if (ttl is None or ttl > 0) and counted(self._writes) == writes:
                        for upper in self.guards[:level]:
                            upper.set(key, text, ttl)
                        if (
                            counted(self._writes) != writes
                        ):  # one landed while copying: undo the copies
                            for upper in self.guards[:level]:
                                upper.delete(key)
                    return text
            else:
                text = guard.get(key)
                if text is not None:
                    stats.tier_hit()
                    return text
            stats.miss()
        return None

    async def aget(self, key: str) -> str | None:
        text = await self.guards[0].aget(key)
        if text is not None:
            self._first_hit()
            return text
        self._first_miss()
        writes = counted(self._writes)
        for level, guard, stats, reads_ttl in self._lower:
            if reads_ttl:
                entry = await guard.aget_with_ttl(key)
                if entry is not None:
                    stats.tier_hit()
                    text, ttl = entry
                    if (ttl is None or ttl > 0) and counted(self._writes) == writes:
                        for upper in self.guards[:level]:
                            await upper.aset(key, text, ttl)
                        if (
                            counted(self._writes) != writes
                        ):  # one landed while copying: undo the copies
                            for upper in self.guards[:level]:
                                await upper.adelete(key)
                    return text
            else:
                text = await guard.aget(key)
                if text is not None:
                    stats.tier_hit()
                    return text
            stats.miss()
        return None

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Each tier is asked once, for what the faster tiers missed; hits are copied up."""
        found: list[str | None] = [None] * len(keys)
        wanted = list(range(len(keys)))
        for level, guard in enumerate(self.guards):
            texts = guard.get_many([keys[i] for i in wanted])
            wanted = self._sort(level, keys, wanted, texts, found)
            if not wanted:
                break
        return found

    async def aget_many(self, keys: Sequence[str]) -> list[str | None]:
        found: list[str | None] = [None] * len(keys)
        wanted = list(range(len(keys)))
        for level, guard in enumerate(self.guards):
            texts = await guard.aget_many([keys[i] for i in wanted])
            wanted = self._sort(level, keys, wanted, texts, found)
            if not wanted:
                break
        return found

    def _sort(
        self,
        level: int,
        keys: Sequence[str],
        wanted: list[int],
        texts: list[str | None],
        found: list[str | None],
    ) -> list[int]:
        """Record one tier's answers; return the positions still missing.

        Bulk hits from a lower tier are not copied up: a bulk read does not
        tell remaining TTLs, and a copy must not outlive its original.
        """
        stats, missing = self._stats[level], []
        for position, text in zip(wanted, texts, strict=True):
            if text is None:
                stats.miss()
                missing.append(position)
            else:
                stats.tier_hit()
                found[position] = text
        return missing

    # -- writes ------------------------------------------------------------------

    def set(self, key: str, value: str, ttl: float | None, *, explicit: bool = False) -> None:
        next(self._writes)
        for guard in self.guards:
            guard.set(key, value, ttl, explicit=explicit)

    async def aset(
        self, key: str, value: str, ttl: float | None, *, explicit: bool = False
    ) -> None:
        next(self._writes)
        for guard in self.guards:
            await guard.aset(key, value, ttl, explicit=explicit)

    def set_many(self, items: Mapping[str, str], ttl: float | None) -> None:
        next(self._writes)
        for guard in self.guards:
            guard.set_many(items, ttl)

    async def aset_many(self, items: Mapping[str, str], ttl: float | None) -> None:
        next(self._writes)
        for guard in self.guards:
            await guard.aset_many(items, ttl)

    def delete(self, key: str, *, explicit: bool = False) -> bool:
        next(self._writes)
        return any([guard.delete(key, explicit=explicit) for guard in self.guards])  # noqa: C419  (every tier)

    async def adelete(self, key: str, *, explicit: bool = False) -> bool:
        next(self._writes)
        deleted = False
        for guard in self.guards:
            deleted = await guard.adelete(key, explicit=explicit) or deleted
        return deleted

    # -- the lock, in the slowest tier that has one: ``None`` if none does ---------

    def lock(self, key: str, token: str, ttl: float) -> bool | None:
        return None if self._locker is None else self._locker.lock(key, token, ttl)

    async def alock(self, key: str, token: str, ttl: float) -> bool | None:
        return None if self._locker is None else await self._locker.alock(key, token, ttl)

    def recheck(self, key: str) -> str | None:
        """The entry as the locking tier holds it, for a caller waiting on (or just given) its lock.

        Another process stores there before it lets go; reading only there
        keeps the tiers' statistics to what calls asked.
        """
        return None if self._locker is None else self._locker.get(key)

    async def arecheck(self, key: str) -> str | None:
        return None if self._locker is None else await self._locker.aget(key)

    def unlock(self, key: str, token: str) -> None:
        if self._locker is not None:
            self._locker.unlock(key, token)

    async def aunlock(self, key: str, token: str) -> None:
        if self._locker is not None:
            await self._locker.aunlock(key, token)

    # -- explicit operations: every tier is tried, then failures are reported ------

    def invalidate(self, key: str) -> bool:
        next(self._writes)
        deleted, failures = False, []
        for guard in self.guards:
            try:
                deleted = guard.invalidate(key) or deleted
            except BackendError as exc:  # noqa: PERF203  (every tier must be tried)
                failures.append(exc)
        _raise_first(failures)
        return deleted

    async def ainvalidate(self, key: str) -> bool:
        next(self._writes)
        deleted, failures = False, []
        for guard in self.guards:
            try:
                deleted = await guard.ainvalidate(key) or deleted
            except BackendError as exc:  # noqa: PERF203  (every tier must be tried)
                failures.append(exc)
        _raise_first(failures)
        return deleted

    def clear_prefix(self, prefix: str) -> int:
        """Clear every tier; the count is the largest tier's (entries, not copies)."""
        next(self._writes)
        removed, failures = 0, []
        for guard in self.guards:
            try:
                removed = max(removed, guard.clear_prefix(prefix))
            except BackendError as exc:  # noqa: PERF203  (every tier must be tried)
                failures.append(exc)
        _raise_first(failures)
        return removed

    async def aclear_prefix(self, prefix: str) -> int:
        next(self._writes)
        removed, failures = 0, []
        for guard in self.guards:
            try:
                removed = max(removed, await guard.aclear_prefix(prefix))
            except BackendError as exc:  # noqa: PERF203  (every tier must be tried)
                failures.append(exc)
        _raise_first(failures)
        return removed

    # -- cache_info ----------------------------------------------------------------

    def size(self) -> tuple[int | None, int | None]:
        """The fastest tier's, which bounds what a hit costs least."""
        return self.guards[0].size()

    def tier_stats(self) -> tuple[Stats, ...]:
        """Each tier's counters, fastest first (events watch them to tell which tier served)."""
        return self._stats

    def reset_stats(self) -> None:
        """Start every tier's counts again (``cache_clear()``, as ``functools`` does)."""
        for stats in self._stats:
            stats.reset()

    def tier_infos(self) -> tuple[CacheInfo, ...]:
        """One ``CacheInfo`` per tier, in tier order."""
        return tuple(
            stats.info(*guard.size()) for stats, guard in zip(self._stats, self.guards, strict=True)
        )


def _raise_first(failures: list[BackendError]) -> None:
    if failures:
        if len(failures) > 1:
            raise BackendError("; ".join(map(str, failures))) from failures[0]
        raise failures[0]


def guarded_tiers(
    tiers: Sequence[Store],
    name: str,
    *,
    warn: bool = True,
    writes: itertools.count[int] | None = None,
) -> Tiers:
    """Each tier adapted and guarded on its own, counted for ``name`` (one function).

    ``warn``: log, once for this composition, each lower tier that cannot
    tell remaining TTLs (a ``TieredCache`` composes its tiers quietly for
    direct use, and each decorated function says it).
    """
    stats = [Stats(tier=level) for level in range(len(tiers))]
    guards = [
        Guard(tier, tier_stats, f"{name} tier {level + 1}", breaker_for(tier))
        for level, (tier, tier_stats) in enumerate(zip(tiers, stats, strict=True))
    ]
    for level, guard in enumerate(guards[1:], start=2):
        if warn and not guard.reads_ttl:
            warning(
                "instructor_cache: tier %d of %s, %r, cannot tell an entry's remaining TTL "
                "(it has no get_with_ttl), so its hits are served but never copied to the "
                "faster tiers above it",
                level,
                name,
                guard.store,
            )
    return Tiers(guards, stats, writes)
