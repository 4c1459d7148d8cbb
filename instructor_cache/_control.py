"""Per-call control: a mode, a TTL and a store for the decorated calls made inside a block.

``cache_control`` sets them in a context variable, so each thread and each
asyncio task has its own: a mode set in one task never reaches a task that
runs beside it (a task started inside the block copies it, as it copies
every context variable). Nested blocks merge field by field, the innermost
winning. Under them lies the process-wide default, read once, when this
module is imported, from ``INSTRUCTOR_CACHE_MODE``; a value it cannot mean
makes every decorated call raise ``ConfigurationError`` naming the variable,
rather than run in a mode nobody asked for. ``set_default_control`` replaces
that default for the process (a pytest plugin's session).

Unused, it costs a decorated call one attribute test (``SWITCH.on``, as
``Watch.on`` in ``_events``): the flag goes up when a default is set or the
first block opens, and then stays up for the process. A task created
inside a block, or any context copied there, may run after the block has
closed and must still follow it, so there is no moment at which the flag
could safely go down again; from then on a call pays one context-variable
read more.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import inspect
import os
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Literal, NamedTuple, TypeVar, get_args

from instructor_cache._ttl import TTL, to_seconds
from instructor_cache.backends._contract import Store, check_store
from instructor_cache.errors import CacheMissError, ConfigurationError

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "SWITCH",
    "Control",
    "DefaultState",
    "Mode",
    "blocks_here",
    "cache_control",
    "replace_default_control",
    "replay_missed",
    "reset_own",
    "restore_default_control",
    "set_default_control",
    "steer",
    "ttl_in_force",
    "uncached_of",
    "watch_replay_misses",
    "within",
]

T = TypeVar("T")
Mode = Literal["off", "read-only", "write-only", "replay", "normal"]
MODES: tuple[Mode, ...] = get_args(Mode)
ENVIRONMENT_VARIABLE = "INSTRUCTOR_CACHE_MODE"


class Unset(enum.Enum):
    """The type of ``UNSET``: a field a block leaves to the blocks around it (``None`` is a TTL)."""

    UNSET = "UNSET"


UNSET = Unset.UNSET


class Control(NamedTuple):
    """What a block sets; ``None`` (mode, store) and ``UNSET`` (ttl) leave a field as it was."""

    mode: Mode | None = None
    ttl: float | Unset | None = UNSET
    store: Store | None = None

    def over(self, outer: Control | None) -> Control:
        """This block's fields, and ``outer``'s where this one sets none."""
        if outer is None:
            return self
        return Control(
            outer.mode if self.mode is None else self.mode,
            outer.ttl if self.ttl is UNSET else self.ttl,
            outer.store if self.store is None else self.store,
        )


class _Switch:
    """Up while any control may apply: read first, and only, by every decorated call."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


SWITCH = _Switch()
_CONTROL: contextvars.ContextVar[Control | None] = contextvars.ContextVar(
    "instructor_cache_control", default=None
)
_LOCK = threading.Lock()
_armed = False  # a block has been opened: see the module docstring


def _mode(value: object, what: str) -> Mode:
    for mode in MODES:
        if value == mode:
            return mode
    raise ConfigurationError(f"{what} must be one of {', '.join(MODES)}; got {value!r}")


def _from_environment() -> tuple[Control | None, str | None]:
    """The default the environment sets, or the error every call raises if it sets nonsense."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not value:
        return None, None
    try:
        mode = _mode(value.lower(), f"the environment variable {ENVIRONMENT_VARIABLE}")
    except ConfigurationError as exc:
        return None, f"{exc}. Fix or unset it"
    return (None if mode == "normal" else Control(mode)), None


_default, _bad_environment = _from_environment()


def _rearm() -> None:
    SWITCH.on = _armed or _default is not None or _bad_environment is not None


_rearm()


def set_default_control(
    mode: Mode | None = None, *, ttl: TTL | Unset = UNSET, store: Store | None = None
) -> Control | None:
    """Set the process-wide control under every block (``mode=None`` and no field: none).

    Returns the one it replaces, to put back later. It replaces what
    ``INSTRUCTOR_CACHE_MODE`` set, and clears that variable's error.
    """
    return replace_default_control(mode, ttl=ttl, store=store).control


class DefaultState(NamedTuple):
    """All that lies under the blocks: the default control, or the environment's error."""

    control: Control | None
    error: str | None


def replace_default_control(
    mode: Mode | None = None, *, ttl: TTL | Unset = UNSET, store: Store | None = None
) -> DefaultState:
    """``set_default_control``, returning all it replaces for ``restore_default_control``: a
    nonsense ``INSTRUCTOR_CACHE_MODE`` must fail the calls again once a test's routing ends."""
    global _default, _bad_environment  # noqa: PLW0603  (one value, replaced whole under the lock)
    control = _control(mode, ttl, store)
    with _LOCK:
        previous = DefaultState(_default, _bad_environment)
        _default = None if control == Control() else control
        _bad_environment = None
        _rearm()
    return previous


def restore_default_control(state: DefaultState) -> None:
    """Put back what ``replace_default_control`` replaced."""
    global _default, _bad_environment
    with _LOCK:
        _default, _bad_environment = state
        _rearm()


