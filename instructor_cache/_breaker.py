"""A circuit breaker: a backend that keeps failing is skipped for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from instructor_cache.errors import ConfigurationError

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; stays open ``cooldown`` seconds.

    While open, ``allow()`` is false and callers skip the backend without
    paying its timeout. Once the cooldown has passed, one caller goes
    through as a probe while the others keep skipping: a success closes the
    breaker, a failure keeps it open for another cooldown. Failure counts
    are updated without a lock on purpose: a race can only shift the moment
    of opening by a call, and the hot path stays a comparison.
    """

    __slots__ = ("_lock", "_timer", "consecutive", "cooldown", "failures", "open_until")

    def __init__(
        self,
        failures: int = 3,
        cooldown: float = 5.0,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or not cooldown >= 0:
            raise ConfigurationError(
                f"CircuitBreaker needs failures >= 1 and cooldown >= 0, got {failures}, {cooldown}"
            )
        self.failures = failures
        self.cooldown = cooldown
        self._timer = timer
        self.consecutive = 0
        self.open_until = 0.0
        """When the breaker closes again (monotonic seconds); 0.0 while closed."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CircuitBreaker(failures={self.failures}, cooldown={self.cooldown})"

    @property
    def is_open(self) -> bool:
        """Whether callers are being turned away now (asking claims no probe)."""
        return self.open_until != 0.0 and self._timer() < self.open_until

    def watch(self) -> Callable[[], bool]:
        """A check, made now and asked later: ``False`` if the breaker has opened since.

        An operation let through now (the breaker closed, or this caller the
        probe, or an explicit operation that goes through anyway) keeps its
        place; one that waited while others found the store failing does not.
        """
        seen = self.open_until

        def still_wanted() -> bool:
            return self.open_until == seen or not self.is_open

        return still_wanted

    def allow(self) -> bool:
        """Whether the backend may be called now (closed, or this caller is the probe)."""
        if self.open_until == 0.0:
            return True
        now = self._timer()
        if now < self.open_until:
            return False
        with self._lock:  # half-open: the first caller past the cooldown probes
            if now < self.open_until:
                return False
            self.open_until = now + self.cooldown
            return True

    def succeeded(self) -> None:
        """Close the breaker. Callers on a hot path may skip it while ``consecutive`` is 0."""
        if self.consecutive:
            self.consecutive = 0
            self.open_until = 0.0

    def failed(self) -> None:
        self.consecutive += 1
        if self.consecutive >= self.failures:
            self.open_until = self._timer() + self.cooldown
