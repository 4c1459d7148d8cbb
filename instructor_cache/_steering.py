"""A call under ``cache_control``: its mode's steps, on the decorator's store or another.

The drivers take this path only when a control applies (``_control.steer``);
otherwise a call never comes here. One ``Steered`` exists per (function,
store): the decorator's own shares the driver's single-flight table, and a
store a block routes calls to is composed and guarded once, when first used,
then kept (``Steering``), its failures counted into the function's figures.

Modes, for a call: ``off`` calls the function (no read, no write, counted as
a bypass); ``read-only`` reads and, on a miss, pays without storing nor
joining a flight (nor deleting an entry that does not decode: the store
may be a committed fixture directory, and replay leaves it alone too);
``write-only`` is a ``refresh``: it pays, never joins another call's
flight (it is asked for a new answer, not the one an earlier call is
computing), outdates that flight so that its older answer is not
stored over this one, and stores; ``replay`` reads and, on a miss, raises
``CacheMissError`` without leading a flight; ``normal`` (a store routed to)
is the usual path. Over another cached layer, a ``replay`` miss asks the
layer below (under the same mode), which raises if it misses too.

The sync and async classes are the same steps, side by side: change them
together. A stream (``_streams``) takes its ``StreamPlan`` from here, when
it is made.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from instructor_cache._control import (
    SWITCH,
    UNSET,
    Control,
    Mode,
    blocks_here,
    current,
    mode_of,
    replay_missed,
)
from instructor_cache._descriptions import describing
from instructor_cache._events import note_bypass
from instructor_cache._keys import KeyBuildFunction
from instructor_cache._memo import MISS, Memo
from instructor_cache._misses import AsyncMisses, SyncMisses, shielded
from instructor_cache.backends._compose import GuardedStore
from instructor_cache.backends._contract import DescribesCalls, Store
from instructor_cache.errors import CacheMissError

__all__ = [
    "AsyncSteered",
    "Steering",
    "StreamPlan",
    "SyncSteered",
    "replay_miss",
    "stream_missed",
    "stream_plan",
    "ttl_of",
]

S = TypeVar("S")
_REPR_LIMIT = 200
_ARGUMENTS_LIMIT = 600
_ROUTES = 64  # other stores a function keeps routes to (see Steering)


class Steering(Generic[S]):
    """What a control routes one function's calls to: its own ``S``, or one per other store.

    A route to another store is kept while a call uses it (held weakly in
    ``_live``: a running call, a waiter of its flight and a stream being
    recorded hold it) and while it is among the ``_ROUTES`` used last
    (``_recent``). So a store made per request and routed to once is let go
    with its connections, and a store in use always gets the same route:
    one flights table, in which a refresh outdates the call still computing.
    """

    def __init__(self, backend: Store, own: S, make: Callable[[Store], S]) -> None:
        self.backend, self.own, self._make = backend, own, make
        # Keyed by identity: a route holds its store (see to), so its id is not reused while kept.
        self._live: weakref.WeakValueDictionary[int, S] = weakref.WeakValueDictionary()
        self._recent: OrderedDict[int, S] = OrderedDict()
        self._lock = threading.Lock()

    def to(self, control: Control | None) -> S:
        store = None if control is None else control.store
        if store is None or store is self.backend:
            return self.own
        key = id(store)
        with self._lock:
            route = self._recent.get(key)
            if route is not None:
                self._recent.move_to_end(key)
                return route
            route = self._live.get(key)
            if route is None:
                route = self._live[key] = self._make(store)
                # The route holds its store, so that the store's id, its key here, is not
                # another's while the route is kept: a route to a TieredCache holds only its tiers.
                weakref.finalize(route, _let_go, store).atexit = False
            self._recent[key] = route
            if len(self._recent) > _ROUTES:
                self._recent.popitem(last=False)
            return route


def _let_go(store: Store) -> None:
    """What happens to a route's store when the route goes: nothing, it is no longer held."""


def key_builder(memo: Memo[Any], routed_to: Store | None) -> KeyBuildFunction:
    """How calls routed to another store build their keys: telling it what each stands for if
    it writes that down for people (a ``FixtureStore`` a test session routes every function
    to). The function's own store was told when decorating, through ``memo.key.build``."""
    if isinstance(routed_to, DescribesCalls):
        return describing(memo.key, routed_to)
    return memo.key.build


