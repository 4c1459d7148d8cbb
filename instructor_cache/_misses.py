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
lock's expiry. Followers decode the text the leader stored, so each gets
its own copy, exactly as a later hit would; a result that was not stored
(``cache_if`` said no, or it does not round-trip) is not shared, and each
follower calls the function itself. A leader's exception reaches every
follower and is not stored. A leader that stops without a result (a
cancelled task) hands the flight to one of its followers.

The sync and async versions are the same steps, side by side: change them
together.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from instructor_cache._flight import Flight, Flights
from instructor_cache._log import RateLimitedLog
from instructor_cache._memo import MISS, Memo
from instructor_cache.backends._compose import GuardedStore

__all__ = ["AsyncMisses", "Claim", "Settle", "SyncMisses"]

_FIRST_POLL = 0.01
_LONGEST_POLL = 0.25
_WAITED_OUT = (
    "instructor_cache: a call of %s waited %.1f s for the same call elsewhere to finish and now "
    "calls the function itself; raise single_flight= if its calls take longer"
)


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

    def served(self, text: str | None) -> Any:
        """The value in a text another call stored, counted as a hit; ``MISS`` if none."""
        return MISS if text is None else self.memo.decode(text)

    def waited(self) -> None:
        self.waited_out.warning(_WAITED_OUT, self.memo.name, self.bound)

    @staticmethod
    def failed(flight: Flight, exc: BaseException) -> None:
        """Record why a leader stopped: its followers get an exception, or take over."""
        flight.text = None
        if isinstance(exc, Exception):
            flight.error = exc
        else:  # cancelled, interrupted: no outcome to share
            flight.abandoned = True


