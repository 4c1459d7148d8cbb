"""The library's logger, and a warning that a failing store cannot turn into a flood."""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["RateLimitedLog", "warning"]


def warning(message: str, *args: Any, exc_info: BaseException | None = None) -> None:
    """Log on the ``instructor_cache`` logger, importing ``logging`` only when there is news."""
    import logging  # noqa: PLC0415  (a healthy app never pays for it at import)

    # An exception is logged by its text: a record kept by a handler (a test's
    # capture, a memory handler) must not pin its traceback, and through its
    # frames the connections and sockets of a failed call.
    args = tuple(str(arg) if isinstance(arg, BaseException) else arg for arg in args)
    logging.getLogger("instructor_cache").warning(message, *args, exc_info=exc_info)


class RateLimitedLog:
    """Logs a warning at most once per ``interval`` seconds, counting what it held back."""

    def __init__(self, interval: float = 5.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        if now < self._next:  # the common case while a store is down: no lock
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
        warning(message, *args, exc_info=exc_info)