def replay_miss(memo: Memo[Any], key: str, args: Any, kwargs: Any) -> CacheMissError:
    """The error of a ``replay`` call that found nothing: what was called, under which key.

    The call is shown by what its key encodes, never an argument left out with
    ``ignore=`` (an API key, a client): a test runner prints this message to a
    CI log, which may be public.
    """
    name = memo.name
    arguments = _shown(memo, args, kwargs)
    if len(arguments) > _ARGUMENTS_LIMIT:
        arguments = arguments[:_ARGUMENTS_LIMIT] + "..."
    error = CacheMissError(
        f"{name}({arguments}) is not cached (key {key}), and the cache is in replay mode, so the "
        "function was not called. Record it first: run this call with the cache in normal or "
        "write-only mode",
        function=name,
        key=key,
    )
    return replay_missed(error)  # seen by a test runner even if the caller's code catches it


def _shown(memo: Memo[Any], args: Any, kwargs: Any) -> str:
    try:
        keyed = memo.key.arguments(args, kwargs)
    except Exception:  # noqa: BLE001  (a key function may raise anything: the key still names it)
        keyed = None
    if keyed is None:  # not known by name, so which are ignored is not known: none shown
        return "..."
    # With key=, what the key function returned, under "key=".
    return ", ".join(
        f"{name}{_short(value)}" if name.endswith("=") else f"{name}={_short(value)}"
        for name, value in keyed.items()
    )


def _short(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001  (a broken __repr__ must not hide the miss)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT] + "..."


def ttl_of(control: Control | None, default: float | None) -> float | None:
    """The TTL of a write made under ``control``, captured when its call was made."""
    if control is None or control.ttl is UNSET:
        return default
    return control.ttl


class SyncSteered:
    """One sync function's calls under a control, on one store."""

    def __init__(
        self,
        fn: Callable[..., Any],
        memo: Memo[Any],
        store: GuardedStore,
        misses: SyncMisses,
        routed_to: Store | None = None,
    ) -> None:
        self.fn, self.memo, self.store, self.misses = fn, memo, store, misses
        self.make_key = key_builder(memo, routed_to)
        # Over another cached layer, a refresh must reach the function through it.
        self.call_fresh = getattr(fn, "refresh", fn)

    def call(self, mode: Mode, args: Any, kwargs: Any) -> Any:
        memo, store = self.memo, self.store
        if mode == "off":
            note_bypass()
            memo.missed()
            return self.fn(*args, **kwargs)
        key = self.make_key(args, kwargs)
        if mode == "write-only":
            return self.refresh(key, args, kwargs)
        landings = self.misses.flights.landings
        offline = bool(store.gate.open_until) and store.bypassing()
        if offline:
            note_bypass()
        else:
            text = store.get(key)
            if text is not None:
                value = memo.decode(text)
                if value is not MISS:
                    return value
                if mode == "normal":  # replay and read-only leave the store as it is
                    store.delete(key)  # it did not decode
        if mode == "normal":
            return self.misses.miss(key, landings, args, kwargs, offline=offline)
        return self.pay(mode, key, args, kwargs)

    def pay(self, mode: Mode, key: str, args: Any, kwargs: Any) -> Any:
        """A miss in a mode other than ``normal`` (a batch's too): raise, call, or refresh."""
        if mode == "replay" and not self.memo.over_layer:
            self.memo.missed()
            raise replay_miss(self.memo, key, args, kwargs)
        if mode == "write-only":
            return self.refresh(key, args, kwargs)
        if mode == "off":
            self.memo.missed()
            return self.fn(*args, **kwargs)
        return self.misses.compute(key, self.fn, args, kwargs)[0]  # read-only: nothing stored

    def refresh(self, key: str, args: Any, kwargs: Any) -> Any:
        flights = self.misses.flights
        refreshing = flights.refresh(key)  # a call computing it now must not store over ours
        try:
            value, text = self.misses.compute(key, self.call_fresh, args, kwargs)
        finally:
            flights.refreshed(key, refreshing)
        if refreshing.outdated:  # what the entry holds now was written after us: newer
            return value
        if text is not None:
            self.store.set(key, text, self.misses.ttl(), explicit=True)
        else:  # a refresh that stores nothing must not leave the old entry
            self.store.delete(key, explicit=True)
        flights.superseded(key)
        return value


