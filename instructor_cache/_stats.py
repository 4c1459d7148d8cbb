"""Statistics shaped like ``functools``' so code written for ``lru_cache`` keeps working."""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from instructor_cache._usage import Usage

from instructor_cache import _events
from instructor_cache._savings import NOTHING_SAVED, Savings

__all__ = ["MAX_DURATION", "CacheInfo", "Stats", "counted"]

MAX_DURATION = 86400.0
"""The most one hit counts as saved (a day): no real call takes longer."""


class CacheInfo(NamedTuple):
    """What ``cache_info()`` returns: ``functools``' four fields first, then ours.

    ``maxsize`` and ``currsize`` come from the backend (``None`` where it cannot
    tell); ``errors`` counts backend failures and unreadable entries, each of
    which was served by calling the function; ``time_saved`` adds up, over all
    hits, how long the original calls took, ``tokens_saved`` the tokens they
    used (input and output, where the result said: see the README) and
    ``cost_saved`` what those cost in USD at ``instructor_cache.pricing``'s
    prices. ``tiers`` holds one ``CacheInfo`` per tier of a ``TieredCache``,
    fastest first (empty otherwise). The fields after ``tiers`` came later:
    positional code written before them keeps working.
    """

    hits: int
    misses: int
    maxsize: int | None
    currsize: int | None
    errors: int = 0
    time_saved: float = 0.0
    tiers: tuple[CacheInfo, ...] = ()
    tokens_saved: int = 0
    cost_saved: float = 0.0


class Stats:
    """Counters for one decorated function, safe to update from many threads.

    ``+=`` on an attribute is a read, an add and a write, which two threads can
    interleave and lose a count. The counts are ``itertools.count`` objects
    instead: ``next()`` is a single C call, atomic under the GIL, with no lock
    to take on the hit path. The savings are added without a lock and may,
    under heavy contention, miss a few hits' worth: they are estimates.

    While ``watched`` (the function has an event hook, ``_events.Watch``),
    each count is also noted on the record of the call in progress: the
    counters are where every outcome already passes. ``tier`` is the index
    of the tier these count for, or ``None`` for a function's own counters.
    """

    __slots__ = (
        "__weakref__",
        "_errors",
        "_hits",
        "_lock",
        "_misses",
        "cost_saved",
        "tier",
        "time_saved",
        "tokens_saved",
        "watched",
    )

    def __init__(self, tier: int | None = None) -> None:
        self.tier = tier
        self.watched = False
        self._lock = threading.Lock()  # for reset() and info(): a consistent snapshot
        self._hits = itertools.count()
        self._misses = itertools.count()
        self._errors = itertools.count()
        self.time_saved = 0.0
        self.tokens_saved = 0
        self.cost_saved = 0.0

    @property
    def hits(self) -> int:
        return counted(self._hits)

    @property
    def misses(self) -> int:
        return counted(self._misses)

    @property
    def errors(self) -> int:
        return counted(self._errors)

    def hit(self, duration: float, usage: Usage | None = None) -> None:
        """Count a hit, which saved the original call's ``duration`` and ``usage``.

        Not a ``Savings``: building one per hit would add about 0.3 µs to a
        memory hit of about 4; ``usage.savings(duration)`` makes one when wanted.
        """
        next(self._hits)
        # A stored duration is only as trustworthy as the store: one planted
        # entry saying NaN, inf or -1e308 must not make the total meaningless.
        if not 0.0 <= duration <= MAX_DURATION:  # also true for NaN
            duration = min(duration, MAX_DURATION) if duration > 0.0 else 0.0
        self.time_saved += duration
        if usage is not None:
            self.tokens_saved += usage.tokens
            self.cost_saved += usage.cost()
        if self.watched:
            _events.note_hit(Savings(duration) if usage is None else usage.savings(duration))

    def tier_hit(self) -> None:
        """A hit in one tier (or a waiter's copy): counted; its savings count once, elsewhere."""
        next(self._hits)
        if self.watched:
            if self.tier is None:
                _events.note_hit(NOTHING_SAVED)
            else:
                _events.note_tier(self.tier)

    def miss(self) -> None:
        next(self._misses)
        # A tier's miss decides nothing: the next tier may hit.
        if self.watched and self.tier is None:
            _events.note_miss()

    def error(self) -> None:
        next(self._errors)
        if self.watched:
            _events.note_error()

    def reset(self) -> None:
        with self._lock:
            self._hits, self._misses, self._errors = (itertools.count() for _ in range(3))
            self.time_saved, self.tokens_saved, self.cost_saved = 0.0, 0, 0.0

    def info(
        self, maxsize: int | None, currsize: int | None, tiers: tuple[CacheInfo, ...] = ()
    ) -> CacheInfo:
        with self._lock:
            errors = self.errors + sum(tier.errors for tier in tiers)
            return CacheInfo(
                self.hits,
                self.misses,
                maxsize,
                currsize,
                errors,
                self.time_saved,
                tiers,
                self.tokens_saved,
                self.cost_saved,
            )


def counted(counter: itertools.count[int]) -> int:
    """How far ``counter`` has counted (its repr is "count(N)"; reading it does not advance it)."""
    return int(repr(counter)[6:-1])
