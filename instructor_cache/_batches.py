"""Batches: ``map``/``amap`` and ``warm``/``awarm`` of a decorated function.

A batch builds every key, reads them all with one bulk read (one MGET on
Redis, grouped by slot on a Cluster; one query on disk; each tier once,
for what the faster tiers missed), pays once for each distinct input that
missed, with at most ``concurrency`` calls at a time, and writes the new
results back with bulk writes. Each distinct miss goes through the same
single-flight as a single call (``_misses``), so a single call made
meanwhile with the same input waits for the batch instead of paying too;
the batch settles its leaders' results in bulk, every ``FLUSH_SIZE``
results or ``FLUSH_EVERY`` seconds, so such a caller waits no longer.

The sync and async runs are the same steps, side by side: change them
together. Their executors (threads, asyncio) are imported when a batch
runs, not with the package.
"""

from __future__ import annotations

import collections
import contextvars
import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from instructor_cache._batch import (
    FLUSH_EVERY,
    Batch,
    Call,
    Progress,
    WarmCounts,
    calls_of,
    check_concurrency,
    undecodable,
)
from instructor_cache._control import SWITCH, Control, mode_of, steer
from instructor_cache._memo import Memo
from instructor_cache._misses import AsyncMisses, Claim, SyncMisses, kept, shielded
from instructor_cache._steering import AsyncSteered, Steering, SyncSteered

if TYPE_CHECKING:
    import asyncio
    import queue
    from concurrent.futures import Future

__all__ = ["DEFAULT_CONCURRENCY", "AsyncBatches", "SyncBatches", "batch_methods"]


def _steered(steering: Steering[Any]) -> tuple[Any, str]:
    """Where a batch's calls go, and in which mode: a batch follows ``cache_control`` as a call.

    ``off`` and ``write-only`` read nothing; a miss in another mode than
    ``normal`` is paid (or raised, in ``replay``) input by input, as a single
    call would, each failure its own item's (``return_exceptions``).
    """
    control: Control | None = steer() if SWITCH.on else None
    return steering.to(control), "normal" if control is None else mode_of(control)


class SyncBatches:
    def __init__(self, memo: Memo[Any], steering: Steering[SyncSteered]) -> None:
        self.memo, self.steering = memo, steering

    def map(
        self, calls: list[Call], concurrency: int, return_exceptions: bool, progress: Progress
    ) -> list[Any]:
        return self.run(calls, concurrency, progress).outcome(return_exceptions)

    def warm(self, calls: list[Call], concurrency: int, progress: Progress) -> WarmCounts:
        return self.run(calls, concurrency, progress).counts()

    def run(self, calls: list[Call], concurrency: int, progress: Progress) -> Batch:
        check_concurrency(concurrency)
        target, mode = _steered(self.steering)
        batch = Batch(self.memo, calls, progress, target.make_key)
        keys, store, misses = list(batch.positions), target.store, target.misses
        landings = misses.flights.landings
        bypassed = store.gate.open_until and store.bypassing()
        reads = not bypassed and mode not in ("off", "write-only")
        texts: list[str | None] = store.get_many(keys) if reads else [None] * len(keys)
        missing = batch.found(keys, texts)
        for key in undecodable(keys, texts, missing) if mode == "normal" else ():
            store.delete(key)  # replay and read-only leave the store as it is
        if not missing:
            return batch

        def pay(key: str) -> Any:
            args, kwargs = calls[batch.positions[key][0]]
            if mode != "normal":
                return target.pay(mode, key, args, kwargs)
            return misses.miss(key, landings, args, kwargs, batch.settle)

        import queue  # noqa: PLC0415  (see the module docstring)
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        # Each call reports when it finishes: watching all the unfinished ones
        # each time one finishes would take time quadratic in the batch.
        finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        with ThreadPoolExecutor(min(concurrency, len(missing))) as pool:
            running: dict[Future[Any], str] = {}
            for key in missing:
                future = pool.submit(contextvars.copy_context().run, pay, key)
                running[future] = key
                future.add_done_callback(finished.put)
            try:
                for _ in running:
                    future = self.next_finished(finished, batch, misses)
                    batch.finished(running[future], future)
                    self.flush(batch, misses, everything=False)
            finally:
                for future in running:
                    future.cancel()
                try:
                    pool.shutdown(wait=True)
                finally:  # even when interrupted again meanwhile (a second Ctrl-C)
                    claims = batch.close(misses.settle)
                    if claims:
                        misses.settle_many(claims)
        return batch

    def next_finished(
        self, finished: queue.SimpleQueue[Future[Any]], batch: Batch, misses: SyncMisses
    ) -> Future[Any]:
        """The next call to finish; meanwhile, the results due are stored every so often."""
        import queue  # noqa: PLC0415  (loaded by run)

        while True:
            try:
                return finished.get(timeout=FLUSH_EVERY)
            except queue.Empty:  # noqa: PERF203  (a wait of half a second, not a hot loop)
                self.flush(batch, misses, everything=False)

    def flush(self, batch: Batch, misses: SyncMisses, *, everything: bool) -> None:
        claims = batch.take_due(everything)
        if claims:
            misses.settle_many(claims)


