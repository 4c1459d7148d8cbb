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

import contextvars
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
from instructor_cache._memo import Memo
from instructor_cache._misses import AsyncMisses, SyncMisses
from instructor_cache.backends._compose import GuardedStore

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Future

__all__ = ["DEFAULT_CONCURRENCY", "AsyncBatches", "SyncBatches", "batch_methods"]


class SyncBatches:
    def __init__(self, memo: Memo[Any], store: GuardedStore, misses: SyncMisses) -> None:
        self.memo, self.store, self.misses = memo, store, misses

    def map(
        self, calls: list[Call], concurrency: int, return_exceptions: bool, progress: Progress
    ) -> list[Any]:
        return self.run(calls, concurrency, progress).outcome(return_exceptions)

    def warm(self, calls: list[Call], concurrency: int, progress: Progress) -> WarmCounts:
        return self.run(calls, concurrency, progress).counts()

    def run(self, calls: list[Call], concurrency: int, progress: Progress) -> Batch:
        check_concurrency(concurrency)
        batch = Batch(self.memo, calls, progress)
        keys, store = list(batch.positions), self.store
        landings = self.misses.flights.landings
        bypassed = store.gate.open_until and store.bypassing()
        texts: list[str | None] = [None] * len(keys) if bypassed else store.get_many(keys)
        missing = batch.found(keys, texts)
        for key in undecodable(keys, texts, missing):
            store.delete(key)
        if not missing:
            return batch

        def pay(key: str) -> Any:
            args, kwargs = calls[batch.positions[key][0]]
            return self.misses.miss(key, landings, args, kwargs, batch.settle)

        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait  # noqa: PLC0415

        with ThreadPoolExecutor(min(concurrency, len(missing))) as pool:
            running = {
                pool.submit(contextvars.copy_context().run, pay, key): key for key in missing
            }
            try:
                waiting: set[Future[Any]] = set(running)
                while waiting:
                    done, waiting = wait(waiting, FLUSH_EVERY, FIRST_COMPLETED)
                    for future in done:
                        batch.finished(running[future], future)
                    self.flush(batch, everything=False)
            finally:
                for future in running:
                    future.cancel()
                pool.shutdown(wait=True)
                self.flush(batch, everything=True)
        return batch

    def flush(self, batch: Batch, *, everything: bool) -> None:
        claims = batch.take_due(everything)
        if claims:
            self.misses.settle_many(claims)


class AsyncBatches:
    def __init__(self, memo: Memo[Any], store: GuardedStore, misses: AsyncMisses) -> None:
        self.memo, self.store, self.misses = memo, store, misses

    async def map(
        self, calls: list[Call], concurrency: int, return_exceptions: bool, progress: Progress
    ) -> list[Any]:
        return (await self.run(calls, concurrency, progress)).outcome(return_exceptions)

    async def warm(self, calls: list[Call], concurrency: int, progress: Progress) -> WarmCounts:
        return (await self.run(calls, concurrency, progress)).counts()

    async def run(self, calls: list[Call], concurrency: int, progress: Progress) -> Batch:
        check_concurrency(concurrency)
        batch = Batch(self.memo, calls, progress)
        keys, store = list(batch.positions), self.store
        landings = self.misses.flights.landings
        bypassed = store.gate.open_until and store.bypassing()
        texts: list[str | None] = [None] * len(keys) if bypassed else await store.aget_many(keys)
        missing = batch.found(keys, texts)
        for key in undecodable(keys, texts, missing):
            await store.adelete(key)
        if not missing:
            return batch
        import asyncio  # noqa: PLC0415  (loaded already: a loop is running)

        slots = asyncio.Semaphore(concurrency)

        async def pay(key: str) -> Any:
            args, kwargs = calls[batch.positions[key][0]]
            async with slots:
                return await self.misses.miss(key, landings, args, kwargs, batch.settle)

        running = {asyncio.ensure_future(pay(key)): key for key in missing}
        try:
            waiting: set[asyncio.Future[Any]] = set(running)
            while waiting:
                done, waiting = await asyncio.wait(
                    waiting, timeout=FLUSH_EVERY, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    batch.finished(running[future], future)
                await self.flush(batch, everything=False)
        finally:
            unfinished = [future for future in running if not future.done()]
            for future in unfinished:
                future.cancel()
            if unfinished:  # cancelled leaders hand their flights on; let them land first
                await asyncio.gather(*unfinished, return_exceptions=True)
            await self.flush(batch, everything=True)
        return batch

    async def flush(self, batch: Batch, *, everything: bool) -> None:
        claims = batch.take_due(everything)
        if claims:
            await self.misses.settle_many(claims)


DEFAULT_CONCURRENCY = 8


def batch_methods(
    batches: SyncBatches | AsyncBatches, single: bool
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
            calls = calls_of(items, single, _instance)
            return sync.map(calls, concurrency, return_exceptions, progress)

        def warm(
            items: Iterable[Any],
            *,
            concurrency: int = DEFAULT_CONCURRENCY,
            progress: Progress = None,
            _instance: tuple[Any, ...] = (),
        ) -> WarmCounts:
            """Compute and store what is missing; count hits, computed and failed inputs."""
            return sync.warm(calls_of(items, single, _instance), concurrency, progress)

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
        calls = calls_of(items, single, _instance)
        return await native.map(calls, concurrency, return_exceptions, progress)

    async def awarm(
        items: Iterable[Any],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: Progress = None,
        _instance: tuple[Any, ...] = (),
    ) -> WarmCounts:
        """Compute and store what is missing; count hits, computed and failed inputs."""
        return await native.warm(calls_of(items, single, _instance), concurrency, progress)

    return {"amap": amap, "awarm": awarm}
