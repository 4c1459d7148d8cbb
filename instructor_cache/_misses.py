"""What a decorated call does when the store has no entry: pay once per key, then share.

Single-flight, in two rings. In this process, a call that misses joins the
``Flight`` computing its key (``_flight``) and waits for its result instead
of paying again. Across processes, the leader of a flight also takes the
store's short lock, when the store has one (Redis): a leader that finds
the lock held polls the store for the value, takes the lock over if its
holder died (the lock expires) and computes itself once the wait runs
out. The lock never makes a call fail: without one (no capability, the
store down, its breaker open) the leader computes.

Every wait is bounded by ``single_flight`` seconds, which is also the
lock's expiry: a waiter in this process waits that long for its leader's
call, counted from when the leader began calling the function (so after a
leader took over the lock of a process that died, at most twice that).
Followers decode the text the leader stored, so each gets
its own copy, exactly as a later hit would; a result that was not stored
(``cache_if`` said no, or it does not round-trip) is not shared, and each
follower calls the function itself. A leader's exception reaches every
follower and is not stored. A leader that stops without a result (a
cancelled task) hands the flight to one of its followers, and so does one
that outlasts ``single_flight``: the first follower to give up on it takes
over as a new flight, which the others wait for (once) instead of each
paying.

The sync and async versions are the same steps, side by side: change them
together.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import os
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from instructor_cache._control import ttl_in_force
from instructor_cache._flight import NOTHING, Flight, Flights
from instructor_cache._log import RateLimitedLog
from instructor_cache._memo import MISS, SERVED, Memo, Served
from instructor_cache.backends._compose import GuardedStore

if TYPE_CHECKING:  # loaded by the time an async call runs; not on import
    import asyncio

__all__ = [
    "AsyncMisses",
    "Claim",
    "Settle",
    "Shared",
    "SyncMisses",
    "kept",
    "own_copy",
    "shielded",
]

T = TypeVar("T")

_FIRST_POLL = 0.01
_LONGEST_POLL = 0.25
_WAITED_OUT = (
    "instructor_cache: a call of %s waited %.1f s for the same call elsewhere to finish and now "
    "calls the function itself; raise single_flight= if its calls take longer"
)


class Shared(NamedTuple):
    """What a leader that skipped the store shares: a copy of its result, and what the call
    took and used, which each waiter's hit saved."""

    value: Any
    served: Served


class Claim(NamedTuple):
    """A flight this call leads, and the store's lock if it holds it: released once settled."""

    key: str
    flight: Flight
    token: str
    held: bool


Settle = Callable[[Claim], None]
"""A batch's hand for its leaders' results: it stores and releases them later, in bulk."""


class _Misses:
    """What the two miss paths share: the flights, the policy, nothing that waits.

    ``flights.landings`` is read by a call before its store read and handed
    to ``miss``: see ``Flights``.
    """

    def __init__(
        self, fn: Callable[..., Any], memo: Memo[Any], store: GuardedStore, bound: float | None
    ) -> None:
        self.fn, self.memo, self.store = fn, memo, store
        self.single_flight, self.bound = bound is not None, bound or 0.0
        self.flights = Flights()
        self.locks = store.locks
        self.waited_out = RateLimitedLog()

    def ttl(self) -> float | None:
        """The TTL of a write made now: a ``cache_control`` block's, else the decorator's."""
        return ttl_in_force(self.memo.ttl)

    def served(self, text: str | None) -> Any:
        """The value in a text another call stored, counted as a hit; ``MISS`` if none."""
        return MISS if text is None else self.memo.decode(text)

    def took(self, started: float, served: contextvars.Token[Served | None] | None) -> Served:
        """How long the call took and what it used: the original call's, if a cached layer
        below served a hit (usage ``None``: read it from the result).

        A middle layer passes them on to the layer above it, which called it
        and reads them next: else the top layer of three would store the
        microseconds of the bottom layer's hit.
        """
        took = time.perf_counter() - started
        if served is not None:
            original = SERVED.get()
            SERVED.reset(served)
            if original is not None:
                if self.memo.under_layer:
                    SERVED.set(original)
                return original
        return took, None

    def outcome(self, flight: Flight) -> Any:
        """What a waiter gets from a flight that landed with a result: its copy, or ``MISS``."""
        if isinstance(flight.shared, Shared):  # a leader that skipped the store
            return self.copied(flight.shared)
        return self.served(flight.text)

    def copied(self, shared: Shared) -> Any:
        """A waiter's own copy of a result shared without text, counted as a hit that saved
        what the leader's call took and used (as a hit on the text it would have stored)."""
        self.memo.shared_hit(*shared.served)
        return own_copy(shared.value)

    def share(self, flight: Flight, value: Any, served: Served) -> None:
        """Share a result computed while the store is skipped, with what its call cost.

        A copy: our caller may change its model before a waiter copies it. A
        result ``cache_if`` refuses is not shared, as it would not be stored.
        """
        if self.memo.accepts(value):
            took, usage = served
            flight.shared = Shared(own_copy(value), (took, usage or self.memo.usage_of(value)))
        else:
            flight.shared = NOTHING

    def waited(self) -> None:
        self.waited_out.warning(_WAITED_OUT, self.memo.name, self.bound)

    def left(self, flight: Flight) -> float:
        """How much longer a waiter waits for ``flight``: ``bound`` past its leader's ``since``.

        A leader that waits for another process's lock (its holder may have
        died) and then calls the function starts a new wait for its own
        waiters: else they would all run out while it computes, and pay once
        more each.
        """
        return flight.since + self.bound - time.monotonic()

    @staticmethod
    def failed(flight: Flight, exc: BaseException) -> None:
        """Record why a leader stopped: its followers get an exception, or take over."""
        flight.text, flight.shared = None, NOTHING
        if isinstance(exc, Exception):
            flight.error = exc
        else:  # cancelled, interrupted: no outcome to share
            flight.abandoned = True


