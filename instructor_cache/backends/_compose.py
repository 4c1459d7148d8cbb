"""What a decorated function talks to: its store, adapted and guarded, composed once.

``compose`` is the one place that looks at what a store is: a
``TieredCache`` becomes guarded tiers, anything else one guard. The drivers
then call the result without asking it anything.
"""

from __future__ import annotations

from instructor_cache._breaker import CircuitBreaker
from instructor_cache._stats import Stats
from instructor_cache.backends._contract import Store
from instructor_cache.backends._guard import Guard, breaker_for
from instructor_cache.backends._tiers import Tiers
from instructor_cache.backends.tiered import TieredCache
from instructor_cache.errors import ConfigurationError

__all__ = ["GuardedStore", "compose"]

GuardedStore = Guard | Tiers


def compose(
    store: Store, stats: Stats, name: str, breaker: CircuitBreaker | None = None
) -> GuardedStore:
    """``store`` as the function ``name`` uses it; failures count into ``stats``.

    ``breaker`` replaces, for this function, the breaker the store shares
    with every other function decorated over it.
    """
    if isinstance(store, TieredCache):
        if breaker is not None:
            raise ConfigurationError(
                "circuit_breaker= does not apply to a TieredCache: each tier has the breaker "
                "of its own store, so that a failing Redis does not close the memory tier"
            )
        return store.guarded_for(name)
    return Guard(store, stats, name, breaker or breaker_for(store))
