"""Was it a hit: ``track_calls`` collects the event of every decorated call made inside it.

A tracker is an event hook (``_events``) scoped by a context variable: the
one global hook it adds while any tracker is open hands each event to the
trackers of the thread or task that made the call, so calls made by
concurrent tasks outside the block are not mixed in. Nested trackers each
get every event of their block. While no tracker is open, nothing here runs.
"""

from __future__ import annotations

import contextvars
import threading
from types import TracebackType

from instructor_cache._control import reset_own
from instructor_cache._events import CacheEvent, add_event_hook, remove_event_hook

__all__ = ["track_calls"]

_TRACKERS: contextvars.ContextVar[tuple[list[CacheEvent], ...]] = contextvars.ContextVar(
    "instructor_cache_trackers", default=()
)
_LOCK = threading.Lock()
_open = 0


def _deliver(event: CacheEvent) -> None:
    for calls in _TRACKERS.get():
        calls.append(event)


class track_calls:  # noqa: N801  (a context manager used like a function, as contextlib's)
    """Collect a ``CacheEvent`` per decorated call made inside: ``with track_calls() as calls:``.

    Each event says the function, key, outcome (``"hit"``, ``"miss"``,
    ``"error"``, ``"bypass"``), tier, latency and what a hit saved; a call
    of a cached layer stacked on another gives one event per layer, the
    inner one first. A batch (``map``, ``warm``) gives none: it is not a
    call of the function. Calls made in this thread or task, and in tasks
    started inside the block.
    """

    __slots__ = ("_calls", "_tokens")

    def __init__(self) -> None:
        self._calls: list[CacheEvent] = []
        self._tokens: list[contextvars.Token[tuple[list[CacheEvent], ...]]] = []

    def __enter__(self) -> list[CacheEvent]:
        global _open  # noqa: PLW0603  (a count under the lock)
        with _LOCK:
            if not _open:
                add_event_hook(_deliver)
            _open += 1
        self._tokens.append(_TRACKERS.set((*_TRACKERS.get(), self._calls)))
        return self._calls

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _open  # noqa: PLW0603
        reset_own(_TRACKERS, self._tokens)
        with _LOCK:
            _open -= 1
            if not _open:
                remove_event_hook(_deliver)
