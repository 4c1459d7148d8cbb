"""TTL arguments: seconds as int or float, or a ``timedelta``, normalised once."""

from __future__ import annotations

import datetime
import math

from instructor_cache.errors import ConfigurationError

__all__ = ["TTL", "bounded", "to_seconds"]

TTL = float | int | datetime.timedelta | None


def to_seconds(ttl: TTL, *, what: str = "ttl") -> float | None:
    """Return ``ttl`` in seconds, or ``None`` for no expiry; reject what cannot be meant."""
    if ttl is None:
        return None
    if isinstance(ttl, datetime.timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise ConfigurationError(f"{what} must be seconds or a timedelta, got {ttl!r}")
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigurationError(
            f"{what} must be a positive, finite duration, got {ttl!r}; use None for no expiry"
        )
    return seconds


def bounded(ttl: float | None, bound: float | None) -> float | None:
    """The TTL a store applies: the one asked for, never longer than the store's own ``bound``.

    A store made with ``ttl=60`` keeps nothing longer than a minute, whatever
    a caller asks (a tier backfilled with a day left, a decorator's hour);
    without a TTL asked for, the bound is the TTL. ``None`` is no expiry.
    """
    if ttl is None:
        return bound
    return ttl if bound is None else min(ttl, bound)