class SyncMisses(_Misses):
    def waits(self, flight: Flight) -> bool:
        """Wait for ``flight`` to land; ``False`` if its leader's call ran out of time first."""
        while not flight.wait(max(0.0, self.left(flight))):
            if self.left(flight) <= 0:
                return False
        return True

    def compute(
        self, key: str, call: Callable[..., Any], args: Any, kwargs: Any
    ) -> tuple[Any, str | None]:
        """Pay for one call; return its value and the text to store (``None``: store nothing)."""
        self.memo.missed()
        served = SERVED.set(None) if self.memo.over_layer else None
        started = time.perf_counter()
        try:
            value = call(*args, **kwargs)
        finally:
            took, usage = self.took(started, served)
        self.memo.check_context(key)
        return value, self.memo.encode(value, took, usage)

    def pay(self, key: str, args: Any, kwargs: Any) -> Any:
        """Pay outside a flight: a refresh, invalidation or clear begun meanwhile still
        outdates it, and its older answer is then not stored after them."""
        computing = self.flights.track(key)
        try:
            value, text = self.compute(key, self.fn, args, kwargs)
        finally:
            self.flights.refreshed(key, computing)
        if text is not None and not computing.outdated:
            self.store.set(key, text, self.ttl())
        return value

    def miss(
        self,
        key: str,
        landings: int,
        args: Any,
        kwargs: Any,
        settle: Settle | None = None,
        *,
        offline: bool = False,
    ) -> Any:
        """Pay for a call that missed, or wait for the same call running elsewhere.

        ``settle`` (a batch's) replaces storing the result and releasing the
        claim at once. ``offline``: the store is skipped (its breaker is
        open), so a leader neither reads, locks nor writes it; identical
        calls in this process still pay once between them.
        """
        if not self.single_flight:
            return self.alone(key, args, kwargs, settle)
        flights, gave_up = self.flights, False
        while True:
            flight, leading = flights.join(key)
            if leading:
                claim = Claim(key, flight, "", False)
                return self.lead(claim, landings, args, kwargs, settle, offline=offline)
            if flights.leads(flight):  # our own flight, further up this stack
                return self.pay(key, args, kwargs)
            if not self.waits(flight):
                self.waited()
                fresh = None if gave_up else flights.take_over(key, flight)
                if fresh is not None:
                    claim = Claim(key, fresh, "", False)
                    return self.lead(
                        claim, landings, args, kwargs, settle, took_over=True, offline=offline
                    )
                if gave_up:
                    return self.pay(key, args, kwargs)
                gave_up = True  # another waiter took over: wait for it, once
                continue
            if flight.abandoned:
                landings = flights.landings
                continue
            if flight.error is not None:
                self.memo.missed()
                raise flight.error
            value = self.outcome(flight)
            return self.pay(key, args, kwargs) if value is MISS else value

    def alone(self, key: str, args: Any, kwargs: Any, settle: Settle | None) -> Any:
        """Pay without single-flight (``single_flight=False``)."""
        if settle is None:
            return self.pay(key, args, kwargs)
        claim = Claim(key, Flight(), "", False)
        computing = self.flights.track(key)  # see pay
        try:
            value, claim.flight.text = self.compute(key, self.fn, args, kwargs)
        finally:
            self.flights.refreshed(key, computing)
        claim.flight.outdated = computing.outdated
        settle(claim)
        return value

    def lead(
        self,
        claim: Claim,
        landings: int,
        args: Any,
        kwargs: Any,
        settle: Settle | None,
        *,
        took_over: bool = False,
        offline: bool = False,
    ) -> Any:
        """Compute for the flight, after reading the store again and taking its lock as need be.

        ``took_over``: the caller gave up waiting on a flight that outlasted
        ``single_flight`` and stands in for it. The store is read again, but
        not locked: the call it gave up on may hold that lock. ``offline``:
        see ``miss``.
        """
        key, flight = claim.key, claim.flight
        leading = self.flights.lead(flight)
        try:
            if not offline and (took_over or self.flights.landed_since(key, landings)):
                flight.text = self.store.get(key)
            if flight.text is None and self.locks and not took_over and not offline:
                # Its waiters wait for the wait below too: it may end in a call of ours.
                flight.since = time.monotonic() + self.bound
                claim = claim._replace(token=_token())
                flight.text, held = self.wait_elsewhere(key, claim.token)
                claim = claim._replace(held=held)
            value = self.served(flight.text)
            if value is not MISS:
                self.release(claim)
                return value
            flight.since = time.monotonic()  # its waiters wait for this call from now
            if offline:  # nothing will be stored: no text to make, the value is shared
                self.memo.missed()
                served = SERVED.set(None) if self.memo.over_layer else None
                started = time.perf_counter()
                try:
                    value = self.fn(*args, **kwargs)
                finally:
                    spent = self.took(started, served)
                self.share(flight, value, spent)
            else:
                value, flight.text = self.compute(key, self.fn, args, kwargs)
        except BaseException as exc:
            self.failed(flight, exc)
            self.release(claim)
            raise
        finally:
            self.flights.led(leading)
        if offline:
            self.release(claim)
        elif settle is None:
            self.settle(claim)
        else:
            settle(claim)
        return value

    def settle(self, claim: Claim) -> None:
        try:
            if claim.flight.text is not None and not claim.flight.outdated:
                self.store.set(claim.key, claim.flight.text, self.ttl())
        finally:
            self.release(claim)

    def settle_many(self, claims: list[Claim]) -> None:
        """Store many leaders' results with one bulk write, then release them."""
        try:
            self.store.set_many(_texts(claims), self.ttl())
        finally:
            for claim in claims:
                self.release(claim)

    def release(self, claim: Claim) -> None:
        self.flights.land(claim.key, claim.flight)
        if claim.held:
            self.store.unlock(claim.key, claim.token)

    def wait_elsewhere(self, key: str, token: str) -> tuple[str | None, bool]:
        """Take the store's lock, or wait for the value its holder stores; then read the entry.

        Returns the entry's text (or ``None``) and whether we hold the lock.
        Interrupted (Ctrl-C), it lets the lock go: it may hold it, even if the
        answer never came back, and a lock left held would make every call of
        the key wait ``single_flight`` out. The token makes that safe either way.
        """
        try:
            return self.take_or_wait(key, token)
        except BaseException:  # the guarded store raises nothing else
            self.store.unlock(key, token)
            raise

    def take_or_wait(self, key: str, token: str) -> tuple[str | None, bool]:
        store, bound = self.store, self.bound
        held = store.lock(key, token, bound)
        deadline, delay = time.monotonic() + bound, _FIRST_POLL
        while held is False:
            text = store.recheck(key)
            remaining = deadline - time.monotonic()
            if text is not None or remaining <= 0:
                if text is None:
                    self.waited()
                return text, False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _LONGEST_POLL)
            held = store.lock(key, token, bound)
        # Held: its last holder may have stored the entry just before letting go.
        # None: no lock to be had (the store is down): compute.
        return store.recheck(key) if held else None, bool(held)