class AsyncBatches:
    def __init__(self, memo: Memo[Any], steering: Steering[AsyncSteered]) -> None:
        self.memo, self.steering = memo, steering

    async def map(
        self, calls: list[Call], concurrency: int, return_exceptions: bool, progress: Progress
    ) -> list[Any]:
        return (await self.run(calls, concurrency, progress)).outcome(return_exceptions)

    async def warm(self, calls: list[Call], concurrency: int, progress: Progress) -> WarmCounts:
        return (await self.run(calls, concurrency, progress)).counts()

    async def run(self, calls: list[Call], concurrency: int, progress: Progress) -> Batch:
        check_concurrency(concurrency)
        target, mode = _steered(self.steering)
        batch = Batch(self.memo, calls, progress, target.make_key)
        keys, store, misses = list(batch.positions), target.store, target.misses
        landings = misses.flights.landings
        bypassed = store.gate.open_until and store.bypassing()
        reads = not bypassed and mode not in ("off", "write-only")
        texts: list[str | None] = await store.aget_many(keys) if reads else [None] * len(keys)
        missing = batch.found(keys, texts)
        for key in undecodable(keys, texts, missing) if mode == "normal" else ():
            await store.adelete(key)  # replay and read-only leave the store as it is
        if not missing:
            return batch
        import asyncio  # noqa: PLC0415  (loaded already: a loop is running)

        slots = asyncio.Semaphore(concurrency)

        async def pay(key: str) -> Any:
            args, kwargs = calls[batch.positions[key][0]]
            async with slots:
                if mode != "normal":
                    return await target.pay(mode, key, args, kwargs)
                return await misses.miss(key, landings, args, kwargs, batch.settle)

        finished = _Finished()
        running: dict[asyncio.Future[Any], str] = {}
        for key in missing:
            task = asyncio.ensure_future(pay(key))
            running[task] = key
            task.add_done_callback(finished.put)
        try:
            for _ in running:
                while not finished.ready:
                    await finished.wait(FLUSH_EVERY)
                    await self.flush(batch, misses, everything=False)
                call = finished.ready.popleft()
                batch.finished(running[call], call)
                await self.flush(batch, misses, everything=False)
        finally:
            unfinished = [future for future in running if not future.done()]
            for future in unfinished:
                future.cancel()
            try:
                if unfinished:  # cancelled leaders hand their flights on; let them land first
                    await asyncio.gather(*unfinished, return_exceptions=True)
            finally:  # even when cancelled again meanwhile (anyio cancels at every await)
                claims = batch.close(functools.partial(self.late, misses))
                if claims:
                    await shielded(functools.partial(misses.settle_many, claims))
        return batch

    @staticmethod
    def late(misses: AsyncMisses, claim: Claim) -> None:
        """Settle a claim that finished after its batch wound down, on its own."""
        kept(functools.partial(misses.store_and_release, claim))

    async def flush(self, batch: Batch, misses: AsyncMisses, *, everything: bool) -> None:
        claims = batch.take_due(everything)
        if claims:  # shielded: taken from the batch, they are stored even if it is cancelled
            await shielded(functools.partial(misses.settle_many, claims))


class _Finished:
    """The calls of an async batch in the order they finish, as their tasks report it."""

    def __init__(self) -> None:
        self.ready: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._wakeup: asyncio.Future[None] | None = None

    def put(self, task: asyncio.Future[Any]) -> None:
        self.ready.append(task)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until a call finishes, or ``timeout`` passes."""
        import asyncio  # noqa: PLC0415  (loaded already: a loop is running)

        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait((self._wakeup,), timeout=timeout)
        finally:
            self._wakeup = None


DEFAULT_CONCURRENCY = 8


def batch_methods(
    batches: SyncBatches | AsyncBatches, single: bool, keyword: str | None = None
) -> dict[str, Callable[..., Any]]:
    """The decorated function's ``map`` and ``warm`` (``amap``, ``awarm`` when it is async).

    ``_instance`` is how a bound method passes its ``self``; it is not part
    of the public signature.
    """
    if isinstance(batches, SyncBatches):
        sync = batches

        def map_(
            items: Iterable[Any],
            *,
            concurrency: int = DEFAULT_CONCURRENCY,
            return_exceptions: bool = False,
            progress: Progress = None,
            _instance: tuple[Any, ...] = (),
        ) -> list[Any]:
            """Call for every item (see README: Batches); results in input order."""
            calls = calls_of(items, single, _instance, keyword)
            return sync.map(calls, concurrency, return_exceptions, progress)

        def warm(
            items: Iterable[Any],
            *,
            concurrency: int = DEFAULT_CONCURRENCY,
            progress: Progress = None,
            _instance: tuple[Any, ...] = (),
        ) -> WarmCounts:
            """Compute and store what is missing; count hits, computed and failed inputs."""
            return sync.warm(calls_of(items, single, _instance, keyword), concurrency, progress)

        return {"map": map_, "warm": warm}
    native = batches

    async def amap(
        items: Iterable[Any],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        return_exceptions: bool = False,
        progress: Progress = None,
        _instance: tuple[Any, ...] = (),
    ) -> list[Any]:
        """Await a call for every item (see README: Batches); results in input order."""
        calls = calls_of(items, single, _instance, keyword)
        return await native.map(calls, concurrency, return_exceptions, progress)

    async def awarm(
        items: Iterable[Any],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: Progress = None,
        _instance: tuple[Any, ...] = (),
    ) -> WarmCounts:
        """Compute and store what is missing; count hits, computed and failed inputs."""
        return await native.warm(calls_of(items, single, _instance, keyword), concurrency, progress)

    return {"amap": amap, "awarm": awarm}
