"""The one place where backend failures become misses and skipped writes.

A cache is an optimisation: when the disk is full or the database is locked,
the caller must still get the function's result. Every backend call made by a
decorated function goes through ``FailOpen``, which counts the failure, logs it
(rate-limited, so a dead backend does not flood the log) and answers as if the
entry were absent. The sync and async halves are written side by side and
changed together.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from instructor_cache._breaker import CircuitBreaker
from instructor_cache._stats import Stats

if TYPE_CHECKING:  # only for annotations: backends/ itself imports this module
    from instructor_cache.backends._protocol import Backend
from instructor_cache.errors import BackendError, ConfigurationError, CorruptEntryError

__all__ = ["UNKNOWN", "FailOpen", "RateLimitedLog", "Unknown", "logger"]

logger = logging.getLogger("instructor_cache")


class Unknown(enum.Enum):
    """The type of ``UNKNOWN``: a remaining TTL nobody could tell, unlike ``None`` (no expiry)."""

    UNKNOWN = "UNKNOWN"


UNKNOWN = Unknown.UNKNOWN


class RateLimitedLog:
    """Logs a warning at most once per ``interval`` seconds, counting what it held back."""

    def __init__(self, interval: float = 5.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        if now < self._next:  # the common case while a backend is down: no lock
            self._suppressed += 1  # a lost increment only undercounts the note
            return
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            self._next = now + self._interval
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        logger.warning(message, *args, exc_info=exc_info)


class FailOpen:
    """Wraps a backend for one decorated function: failures are counted, logged, absorbed.

    ``Exception`` is caught on purpose: a user-supplied backend may raise
    anything, and none of it may reach the caller. ``BaseException``
    (``KeyboardInterrupt``, ``asyncio.CancelledError``) still propagates.

    A backend may carry a ``circuit_breaker`` (``DiskCache`` does): while it
    is open, operations skip the backend at once, each counted as an error,
    instead of paying the backend's timeout again.
    """

    __slots__ = ("_breaker", "_log", "_name", "_stats", "backend")

    def __init__(self, backend: Backend, stats: Stats, name: str) -> None:
        self.backend = backend
        self._breaker: CircuitBreaker | None = getattr(backend, "circuit_breaker", None)
        self._log = RateLimitedLog()
        self._stats = stats
        self._name = name

    def failed(self, operation: str, exc: BaseException, *, unhealthy: bool = True) -> None:
        """Count and log one failure; ``unhealthy`` ones also count towards the breaker.

        A call torn down with its event loop (a task left on a loop closed by
        ``loop.close()``, finalised later) says nothing of the backend's
        health: it must not open the breaker for every healthy caller.
        """
        if unhealthy and self._breaker is not None and not _torn_down_with_its_loop(exc):
            self._breaker.failed()
        self._stats.error()
        self._log.warning(
            "instructor_cache: %s on %r failed for %s, calling the function instead: %s: %s",
            operation,
            self.backend,
            self._name,
            type(exc).__name__,
            exc,
        )

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._breaker

    def bypassed(self) -> None:
        """Count a call that left the backend alone because its breaker is open."""
        if self._breaker is not None:
            self._skipped_while_open("call", self._breaker)

    def succeeded(self) -> None:
        """Tell the breaker, if any, that the backend answered."""
        if self._breaker is not None:
            self._breaker.succeeded()

    def _skipped(self, operation: str) -> bool:
        """Whether the breaker is open; a skipped operation counts as an error."""
        breaker = self._breaker
        if breaker is None or breaker.allow():
            return False
        self._skipped_while_open(operation, breaker)
        return True

    def _skipped_while_open(self, operation: str, breaker: CircuitBreaker) -> None:
        self._stats.error()
        self._log.warning(
            "instructor_cache: skipping %s on %r for %s: the backend keeps failing, so it is "
            "left alone for %.1f s (%r)",
            operation,
            self.backend,
            self._name,
            breaker.cooldown,
            breaker,
        )

    def _read_failed(self, exc: Exception) -> bool:
        """Record a failed read; ``True`` when the entry itself is bad and should go."""
        corrupt = isinstance(exc, CorruptEntryError)  # bad data, not a failing backend
        self.failed("get", exc, unhealthy=not corrupt)
        return corrupt

    def _guard(self, operation: str) -> _Guard:
        return _Guard(self, operation)

    def get(self, key: str) -> str | None:
        if self._breaker is not None and self._skipped("get"):
            return None
        try:
            text = self.backend.get(key)
        except Exception as exc:  # noqa: BLE001  (see the class docstring)
            if self._read_failed(exc):
                self.delete(key)
            return None
        breaker = self._breaker
        if breaker is not None and breaker.consecutive:
            breaker.succeeded()
        return text

    async def aget(self, key: str) -> str | None:
        if self._breaker is not None and self._skipped("get"):
            return None
        try:
            text = await self.backend.aget(key)
        except Exception as exc:  # noqa: BLE001
            if self._read_failed(exc):
                await self.adelete(key)
            return None
        breaker = self._breaker
        if breaker is not None and breaker.consecutive:
            breaker.succeeded()
        return text

    # ``explicit``: a write the user asked for (refresh), which goes to the
    # backend even while the breaker is open, paying its timeout at most.
    def set(self, key: str, value: str, ttl: float | None, *, explicit: bool = False) -> None:
        if explicit or not self._skipped("set"):
            with self._guard("set"):
                self.backend.set(key, value, ttl)

    async def aset(
        self, key: str, value: str, ttl: float | None, *, explicit: bool = False
    ) -> None:
        if explicit or not self._skipped("set"):
            with self._guard("set"):
                await self.backend.aset(key, value, ttl)

    def delete(self, key: str, *, explicit: bool = False) -> bool:
        deleted = False
        if explicit or not self._skipped("delete"):
            with self._guard("delete"):
                deleted = bool(self.backend.delete(key))
        return deleted

    async def adelete(self, key: str, *, explicit: bool = False) -> bool:
        deleted = False
        if explicit or not self._skipped("delete"):
            with self._guard("delete"):
                deleted = bool(await self.backend.adelete(key))
        return deleted

    def invalidate(self, key: str) -> bool:
        """Delete ``key`` whatever the breaker says; raise ``BackendError`` if that failed.

        A caller who invalidates an entry relies on it being gone: a silent
        ``False`` would leave a bad answer in place.
        """
        try:
            deleted = bool(self.backend.delete(key))
        except Exception as exc:  # any backend failure is reported the same way
            raise self._unreachable("invalidate", exc) from exc
        self.succeeded()
        return deleted

    async def ainvalidate(self, key: str) -> bool:
        try:
            deleted = bool(await self.backend.adelete(key))
        except Exception as exc:
            raise self._unreachable("invalidate", exc) from exc
        self.succeeded()
        return deleted

    def _unreachable(self, operation: str, exc: Exception) -> BackendError:
        if self._breaker is not None:
            self._breaker.failed()
        self._stats.error()
        return BackendError(
            f"{operation} on {self.backend!r} failed for {self._name}, so the entry may "
            f"still be there: {type(exc).__name__}: {exc}"
        )

    def clear(self) -> None:
        if not self._skipped("clear"):
            with self._guard("clear"):
                self.backend.clear()

    async def aclear(self) -> None:
        if not self._skipped("clear"):
            with self._guard("clear"):
                await self.backend.aclear()

    def remaining_ttl(self, key: str) -> float | Unknown | None:
        """The entry's remaining TTL (``None``: no expiry), or ``UNKNOWN`` where nobody can tell."""
        ask = getattr(self.backend, "remaining_ttl", None)
        if callable(ask) and not self._skipped("remaining_ttl"):
            with self._guard("remaining_ttl"):
                seconds: float | None = ask(key)
                return seconds
        return UNKNOWN

    async def aremaining_ttl(self, key: str) -> float | Unknown | None:
        ask = getattr(self.backend, "aremaining_ttl", None)
        if callable(ask) and not self._skipped("remaining_ttl"):
            with self._guard("remaining_ttl"):
                seconds: float | None = await ask(key)
                return seconds
        return UNKNOWN

    def clear_prefix(self, prefix: str) -> int:
        clear_prefix = getattr(self.backend, "clear_prefix", None)  # PrefixClearable
        if not callable(clear_prefix):
            # Emptying the whole backend would drop other functions' entries.
            self.failed(
                "cache_clear",
                ConfigurationError(
                    f"{self.backend!r} has no clear_prefix(prefix) method, so only its own clear() "
                    "could empty it, with every other function's entries; nothing was removed"
                ),
                unhealthy=False,
            )
            return 0
        removed = 0
        with self._guard("clear_prefix"):
            removed = int(clear_prefix(prefix))
        return removed  # noqa: RET504  (0 when the guard absorbed a failure)

    def size(self) -> tuple[int | None, int | None]:
        """The backend's ``(maxsize, currsize)``, ``None`` where it cannot tell.

        Asking is not using the cache, so a failure here is not counted.
        """
        try:
            maxsize = getattr(self.backend, "maxsize", None)
        except Exception:  # noqa: BLE001  (a property that asks an unreachable server)
            maxsize = None
        try:
            currsize: int | None = len(self.backend)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001  (not sized, or unreachable)
            currsize = None
        return (maxsize if isinstance(maxsize, int) else None), currsize


_LOOP_TEARDOWN = ("GeneratorExit", "no running event loop", "Event loop is closed")


def _torn_down_with_its_loop(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _LOOP_TEARDOWN)


class _Guard:
    """Absorbs an ``Exception`` raised in its block, recording it as a backend failure."""

    __slots__ = ("_operation", "_owner")

    def __init__(self, owner: FailOpen, operation: str) -> None:
        self._owner = owner
        self._operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        owner = self._owner
        if exc is None:
            owner.succeeded()
            return False
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, CancelledError: not ours to swallow
        # A misconfiguration says nothing about the backend's health: no breaker.
        owner.failed(self._operation, exc, unhealthy=not isinstance(exc, ConfigurationError))
        return True