class AsyncMisses(_Misses):
    async def awaits(self, flight: Flight) -> bool:
        while not await flight.await_landing(max(0.0, self.left(flight))):
            if self.left(flight) <= 0:
                return False
        return True

    async def compute(
        self, key: str, call: Callable[..., Any], args: Any, kwargs: Any
    ) -> tuple[Any, str | None]:
        self.memo.missed()
        served = SERVED.set(None) if self.memo.over_layer else None
        started = time.perf_counter()
        try:
            value = await call(*args, **kwargs)
        finally:
            took, usage = self.took(started, served)
        self.memo.check_context(key)
        return value, self.memo.encode(value, took, usage)

    async def pay(self, key: str, args: Any, kwargs: Any) -> Any:
        computing = self.flights.track(key)  # see SyncMisses.pay
        try:
            value, text = await self.compute(key, self.fn, args, kwargs)
        finally:
            self.flights.refreshed(key, computing)
        if text is not None and not computing.outdated:
            await shielded(functools.partial(self.store.aset, key, text, self.ttl()))
        return value

    async def miss(
        self,
        key: str,
        landings: int,
        args: Any,
        kwargs: Any,
        settle: Settle | None = None,
        *,
        offline: bool = False,
    ) -> Any:
        if not self.single_flight:
            return await self.alone(key, args, kwargs, settle)
        flights, gave_up = self.flights, False
        while True:
            flight, leading = flights.join(key)
            if leading:
                claim = Claim(key, flight, "", False)
                return await self.lead(claim, landings, args, kwargs, settle, offline=offline)
            if flights.leads(flight):
                return await self.pay(key, args, kwargs)
            if not await self.awaits(flight):
                self.waited()
                fresh = None if gave_up else flights.take_over(key, flight)
                if fresh is not None:
                    claim = Claim(key, fresh, "", False)
                    return await self.lead(
                        claim, landings, args, kwargs, settle, took_over=True, offline=offline
                    )
                if gave_up:
                    return await self.pay(key, args, kwargs)
                gave_up = True
                continue
            if flight.abandoned:
                landings = flights.landings
                continue
            if flight.error is not None:
                self.memo.missed()
                raise flight.error
            value = self.outcome(flight)
            return await self.pay(key, args, kwargs) if value is MISS else value

    async def alone(self, key: str, args: Any, kwargs: Any, settle: Settle | None) -> Any:
        if settle is None:
            return await self.pay(key, args, kwargs)
        claim = Claim(key, Flight(), "", False)
        computing = self.flights.track(key)  # see SyncMisses.pay
        try:
            value, claim.flight.text = await self.compute(key, self.fn, args, kwargs)
        finally:
            self.flights.refreshed(key, computing)
        claim.flight.outdated = computing.outdated
        settle(claim)
        return value

    async def lead(
        self,
        claim: Claim,
        landings: int,
        args: Any,
        kwargs: Any,
        settle: Settle | None,
        *,
        took_over: bool = False,
        offline: bool = False,
    ) -> Any:
        key, flight = claim.key, claim.flight
        leading = self.flights.lead(flight)
        try:
            if not offline and (took_over or self.flights.landed_since(key, landings)):
                flight.text = await self.store.aget(key)
            if flight.text is None and self.locks and not took_over and not offline:
                flight.since = time.monotonic() + self.bound
                claim = claim._replace(token=_token())
                flight.text, held = await self.wait_elsewhere(key, claim.token)
                claim = claim._replace(held=held)
            value = self.served(flight.text)
            if value is not MISS:
                await self.release(claim)
                return value
            flight.since = time.monotonic()
            if offline:
                self.memo.missed()
                served = SERVED.set(None) if self.memo.over_layer else None
                started = time.perf_counter()
                try:
                    value = await self.fn(*args, **kwargs)
                finally:
                    spent = self.took(started, served)
                self.share(flight, value, spent)
            else:
                value, flight.text = await self.compute(key, self.fn, args, kwargs)
        except BaseException as exc:
            self.failed(flight, exc)
            await self.release(claim)
            raise
        finally:
            self.flights.led(leading)
        if offline:
            await self.release(claim)
        elif settle is None:
            await self.settle(claim)
        else:
            settle(claim)
        return value

    async def settle(self, claim: Claim) -> None:
        """Store the result and release the claim, even if our caller gives up meanwhile.

        The provider has answered: a caller cancelled now (a timeout) must
        not lose the paid result, so the write goes on in a task of its own.
        """
        await shielded(functools.partial(self.store_and_release, claim))

    async def store_and_release(self, claim: Claim) -> None:
        try:
            if claim.flight.text is not None and not claim.flight.outdated:
                await self.store.aset(claim.key, claim.flight.text, self.ttl())
        finally:
            await self.release(claim)

    async def settle_many(self, claims: list[Claim]) -> None:
        try:
            await self.store.aset_many(_texts(claims), self.ttl())
        finally:
            for claim in claims:
                await self.release(claim)

    async def release(self, claim: Claim) -> None:
        """Land the flight and let the lock go, even if our caller is cancelled (again) meanwhile.

        An anyio cancel scope cancels at every await until it exits: an
        unshielded unlock in a cancelled leader's cleanup would be cancelled
        too, and the lock left held would make every call of the key, in
        every process, wait ``single_flight`` out.
        """
        self.flights.land(claim.key, claim.flight)
        if claim.held:
            await shielded(functools.partial(self.store.aunlock, claim.key, claim.token))

    async def wait_elsewhere(self, key: str, token: str) -> tuple[str | None, bool]:
        try:
            return await self.take_or_wait(key, token)
        except BaseException:  # cancelled: let the lock go, shielded (see release)
            await shielded(functools.partial(self.store.aunlock, key, token))
            raise

    async def take_or_wait(self, key: str, token: str) -> tuple[str | None, bool]:
        store, bound = self.store, self.bound
        held = await store.alock(key, token, bound)
        deadline, delay = time.monotonic() + bound, _FIRST_POLL
        while held is False:
            text = await store.arecheck(key)
            remaining = deadline - time.monotonic()
            if text is not None or remaining <= 0:
                if text is None:
                    self.waited()
                return text, False
            await _sleep(min(delay, remaining))
            delay = min(delay * 2, _LONGEST_POLL)
            held = await store.alock(key, token, bound)
        return await store.arecheck(key) if held else None, bool(held)