class SyncMisses(_Misses):
    def compute(
        self, key: str, call: Callable[..., Any], args: Any, kwargs: Any
    ) -> tuple[Any, str | None]:
        """Pay for one call; return its value and the text to store (``None``: store nothing)."""
        self.memo.missed()
        started = time.perf_counter()
        value = call(*args, **kwargs)
        self.memo.check_context(key)
        return value, self.memo.encode(value, time.perf_counter() - started)

    def pay(self, key: str, args: Any, kwargs: Any) -> Any:
        value, text = self.compute(key, self.fn, args, kwargs)
        if text is not None:
            self.store.set(key, text, self.memo.ttl)
        return value

    def miss(
        self, key: str, landings: int, args: Any, kwargs: Any, settle: Settle | None = None
    ) -> Any:
        """Pay for a call that missed, or wait for the same call running elsewhere.

        ``settle`` (a batch's) replaces storing the result and releasing the
        claim at once.
        """
        bound, flights = self.bound, self.flights
        if not self.single_flight:
            if settle is None:
                return self.pay(key, args, kwargs)
            claim = Claim(key, Flight(), "", False)
            value, claim.flight.text = self.compute(key, self.fn, args, kwargs)
            settle(claim)
            return value
        while True:
            flight, leading = flights.join(key)
            if leading:
                return self.lead(Claim(key, flight, "", False), landings, args, kwargs, settle)
            if flights.leads(key):  # our own flight, further up this stack
                return self.pay(key, args, kwargs)
            if not flight.wait(bound):
                self.waited()
                return self.pay(key, args, kwargs)
            if flight.abandoned:
                landings = flights.landings
                continue
            if flight.error is not None:
                self.memo.missed()
                raise flight.error
            value = self.served(flight.text)
            return self.pay(key, args, kwargs) if value is MISS else value

    def lead(
        self, claim: Claim, landings: int, args: Any, kwargs: Any, settle: Settle | None
    ) -> Any:
        key, flight = claim.key, claim.flight
        leading = self.flights.lead(key)
        try:
            if self.flights.landed_since(key, landings):  # stored since our read?
                flight.text = self.store.get(key)
            if flight.text is None and self.locks:
                claim = claim._replace(token=_token())
                flight.text, held = self.wait_elsewhere(key, claim.token)
                claim = claim._replace(held=held)
            value = self.served(flight.text)
            if value is not MISS:
                self.release(claim)
                return value
            value, flight.text = self.compute(key, self.fn, args, kwargs)
        except BaseException as exc:
            self.failed(flight, exc)
            self.release(claim)
            raise
        finally:
            self.flights.led(leading)
        if settle is None:
            self.settle(claim)
        else:
            settle(claim)
        return value

    def settle(self, claim: Claim) -> None:
        try:
            if claim.flight.text is not None:
                self.store.set(claim.key, claim.flight.text, self.memo.ttl)
        finally:
            self.release(claim)

    def settle_many(self, claims: list[Claim]) -> None:
        """Store many leaders' results with one bulk write, then release them."""
        try:
            self.store.set_many(_texts(claims), self.memo.ttl)
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
        """
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
    async def compute(
        self, key: str, call: Callable[..., Any], args: Any, kwargs: Any
    ) -> tuple[Any, str | None]:
        self.memo.missed()
        started = time.perf_counter()
        value = await call(*args, **kwargs)
        self.memo.check_context(key)
        return value, self.memo.encode(value, time.perf_counter() - started)

    async def pay(self, key: str, args: Any, kwargs: Any) -> Any:
        value, text = await self.compute(key, self.fn, args, kwargs)
        if text is not None:
            await self.store.aset(key, text, self.memo.ttl)
        return value

    async def miss(
        self, key: str, landings: int, args: Any, kwargs: Any, settle: Settle | None = None
    ) -> Any:
        bound, flights = self.bound, self.flights
        if not self.single_flight:
            if settle is None:
                return await self.pay(key, args, kwargs)
            claim = Claim(key, Flight(), "", False)
            value, claim.flight.text = await self.compute(key, self.fn, args, kwargs)
            settle(claim)
            return value
        while True:
            flight, leading = flights.join(key)
            if leading:
                claim = Claim(key, flight, "", False)
                return await self.lead(claim, landings, args, kwargs, settle)
            if flights.leads(key):
                return await self.pay(key, args, kwargs)
            if not await flight.await_landing(bound):
                self.waited()
                return await self.pay(key, args, kwargs)
            if flight.abandoned:
                landings = flights.landings
                continue
            if flight.error is not None:
                self.memo.missed()
                raise flight.error
            value = self.served(flight.text)
            return await self.pay(key, args, kwargs) if value is MISS else value

    async def lead(
        self, claim: Claim, landings: int, args: Any, kwargs: Any, settle: Settle | None
    ) -> Any:
        key, flight = claim.key, claim.flight
        leading = self.flights.lead(key)
        try:
            if self.flights.landed_since(key, landings):
                flight.text = await self.store.aget(key)
            if flight.text is None and self.locks:
                claim = claim._replace(token=_token())
                flight.text, held = await self.wait_elsewhere(key, claim.token)
                claim = claim._replace(held=held)
            value = self.served(flight.text)
            if value is not MISS:
                await self.release(claim)
                return value
            value, flight.text = await self.compute(key, self.fn, args, kwargs)
        except BaseException as exc:
            self.failed(flight, exc)
            await self.release(claim)
            raise
        finally:
            self.flights.led(leading)
        if settle is None:
            await self.settle(claim)
        else:
            settle(claim)
        return value

    async def settle(self, claim: Claim) -> None:
        try:
            if claim.flight.text is not None:
                await self.store.aset(claim.key, claim.flight.text, self.memo.ttl)
        finally:
            await self.release(claim)

    async def settle_many(self, claims: list[Claim]) -> None:
        try:
            await self.store.aset_many(_texts(claims), self.memo.ttl)
        finally:
            for claim in claims:
                await self.release(claim)

    async def release(self, claim: Claim) -> None:
        self.flights.land(claim.key, claim.flight)
        if claim.held:
            await self.store.aunlock(claim.key, claim.token)

    async def wait_elsewhere(self, key: str, token: str) -> tuple[str | None, bool]:
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


def _texts(claims: list[Claim]) -> dict[str, str]:
    return {c.key: c.flight.text for c in claims if c.flight.text is not None}


def _token() -> str:
    """An owner token for the store's lock (``secrets.token_hex``, without importing hashlib)."""
    return os.urandom(16).hex()


async def _sleep(seconds: float) -> None:
    import asyncio  # noqa: PLC0415  (loaded already: a loop is running; not at import)

    await asyncio.sleep(seconds)