class AsyncSteered:
    """One async function's calls under a control, on one store."""

    def __init__(
        self,
        fn: Callable[..., Any],
        memo: Memo[Any],
        store: GuardedStore,
        misses: AsyncMisses,
        routed_to: Store | None = None,
    ) -> None:
        self.fn, self.memo, self.store, self.misses = fn, memo, store, misses
        self.make_key = key_builder(memo, routed_to)
        self.call_fresh = getattr(fn, "refresh", fn)

    async def call(self, mode: Mode, args: Any, kwargs: Any) -> Any:
        memo, store = self.memo, self.store
        if mode == "off":
            note_bypass()
            memo.missed()
            return await self.fn(*args, **kwargs)
        key = self.make_key(args, kwargs)
        if mode == "write-only":
            return await self.refresh(key, args, kwargs)
        landings = self.misses.flights.landings
        offline = bool(store.gate.open_until) and store.bypassing()
        if offline:
            note_bypass()
        else:
            text = await store.aget(key)
            if text is not None:
                value = memo.decode(text)
                if value is not MISS:
                    return value
                if mode == "normal":  # replay and read-only leave the store as it is
                    await store.adelete(key)  # it did not decode
        if mode == "normal":
            return await self.misses.miss(key, landings, args, kwargs, offline=offline)
        return await self.pay(mode, key, args, kwargs)

    async def pay(self, mode: Mode, key: str, args: Any, kwargs: Any) -> Any:
        if mode == "replay" and not self.memo.over_layer:
            self.memo.missed()
            raise replay_miss(self.memo, key, args, kwargs)
        if mode == "write-only":
            return await self.refresh(key, args, kwargs)
        if mode == "off":
            self.memo.missed()
            return await self.fn(*args, **kwargs)
        return (await self.misses.compute(key, self.fn, args, kwargs))[0]

    async def refresh(self, key: str, args: Any, kwargs: Any) -> Any:
        flights = self.misses.flights
        refreshing = flights.refresh(key)
        try:
            value, text = await self.misses.compute(key, self.call_fresh, args, kwargs)
        finally:
            flights.refreshed(key, refreshing)
        if refreshing.outdated:
            return value
        # Paid for: the write goes on even if our caller gives up meanwhile.
        if text is not None:
            ttl = self.misses.ttl()
            await shielded(functools.partial(self.store.aset, key, text, ttl, explicit=True))
        else:  # a refresh that stores nothing must not leave the old entry
            await shielded(functools.partial(self.store.adelete, key, explicit=True))
        flights.superseded(key)
        return value


class StreamPlan(NamedTuple):
    """What a stream does, decided when it is made (a ``cache_control`` block then in force).

    Its items are read later, maybe after the block has closed: the control
    the call was made under is the one that applies.
    """

    mode: Mode
    store: GuardedStore
    ttl: float | None
    fresh: bool  # call and store, reading nothing: a refresh, or write-only
    make_key: KeyBuildFunction  # telling a store routed to what each key stands for
    blocks: Control | None  # the blocks it was made in: the layer below is made in them too

    @property
    def stores(self) -> bool:
        """Whether it stores what it recorded (a ``replay`` over a layer is served below)."""
        return self.mode in ("normal", "write-only")


def stream_plan(memo: Memo[Any], steering: Steering[GuardedStore], refresh: bool) -> StreamPlan:
    control = current() if SWITCH.on else None
    mode: Mode = "write-only" if refresh else "normal" if control is None else mode_of(control)
    if control is None:
        return StreamPlan(mode, steering.own, memo.ttl, refresh, memo.key.build, blocks_here())
    store = steering.to(control)
    routed_to = None if store is steering.own else control.store
    ttl = ttl_of(control, memo.ttl)
    make_key = key_builder(memo, routed_to)
    return StreamPlan(mode, store, ttl, mode == "write-only", make_key, blocks_here())


def stream_missed(memo: Memo[Any], plan: StreamPlan, key: str, args: Any, kwargs: Any) -> None:
    """Count a stream's miss; in ``replay`` (not over a cached layer) it is an error."""
    memo.missed()
    if plan.mode == "replay" and not memo.over_layer:
        raise replay_miss(memo, key, args, kwargs)
