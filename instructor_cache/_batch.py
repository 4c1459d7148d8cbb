"""A batch's bookkeeping, without I/O: its calls, keys, results, progress and counts.

``_batches`` runs batches (``map``/``amap``, ``warm``/``awarm``) on a
store; this module keeps what one run knows, so that both its runs, sync
and async, share it.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from instructor_cache._memo import MISS, Memo
from instructor_cache._misses import Claim, Settle, own_copy
from instructor_cache.errors import ConfigurationError

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Future

    from instructor_cache._keys import KeyBuildFunction

__all__ = [
    "FLUSH_EVERY",
    "FLUSH_SIZE",
    "Batch",
    "Call",
    "Progress",
    "WarmCounts",
    "calls_of",
    "check_concurrency",
    "undecodable",
]

FLUSH_SIZE = 100
"""A batch stores its new results once this many wait to be stored..."""
FLUSH_EVERY = 0.5
"""...or once the first of them has waited this long (a single call may be waiting on it)."""

Call = tuple[tuple[Any, ...], dict[str, Any]]
Progress = Callable[[int, int], object] | bool | None
"""``progress=``: a callable given (done, total) as items finish, or ``True``: a tqdm bar."""


class WarmCounts(NamedTuple):
    """What ``warm`` did, counted over distinct inputs."""

    hits: int
    """Already cached."""
    computed: int
    """Missing, and computed now (by this batch, or by a call it waited for)."""
    failed: int
    """Missing, and the function raised (or the arguments could not be keyed)."""


def calls_of(
    items: Iterable[Any], single: bool, instance: tuple[Any, ...] = (), keyword: str | None = None
) -> list[Call]:
    """Each item as a call's arguments.

    A function of one parameter takes each item as that argument, whatever
    it is (by name, ``keyword``, when the parameter is keyword-only).
    Otherwise a ``tuple`` (exactly) is the positional arguments, a ``dict``
    (exactly) the keyword arguments, anything else the first argument.
    ``instance`` goes first in every call (a bound method's).
    """
    calls: list[Call] = []
    for item in items:
        if single:
            calls.append(
                ((*instance, item), {}) if keyword is None else (instance, {keyword: item})
            )
        elif type(item) is tuple:
            calls.append(((*instance, *item), {}))
        elif type(item) is dict:
            calls.append((instance, item))
        else:
            calls.append(((*instance, item), {}))
    return calls


class _Failed(NamedTuple):
    error: BaseException


class Batch:
    """One run's bookkeeping, without I/O: positions by key, results, progress."""

    def __init__(
        self,
        memo: Memo[Any],
        calls: list[Call],
        progress: Progress,
        make_key: KeyBuildFunction | None = None,
    ) -> None:
        """``make_key``: how the store the batch runs on wants its keys built (``_steering``)."""
        self.memo, self.calls = memo, calls
        self._make_key = memo.key.build if make_key is None else make_key
        self.results: list[Any] = [None] * len(calls)
        self.positions: dict[str, list[int]] = {}
        self.hits = self.computed = self.failed = 0
        self._tick = _progress(progress, len(calls))
        self._done = 0
        for position, (args, kwargs) in enumerate(calls):
            key = self._key(position, args, kwargs)
            if key is not None:
                self.positions.setdefault(key, []).append(position)
        self.pending: list[Claim] = []
        self.pending_since = 0.0
        self._texts: dict[str, str] = {}  # of results computed for inputs given more than once
        self._pending_lock = threading.Lock()
        self._late: Settle | None = None

    def _key(self, position: int, args: Any, kwargs: Any) -> str | None:
        try:
            return self._make_key(args, kwargs)
        except Exception as exc:  # noqa: BLE001  (UnencodableArgumentError, a bad key=, a TypeError)
            self.fail([position], exc)
            return None

    def found(self, keys: list[str], texts: list[str | None]) -> list[str]:
        """Serve the keys the bulk read found; return those still to compute.

        The hot loop of a cached batch: one decode and one store per input.
        """
        missing: list[str] = []
        decode, positions, results = self.memo.decode, self.positions, self.results
        served = hits = 0
        for key, text in zip(keys, texts, strict=True):
            value = MISS if text is None else decode(text)
            if value is MISS:
                missing.append(key)
                continue
            hits += 1
            where = positions[key]
            results[where[0]] = value
            served += len(where)
            if len(where) > 1:
                self._repeat(where, value, text)
        self.hits += hits
        self.step(served)
        return missing

    def _repeat(self, where: list[int], value: Any, text: str | None) -> None:
        """Each repeat of an input gets its own copy, a hit: decoded again, as a hit would be.

        A value just computed (no text) gets a deep copy.
        """
        for position in where[1:]:
            copied = MISS if text is None else self.memo.decode(text)
            if copied is MISS:
                copied = own_copy(value)
                self.memo.stats.tier_hit()
            self.results[position] = copied

    def share(self, key: str, value: Any) -> None:
        """Give a computed ``value`` to every position of ``key``.

        Its repeats decode the text it was stored as, when there is one: each
        is a hit, and saves what the call cost, as a repeated single call would.
        """
        where = self.positions[key]
        self.results[where[0]] = value
        if len(where) > 1:
            self._repeat(where, value, self._texts.pop(key, None))
        self.step(len(where))

    def fail(self, positions: list[int], exc: BaseException) -> None:
        self.failed += 1
        for position in positions:
            self.results[position] = _Failed(exc)
        self.step(len(positions))

    def finished(self, key: str, future: Future[Any] | asyncio.Future[Any]) -> None:
        if future.cancelled():
            import asyncio  # noqa: PLC0415  (only here, and only once a batch was cancelled)

            self.fail(self.positions[key], asyncio.CancelledError())
            return
        exc = future.exception()
        if exc is not None:
            self.fail(self.positions[key], exc)
        else:
            self.computed += 1
            self.share(key, future.result())

    def settle(self, claim: Claim) -> None:
        text = claim.flight.text
        if text is not None and len(self.positions.get(claim.key, ())) > 1:
            self._texts[claim.key] = text  # for share(): the leader settles before it returns
        with self._pending_lock:
            late = self._late
            if late is None:
                if not self.pending:
                    self.pending_since = time.monotonic()
                self.pending.append(claim)
                return
        late(claim)  # the batch has wound down: no flush will come for it

    def close(self, late: Settle) -> list[Claim]:
        """Wind down: the claims left to settle; one settled from now on goes to ``late``.

        A claim never settled would leave its flight up for good, and every
        later call of its input would wait ``single_flight`` out on it.
        """
        with self._pending_lock:
            self._late = late
            claims, self.pending = self.pending, []
            return claims

    def take_due(self, everything: bool) -> list[Claim]:
        """The claims to settle now: all of them at the end, else once enough have waited."""
        with self._pending_lock:
            due = everything or (
                len(self.pending) >= FLUSH_SIZE
                or time.monotonic() - self.pending_since >= FLUSH_EVERY
            )
            if not due or not self.pending:
                return []
            claims, self.pending = self.pending, []
            return claims

    def step(self, count: int) -> None:
        self._done += count
        if self._tick is not None and count:
            self._tick(self._done, len(self.calls))

    def outcome(self, return_exceptions: bool) -> list[Any]:
        if return_exceptions:
            return [r.error if isinstance(r, _Failed) else r for r in self.results]
        for result in self.results:
            if isinstance(result, _Failed):
                raise result.error
        return self.results

    def counts(self) -> WarmCounts:
        return WarmCounts(self.hits, self.computed, self.failed)


def undecodable(keys: list[str], texts: list[str | None], missing: list[str]) -> list[str]:
    """The keys read with a text that did not decode: deleted, as a single call deletes them."""
    missed = set(missing)
    return [
        key for key, text in zip(keys, texts, strict=True) if text is not None and key in missed
    ]


def check_concurrency(concurrency: object) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(
            f"concurrency must be a positive int (calls at a time), got {concurrency!r}"
        )


def _progress(progress: Progress, total: int) -> Callable[[int, int], object] | None:
    if progress is None or progress is False:
        return None
    if callable(progress):
        return progress
    if progress is True:
        try:
            tqdm = importlib.import_module("tqdm.auto").tqdm
        except ImportError:
            raise ConfigurationError(
                "progress=True draws a tqdm bar, and tqdm is not installed: pip install tqdm, "
                "or pass a callable, progress=lambda done, total: ..."
            ) from None
        bar = tqdm(total=total)

        def tick(done: int, _total: int) -> None:
            bar.update(done - bar.n)
            if done >= _total:
                bar.close()

        return tick
    raise ConfigurationError(
        f"progress must be None, True (a tqdm bar) or a callable(done, total), got {progress!r}"
    )
