"""Single-flight in one process: concurrent calls with one key run the function once.

A ``Flight`` is one running computation of one key. Calls that miss the
store while it runs join it and wait, instead of paying the provider
again: a thread on an ``Event``, an asyncio task on a future of its own
event loop, woken with ``call_soon_threadsafe`` (so tasks of several loops
in several threads can wait on one leader). Waiting is always bounded by
the caller. The table of flights holds no I/O and knows no store: the
drivers' miss path (``_misses``) decides what waiting on a flight means.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["NOTHING", "Flight", "Flights"]

_REMEMBERED = 4096


class Flight:
    """One computation of one key; its outcome is read once ``landed``.

    ``text`` is what the leader stored (``None``: nothing was storable),
    ``error`` the exception it raised, ``abandoned`` set when it stopped
    without either (cancelled, interrupted): a waiter then takes over.
    ``shared`` is the result itself (``_misses.Shared``: with what its call
    took and used), for a leader that skipped the store (its breaker is open)
    and so encoded nothing: waiters get copies of it.
    ``since`` is when the leader began the call its waiters wait for: it
    moves on while the leader waits for another process's lock (whose
    holder may have died), and when it then calls the function itself.
    ``outdated`` is set when ``refresh``, ``invalidate`` or ``cache_clear`` began
    meanwhile: its waiters still get its result, but it is not stored after
    them.

    Made for every miss, so it is cheap: no lock or event of its own; a
    waiter brings its own (an ``Event``, a future) and the flights share
    one lock for the moment of registering or landing.
    """

    __slots__ = (
        "_done",
        "_wakers",
        "abandoned",
        "error",
        "outdated",
        "shared",
        "since",
        "text",
    )

    def __init__(self) -> None:
        self._done = False
        self._wakers: list[Callable[[], object]] = []
        self.text: str | None = None
        self.error: Exception | None = None
        self.shared: object = NOTHING
        self.abandoned = False
        self.outdated = False
        self.since = time.monotonic()

    def land(self) -> None:
        with _REGISTRY_LOCK:
            self._done = True
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def _register(self, wake: Callable[[], object]) -> bool:
        """Add ``wake`` to be called on landing; ``False`` if it has landed already."""
        with _REGISTRY_LOCK:
            if self._done:
                return False
            self._wakers.append(wake)
            return True

    def _unregister(self, wake: Callable[[], object]) -> None:
        with _REGISTRY_LOCK:
            if wake in self._wakers:
                self._wakers.remove(wake)

    def wait(self, timeout: float) -> bool:
        """Block this thread until the flight lands; ``False`` if ``timeout`` ran out first.

        A lock waits at most ``TIMEOUT_MAX`` seconds at a time (some 292 years): a
        longer ``single_flight`` would raise ``OverflowError`` here.
        """
        landed = threading.Event()
        if not self._register(landed.set):
            return True
        try:
            return landed.wait(min(timeout, threading.TIMEOUT_MAX))
        finally:
            self._unregister(landed.set)

    async def await_landing(self, timeout: float) -> bool:
        """Wait in this task until the flight lands; ``False`` if ``timeout`` ran out first.

        A cancelled waiter only stops waiting: the leader's call is its own
        task's, and goes on. ``asyncio.wait``, not ``wait_for``: on Python 3.11
        ``wait_for`` swallows a cancellation that arrives in the tick the
        flight lands, and the cancelled task would go on as if never cancelled.
        """
        import asyncio  # noqa: PLC0415  (loaded already: a loop is running; not at import)

        loop = asyncio.get_running_loop()
        landed: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            # A loop that has closed has no one waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, landed)

        if not self._register(wake):
            return True
        try:
            await asyncio.wait((landed,), timeout=timeout)
        finally:
            self._unregister(wake)
        return landed.done()


NOTHING = object()
"""``Flight.shared`` when the leader shares no result of its own (it stored text, or failed)."""

_REGISTRY_LOCK = threading.Lock()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Refreshing:
    """A refresh of one key in progress (or a call paid outside a flight: ``Flights.track``):
    outdated when a later refresh, an invalidation or a clear of that key begins, so that it
    neither stores its older answer over theirs nor deletes what was stored after them."""

    __slots__ = ("outdated",)

    def __init__(self) -> None:
        self.outdated = False


class Flights:
    """The flights of one decorated function, by key, shared by its threads and event loops.

    ``landings`` moves each time a flight lands. A call reads it before its
    store read; if a flight of its key landed since (and stored its value
    after that read), the new leader reads the store again before paying.
    """

    __slots__ = (
        "__weakref__",
        "_flying",
        "_landed",
        "_leading",
        "_lock",
        "_refreshing",
        "landings",
    )

    def __init__(self) -> None:
        self._flying: dict[str, Flight] = {}
        self._refreshing: dict[str, list[Refreshing]] = {}  # refreshes running, by key
        self._lock = threading.Lock()
        self.landings = 0
        self._landed: dict[str, int] = {}  # the latest landings, oldest first
        # The flights this call stack (thread or task, and tasks it spawned) is
        # computing: a call that would wait on its own flight would wait out
        # its whole bound, so it computes instead.
        self._leading: contextvars.ContextVar[frozenset[Flight]] = contextvars.ContextVar(
            "instructor_cache_leading", default=frozenset()
        )
        _EVERY_TABLE.add(self)

    def _forget_in_child(self) -> None:
        """A forked child has none of its parent's running calls: waiting on one would hang."""
        self._flying, self._landed, self._refreshing = {}, {}, {}
        self._lock = threading.Lock()  # its parent's may have been held by another thread

    def join(self, key: str) -> tuple[Flight, bool]:
        """The flight computing ``key``, and whether the caller just started it (and leads it)."""
        with self._lock:
            flight = self._flying.get(key)
            if flight is not None:
                return flight, False
            flight = self._flying[key] = Flight()
            return flight, True

    def land(self, key: str, flight: Flight) -> None:
        """Take ``flight`` off the table, then wake its waiters (who may start a new one)."""
        with self._lock:
            if self._flying.get(key) is flight:
                del self._flying[key]
            self._note_landing(key)
        flight.land()

    def _note_landing(self, key: str) -> None:
        self.landings += 1
        self._landed.pop(key, None)
        self._landed[key] = self.landings
        if len(self._landed) > _REMEMBERED:
            del self._landed[next(iter(self._landed))]

    def landed_since(self, key: str, landings: int) -> bool:
        """Whether a flight of ``key`` may have landed after ``landings`` was read."""
        if landings == self.landings:
            return False
        with self._lock:
            number = self._landed.get(key)
            if number is not None:
                return number > landings
            # Not remembered: it landed before the oldest we remember, if ever.
            oldest = next(iter(self._landed.values()), landings + 1)
            return oldest > landings + 1

    def take_over(self, key: str, stale: Flight) -> Flight | None:
        """A new flight of ``key``, led by the caller, in place of ``stale``, which its waiters
        gave up on; ``None`` if it is not flying any more (it landed, or was taken over)."""
        with self._lock:
            if self._flying.get(key) is not stale:
                return None
            flight = self._flying[key] = Flight()
            return flight

    def outdate(self, key: str) -> None:
        """An invalidation of ``key`` begins: the flight and the refreshes now computing it
        began before, so their results must not be stored over theirs. The flight leaves the
        table: its waiters still get its result, but a call made after the invalidation must
        not join it and be handed the answer the invalidation dropped."""
        with self._lock:
            self._outdate(key)
            self._flying.pop(key, None)

    def _outdate(self, key: str) -> None:
        flight = self._flying.get(key)
        if flight is not None:
            flight.outdated = True
        for refreshing in self._refreshing.get(key, ()):
            refreshing.outdated = True

    def outdate_all(self) -> None:
        """``cache_clear`` begins: no flight or refresh computing now stores after it."""
        with self._lock:
            for flight in self._flying.values():
                flight.outdated = True
            self._flying = {}  # a call made after the clear joins none of them (see outdate)
            for refreshes in self._refreshing.values():
                for refreshing in refreshes:
                    refreshing.outdated = True

    def refresh(self, key: str) -> Refreshing:
        """A refresh of ``key`` begins: it outdates what computes ``key`` now, and is tracked
        until ``refreshed`` so that what begins after it outdates it in turn."""
        refreshing = Refreshing()
        with self._lock:
            self._outdate(key)
            self._refreshing.setdefault(key, []).append(refreshing)
        return refreshing

    def track(self, key: str) -> Refreshing:
        """A computation of ``key`` that stores without a flight begins (``single_flight=False``,
        a recursive call): like a refresh, outdated by what begins after it, but it outdates
        nothing itself. Ended with ``refreshed``."""
        computing = Refreshing()
        with self._lock:
            self._refreshing.setdefault(key, []).append(computing)
        return computing

    def refreshed(self, key: str, refreshing: Refreshing) -> None:
        with self._lock:
            refreshes = self._refreshing.get(key)
            if refreshes is not None:
                refreshes.remove(refreshing)
                if not refreshes:
                    del self._refreshing[key]

    def superseded(self, key: str) -> None:
        """A refresh of ``key`` has written (or dropped) its entry: the flight it outdated
        leaves the table, as on an invalidation, so that a call made from now on does not
        join it and get the answer that began before the refresh; and it counts as a landing,
        so that a call that missed just before the write reads the store again before paying."""
        with self._lock:
            flight = self._flying.get(key)
            if flight is not None and flight.outdated:
                del self._flying[key]
            self._note_landing(key)

    def lead(self, flight: Flight) -> contextvars.Token[frozenset[Flight]]:
        return self._leading.set(self._leading.get() | {flight})

    def led(self, token: contextvars.Token[frozenset[Flight]]) -> None:
        self._leading.reset(token)

    def leads(self, flight: Flight) -> bool:
        """Whether this call stack is itself computing ``flight`` (a recursive call).

        The flight, not its key: a task spawned while a call led a key, and
        still running after it, waits like anyone for a later flight of it.
        """
        return flight in self._leading.get()


_EVERY_TABLE: weakref.WeakSet[Flights] = weakref.WeakSet()


def _forget_flights_in_child() -> None:
    global _REGISTRY_LOCK  # noqa: PLW0603  (its parent's may have been held by another thread)
    _REGISTRY_LOCK = threading.Lock()
    for table in list(_EVERY_TABLE):
        table._forget_in_child()


if hasattr(os, "register_at_fork"):  # pragma: no branch  (every POSIX Python 3.10+)
    os.register_at_fork(after_in_child=_forget_flights_in_child)
