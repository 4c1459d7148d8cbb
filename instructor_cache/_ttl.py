"""TTL arguments: seconds as int or float, or a ``timedelta``, normalised once."""

from __future__ import annotations

import datetime
import math

from instructor_cache.errors import ConfigurationError

__all__ = ["TTL", "to_seconds"]

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
