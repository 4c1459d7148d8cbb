"""Events: one small record per decorated call, for metrics the library does not depend on.

Hooks are per decorator (``on_event=``) or global (``add_event_hook``). A
function with no hook to call pays one attribute test per call
(``Watch.on``) and one per count; nothing else here runs. A watched call
runs inside a ``Pending`` record (a context variable, so threads and tasks
each have their own): the counters the call already updates (``Stats``)
note on it what happened, and the record is handed to the hooks when the
call returns.

The first hit or miss noted decides the outcome, so what happens after it
is not mistaken for this call's lookup: the function's body calling other
cached functions (whose counts, watched or not, land on their own record or
on this decided one), the write of the result. So ``"error"`` means the store failed
to answer (a failed or skipped read, an unreadable entry) and the function
ran instead; a failed write shows in ``cache_info().errors``.

A hook that raises is logged and otherwise ignored: metrics must never break
the app, nor change what the call returns.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from instructor_cache._log import RateLimitedLog
from instructor_cache._savings import NOTHING_SAVED, Savings

if TYPE_CHECKING:
    from instructor_cache._stats import Stats

__all__ = [
    "CacheEvent",
    "EventHook",
    "Outcome",
    "Pending",
    "Watch",
    "add_event_hook",
    "check_hook",
    "is_async_callable",
    "note_bypass",
    "note_error",
    "note_hit",
    "note_miss",
    "note_tier",
    "remove_event_hook",
]

Outcome = Literal["hit", "miss", "error", "bypass"]


class CacheEvent(NamedTuple):
    """What one call of a decorated function did.

    ``outcome``: ``"hit"`` (served from the cache, or by waiting for the same
    call running alongside), ``"miss"`` (the function ran), ``"error"`` (the
    function ran because the store failed or held an unreadable entry) or
    ``"bypass"`` (the function ran without asking the store: its circuit
    breaker is open). ``tier``: for a hit in a ``TieredCache``, the index of
    the tier that served it (0 is the fastest, as in ``cache_info().tiers``).
    ``latency``: seconds the call took as its caller saw it. ``saved``: what
    a hit saved, the original call's duration, tokens and cost.
    ``raised``: the call raised (the function's own exception).
    """

    function: str
    key: str | None
    outcome: Outcome
    tier: int | None
    latency: float
    saved: Savings
    raised: bool = False


EventHook = Callable[[CacheEvent], object]


_GLOBAL_HOOKS: tuple[EventHook, ...] = ()
_WATCHES: weakref.WeakSet[Watch] = weakref.WeakSet()
_HOOKS_LOCK = threading.Lock()
_HOOK_LOG = RateLimitedLog()


def add_event_hook(hook: EventHook) -> EventHook:
    """Call ``hook`` with a ``CacheEvent`` after every call of every decorated function.

    Returns ``hook``, so it can be used as a decorator. Hooks run in the
    calling thread or task, after the call, in the order they were added;
    keep them fast (a counter increment), and hand slow work to a queue.
    """
    check_hook(hook, "an event hook")
    global _GLOBAL_HOOKS  # noqa: PLW0603  (one tuple, replaced whole: readers never lock)
    with _HOOKS_LOCK:
        _GLOBAL_HOOKS = (*_GLOBAL_HOOKS, hook)
        _rewatch()
    return hook


def is_async_callable(value: object) -> bool:
    """Whether calling ``value`` returns a coroutine (an object with an async ``__call__`` too)."""
    return inspect.iscoroutinefunction(value) or (
        callable(value) and inspect.iscoroutinefunction(type(value).__call__)
    )


def check_hook(hook: object, what: str) -> None:
    """Refuse what cannot be a hook, an ``async def`` too: it would be called, never awaited.

    Its coroutine would be dropped after each call, so its metrics would stay
    empty with nothing but a ``RuntimeWarning`` to tell.
    """
    from instructor_cache.errors import ConfigurationError  # noqa: PLC0415

    if not callable(hook):
        raise ConfigurationError(f"{what} must be callable, got {hook!r}")
    if is_async_callable(hook):
        raise ConfigurationError(
            f"{what} must be a plain function, but {hook!r} is async: hooks are called, not "
            "awaited, after each call. Make it a def that records the event (a counter), and "
            "hand slow work to a queue or a task"
        )


def remove_event_hook(hook: EventHook) -> None:
    """Stop calling ``hook``; raise ``ValueError`` if it was not added."""
    global _GLOBAL_HOOKS  # noqa: PLW0603
    with _HOOKS_LOCK:
        hooks = list(_GLOBAL_HOOKS)
        if hook not in hooks:
            raise ValueError(f"{hook!r} is not an event hook (add_event_hook adds one)")
        hooks.remove(hook)
        _GLOBAL_HOOKS = tuple(hooks)
        _rewatch()


def _rewatch() -> None:
    for watch in list(_WATCHES):
        watch.turn(bool(watch.hooks or _GLOBAL_HOOKS))


class Pending:
    """What the counters noted about the call in progress; becomes its ``CacheEvent``."""

    __slots__ = ("bypass", "decided", "entered", "error", "hit", "saved", "tier")

    def __init__(self) -> None:
        self.entered = False  # the wrapper re-entered for this record (see Watch.call)
        self.decided = self.hit = self.error = self.bypass = False
        self.tier: int | None = None
        self.saved = NOTHING_SAVED

    def outcome(self) -> Outcome:
        if self.hit:
            return "hit"
        if self.bypass:
            return "bypass"
        return "error" if self.error else "miss"


PENDING: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "instructor_cache_pending", default=None
)


def _undecided() -> Pending | None:
    pending = PENDING.get()
    return None if pending is None or pending.decided else pending


def note_hit(saved: Savings) -> None:
    """The function's counter saw a hit: the call in progress, if watched, was served."""
    pending = _undecided()
    if pending is not None:
        pending.decided = pending.hit = True
        pending.saved = saved


def note_miss() -> None:
    """The function's counter saw a miss: the call in progress ran the function."""
    pending = _undecided()
    if pending is not None:
        pending.decided = True


def note_tier(level: int) -> None:
    """A tier's counter saw a hit: remember which tier served the call."""
    pending = _undecided()
    if pending is not None and pending.tier is None:
        pending.tier = level


def note_error() -> None:
    pending = _undecided()
    if pending is not None:
        pending.error = True


def note_bypass() -> None:
    """The store was skipped for this call (its breaker is open)."""
    pending = _undecided()
    if pending is not None:
        pending.bypass = True


class _Opened(NamedTuple):
    """A watched call in progress: what ``Watch._close`` needs to report it."""

    hooks: tuple[EventHook, ...]
    key: str | None
    pending: Pending
    token: contextvars.Token[Pending | None]
    started: float


class Watch:
    """The hooks of one decorated function, and whether its calls run in a record.

    ``on`` is what the drivers test first on every call, and each of the
    function's counters has its ``watched`` flag set alike: both follow
    global hooks as they come and go.
    """

    __slots__ = ("__weakref__", "counters", "hooks", "key", "name", "on", "routed")

    def __init__(
        self, name: str, hooks: tuple[EventHook, ...], key: Callable[[Any, Any], str]
    ) -> None:
        self.name = name
        self.hooks = hooks
        self.key = key
        self.counters: tuple[Stats, ...] = ()
        # The tiers' counters of stores a cache_control block routes to: held
        # weakly, so a route the function lets go is not watched forever.
        self.routed: weakref.WeakSet[Stats] = weakref.WeakSet()
        with _HOOKS_LOCK:
            _WATCHES.add(self)
            self.on = bool(hooks or _GLOBAL_HOOKS)

    def count_with(self, *counters: Stats) -> None:
        """Watch these counters: the function's own and its tiers'."""
        with _HOOKS_LOCK:
            self.counters = counters
            self.turn(self.on)

    def count_routed(self, *counters: Stats) -> None:
        """Watch these too, while the route that counts with them is kept."""
        with _HOOKS_LOCK:
            for counter in counters:
                self.routed.add(counter)
                counter.watched = self.on

    def turn(self, on: bool) -> None:
        self.on = on
        for counter in (*self.counters, *self.routed):
            counter.watched = on

    def enter(self) -> bool:
        """Whether this call is the re-entry of a watched call (run it), not a new call (watch it).

        ``call`` runs the wrapper again inside a fresh record; the wrapper
        asks here first, and only the first ask for that record is the
        re-entry: a decorated call made inside the function gets a record of
        its own.
        """
        pending = PENDING.get()
        if pending is None or pending.entered:
            return False
        pending.entered = True
        return True

    def call(self, wrapper: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Run ``wrapper`` inside a record of its own, then hand the record to the hooks.

        The hooks are read again here: one may have been removed since the
        caller tested ``on``.
        """
        opened = self._open(args, kwargs)
        try:
            value = wrapper(*args, **kwargs)
        except BaseException:
            self._close(opened, raised=True)
            raise
        self._close(opened, raised=False)
        return value

    async def acall(self, wrapper: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> Any:
        """``call`` for an async function: the same, awaited."""
        opened = self._open(args, kwargs)
        try:
            value = await wrapper(*args, **kwargs)
        except BaseException:
            self._close(opened, raised=True)
            raise
        self._close(opened, raised=False)
        return value

    def _open(self, args: Any, kwargs: Any) -> _Opened:
        hooks = (*self.hooks, *_GLOBAL_HOOKS)
        key = self._key(args, kwargs) if hooks else None
        pending = Pending()
        return _Opened(hooks, key, pending, PENDING.set(pending), time.perf_counter())

    def _close(self, opened: _Opened, *, raised: bool) -> None:
        PENDING.reset(opened.token)
        self._emit(opened.hooks, opened.pending, opened.key, opened.started, raised=raised)

    def noting(self, pending: Pending | None) -> contextlib.AbstractContextManager[object]:
        """Count into ``pending`` while inside (a stream's lookup, run across its items)."""
        if pending is None:
            return contextlib.nullcontext()
        return _noting(pending)

    def emit(self, pending: Pending, key: str | None, started: float, *, raised: bool) -> None:
        """Hand a record filled elsewhere (a stream's) to the hooks."""
        self._emit((*self.hooks, *_GLOBAL_HOOKS), pending, key, started, raised=raised)

    def _key(self, args: Any, kwargs: Any) -> str | None:
        try:
            return self.key(args, kwargs)
        except Exception:  # noqa: BLE001  (the call itself raises it, as it would unwatched)
            return None

    def _emit(
        self,
        hooks: tuple[EventHook, ...],
        pending: Pending,
        key: str | None,
        started: float,
        *,
        raised: bool,
    ) -> None:
        if not hooks or (raised and not pending.decided):
            # It raised before its lookup decided anything (an argument that
            # cannot be keyed, a waiter cancelled or handed another call's
            # exception): it neither ran the function nor was served.
            return
        event = CacheEvent(
            self.name,
            key,
            pending.outcome(),
            pending.tier if pending.hit else None,
            time.perf_counter() - started,
            pending.saved if pending.hit else NOTHING_SAVED,
            raised,
        )
        for hook in hooks:
            _run(hook, event)


@contextlib.contextmanager
def _noting(pending: Pending) -> Iterator[object]:
    token = PENDING.set(pending)
    try:
        yield pending
    finally:
        PENDING.reset(token)


def _run(hook: EventHook, event: CacheEvent) -> None:
    try:
        hook(event)
    except Exception as exc:  # noqa: BLE001  (a hook must not break the call)
        _HOOK_LOG.warning(
            "instructor_cache: an event hook (%r) raised on a call of %s, ignored: %s",
            hook,
            event.function,
            exc,
        )
