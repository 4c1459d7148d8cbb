"""The one place where backend failures become misses and skipped writes.

A cache is an optimisation: when the disk is full or the database is locked,
the caller must still get the function's result. Every backend call made by a
decorated function goes through ``FailOpen``, which counts the failure, logs it
(rate-limited, so a dead backend does not flood the log) and answers as if the
entry were absent. The sync and async halves are written side by side and
changed together.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from instructor_cache._stats import Stats
from instructor_cache.backends._protocol import Backend, PrefixClearable
from instructor_cache.errors import ConfigurationError, CorruptEntryError

__all__ = ["FailOpen", "RateLimitedLog", "logger"]

logger = logging.getLogger("instructor_cache")


class RateLimitedLog:
    """Logs a warning at most once per ``interval`` seconds, counting what it held back."""

    def __init__(self, interval: float = 5.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
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
    """

    __slots__ = ("_log", "_name", "_stats", "backend")

    def __init__(self, backend: Backend, stats: Stats, name: str) -> None:
        self.backend = backend
        self._stats = stats
        self._name = name
        self._log = RateLimitedLog()

    def failed(self, operation: str, exc: BaseException) -> None:
        """Count and log one failure of ``operation``."""
        self._stats.error()
        self._log.warning(
            "instructor_cache: %s on %r failed for %s, calling the function instead: %s: %s",
            operation,
            self.backend,
            self._name,
            type(exc).__name__,
            exc,
        )

    def get(self, key: str) -> str | None:
        try:
            return self.backend.get(key)
        except CorruptEntryError as exc:
            self.failed("get", exc)
            self.delete(key)
        except Exception as exc:  # noqa: BLE001  (see the class docstring)
            self.failed("get", exc)
        return None

    async def aget(self, key: str) -> str | None:
        try:
            return await self.backend.aget(key)
        except CorruptEntryError as exc:
            self.failed("get", exc)
            await self.adelete(key)
        except Exception as exc:  # noqa: BLE001
            self.failed("get", exc)
        return None

    def set(self, key: str, value: str, ttl: float | None) -> None:
        try:
            self.backend.set(key, value, ttl)
        except Exception as exc:  # noqa: BLE001
            self.failed("set", exc)

    async def aset(self, key: str, value: str, ttl: float | None) -> None:
        try:
            await self.backend.aset(key, value, ttl)
        except Exception as exc:  # noqa: BLE001
            self.failed("set", exc)

    def delete(self, key: str) -> bool:
        try:
            return bool(self.backend.delete(key))
        except Exception as exc:  # noqa: BLE001
            self.failed("delete", exc)
            return False

    async def adelete(self, key: str) -> bool:
        try:
            return bool(await self.backend.adelete(key))
        except Exception as exc:  # noqa: BLE001
            self.failed("delete", exc)
            return False

    def clear_prefix(self, prefix: str) -> None:
        backend = self.backend
        if not isinstance(backend, PrefixClearable):
            raise ConfigurationError(
                f"cache_clear() cannot remove only {self._name}'s entries: {backend!r} has no "
                "clear_prefix(prefix) method. Add one, or call the backend's clear() to empty it."
            )
        try:
            backend.clear_prefix(prefix)
        except Exception as exc:  # noqa: BLE001
            self.failed("clear_prefix", exc)

    def size(self) -> tuple[int | None, int | None]:
        """The backend's ``(maxsize, currsize)``, ``None`` where it cannot tell.

        Asking is not using the cache, so a failure here is not counted.
        """
        maxsize = getattr(self.backend, "maxsize", None)
        try:
            currsize: int | None = len(self.backend)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001  (not sized, or unreachable)
            currsize = None
        return (maxsize if isinstance(maxsize, int) else None), currsize