def _control(mode: Mode | None, ttl: TTL | Unset, store: Store | None) -> Control:
    checked = None if mode is None else _mode(mode, "mode")
    if store is not None:
        check_store(store)
    return Control(checked, UNSET if ttl is UNSET else to_seconds(ttl), store)


class cache_control:  # noqa: N801  (a context manager used like a function, as contextlib's)
    """Set the mode, TTL or store of the decorated calls made inside this block.

    ``mode``: ``"off"`` (call the function; no read, no write), ``"read-only"``
    (serve hits, store nothing), ``"write-only"`` (call and store, never
    serve: a refresh), ``"replay"`` (serve hits; a miss raises
    ``CacheMissError`` and never calls the function) or ``"normal"``.
    ``ttl``: the TTL of the entries written inside (``None``: no expiry),
    instead of the decorator's. ``store``: read and write this store
    instead of the decorator's. Blocks nest; the innermost sets win, field by
    field. Calls made in this thread or task, and in tasks and batches it
    starts; a thread started inside does not inherit it.
    """

    __slots__ = ("_control", "_tokens")

    def __init__(
        self, mode: Mode | None = None, *, ttl: TTL | Unset = UNSET, store: Store | None = None
    ) -> None:
        self._control = _control(mode, ttl, store)
        self._tokens: list[contextvars.Token[Control | None]] = []

    def __enter__(self) -> Control:
        global _armed  # noqa: PLW0603  (set once, under the lock)
        if not _armed:
            with _LOCK:
                _armed = True
                _rearm()
        control = self._control.over(_CONTROL.get())
        self._tokens.append(_CONTROL.set(control))
        return control

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        reset_own(_CONTROL, self._tokens)


def reset_own(variable: contextvars.ContextVar[T], tokens: list[contextvars.Token[T]]) -> None:
    """Reset ``variable`` with the newest of ``tokens`` set in the running context, and drop it.

    One block object may be open in several tasks or threads at once (one
    made at module level): each leaves with its own token, not the newest
    of all, which another context set and only that context can reset.
    """
    for token in reversed(list(tokens)):
        try:
            variable.reset(token)
        except ValueError:  # set in another context: it is that one's to reset
            continue
        tokens.remove(token)
        return


def current() -> Control | None:
    """The control in force for a call made here: its blocks' over the process default."""
    if _bad_environment is not None:
        raise ConfigurationError(_bad_environment)
    inner = _CONTROL.get()
    return _default if inner is None else inner.over(_default)


def blocks_here() -> Control | None:
    """The blocks in force here, without the process default: what a stream made here carries."""
    return _CONTROL.get()


@contextlib.contextmanager
def within(blocks: Control | None) -> Iterator[None]:
    """Run as inside ``blocks`` (from ``blocks_here``): a stream's layer below, made only once
    the stream is read, must follow the block the stream was made in, as the stream does."""
    token = _CONTROL.set(blocks)
    try:
        yield
    finally:
        _CONTROL.reset(token)


def steer() -> Control | None:
    """The control a call must follow, or ``None`` when it runs as if there were none.

    A TTL alone is no reason to leave the usual path: the writes read it
    (``ttl_in_force``).
    """
    # With no default (the usual case), the blocks' control alone: one read.
    control = _CONTROL.get() if _default is None and _bad_environment is None else current()
    if control is None or (control.mode in (None, "normal") and control.store is None):
        return None
    return control


def mode_of(control: Control) -> Mode:
    return "normal" if control.mode is None else control.mode


def ttl_in_force(default: float | None) -> float | None:
    """The TTL a write made here applies: a block's, else the decorator's ``default``."""
    if not SWITCH.on:
        return default
    control = current()
    if control is None or control.ttl is UNSET:
        return default
    return control.ttl


_miss_watchers: tuple[Callable[[CacheMissError], object], ...] = ()


def watch_replay_misses(watcher: Callable[[CacheMissError], object]) -> Callable[[], None]:
    """Call ``watcher`` with every replay miss from now on; return what stops it.

    It sees a miss even when the caller's code catches it (``except
    Exception`` around an LLM call is common): a test runner replaying
    recordings fails the test all the same.
    """
    global _miss_watchers  # noqa: PLW0603  (one tuple, replaced whole under the lock)
    with _LOCK:
        _miss_watchers = (*_miss_watchers, watcher)

    def stop() -> None:
        global _miss_watchers  # noqa: PLW0603
        with _LOCK:
            _miss_watchers = tuple(known for known in _miss_watchers if known is not watcher)

    return stop


def replay_missed(error: CacheMissError) -> CacheMissError:
    """Tell the watchers of replay misses about ``error``; return it, to raise."""
    for watcher in _miss_watchers:
        watcher(error)
    return error


def uncached_of(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """One call that neither reads nor writes the cache: ``cache_control("off")`` around it.

    A stream's control is read when the stream is made, so the sync form
    serves stream functions of both kinds.
    """
    if inspect.iscoroutinefunction(wrapper):

        async def auncached(*args: Any, **kwargs: Any) -> Any:
            with cache_control("off"):
                return await wrapper(*args, **kwargs)

        return auncached

    def uncached(*args: Any, **kwargs: Any) -> Any:
        with cache_control("off"):
            return wrapper(*args, **kwargs)

    return uncached
