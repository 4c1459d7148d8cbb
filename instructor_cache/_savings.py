"""What one hit saved: the original call's time, tokens and money.

A hit stands for the call that produced its entry, so its savings are that
call's, read from the entry, not the microseconds the lookup took.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["NOTHING_SAVED", "Savings"]


class Savings(NamedTuple):
    """The original call's duration (seconds), total tokens and cost (USD); 0 where unknown."""

    seconds: float = 0.0
    tokens: int = 0
    cost: float = 0.0


NOTHING_SAVED = Savings()
"""What a miss, an error or a bypass saved."""