_KEPT: set[asyncio.Task[Any]] = set()


Work = Callable[[], Coroutine[Any, Any, T]]
"""Paid-for work (a write, a release), started anew by calling it: see ``kept``."""


def kept(work: Work[T]) -> asyncio.Task[T]:
    """``work()`` as a task that goes on if whoever awaits it is cancelled.

    The loop holds tasks weakly: this holds them until they finish. No
    caller cancels such a task (they await it through a shield): only the
    loop's shutdown does, as ``asyncio.run`` cancels every task left when
    its main coroutine returns, and then waits for them. The work is then
    run once more, to its end: else a paid result whose caller had given up
    on it would be lost with the program's last step. (It is idempotent: a
    write, a release by token.)
    """
    import asyncio  # noqa: PLC0415  (loaded already: a loop is running; not at import)

    task = asyncio.ensure_future(_to_its_end(work))
    _KEPT.add(task)
    task.add_done_callback(_KEPT.discard)
    return task


async def _to_its_end(work: Work[T]) -> T:
    import asyncio  # noqa: PLC0415  (loaded already: a loop is running; not at import)

    try:
        return await work()
    except asyncio.CancelledError:
        return await work()


async def shielded(work: Work[T]) -> T:
    """Await ``work()``, which goes on to its end if the caller is cancelled meanwhile."""
    import asyncio  # noqa: PLC0415  (loaded already: a loop is running; not at import)

    return await asyncio.shield(kept(work))


def _texts(claims: list[Claim]) -> dict[str, str]:
    return {
        c.key: c.flight.text for c in claims if c.flight.text is not None and not c.flight.outdated
    }


def own_copy(value: Any) -> Any:
    """A deep copy, for a caller that gets a result another call paid for; the value itself
    if it refuses to be copied."""
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001  (an object that refuses to be copied is shared)
        return value


def _token() -> str:
    """An owner token for the store's lock (``secrets.token_hex``, without importing hashlib)."""
    return os.urandom(16).hex()


async def _sleep(seconds: float) -> None:
    import asyncio  # noqa: PLC0415  (loaded already: a loop is running; not at import)

    await asyncio.sleep(seconds)
