"""Coalesced reads: the single async reads of one event-loop tick, answered by one bulk read.

Under a burst (``asyncio.gather`` over 1,000 cached calls) every call would
send a GET of its own and hold a pooled connection for it: 1,000 round trips,
and a pool run dry. Here a read joins the open batch of its event loop and
waits; one tick later the batch is closed and read with one bulk read of the
store (one MGET, by slot on a Cluster), and each waiter gets its answer: the
DataLoader pattern. A lone read pays that one tick.

- Per event loop: a decorated function may be awaited from several loops in
  several threads, and an asyncio Redis client belongs to one loop. A loop
  runs in one thread, so the open batch is the thread's, and it is checked
  against the running loop (a thread may run one loop after another).
- A key asked for twice in one batch is read once.
- A batch holds at most ``MAX_BATCH`` distinct keys; a bigger burst opens
  more batches, read side by side: a few MGETs, none holding the server long.
- Each waiter awaits a future of its own, so one cancelled while waiting
  leaves the others, those waiting for the same key too, to their answers.
- ``read_many`` is the guard's bulk read, which fails open itself: a failed
  read is one failure for the whole batch (counted, logged and fed to the
  breaker once, not once per waiter), and every waiter gets a miss. Should it
  end otherwise (cancelled as its loop shuts down, even before it began), the
  waiters still waiting get a miss too: none waits for ever.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from instructor_cache.backends._contract import AsyncBulkStore
from instructor_cache.backends.memory import MemoryCache

if TYPE_CHECKING:  # asyncio loads with the first store that reads in bulk, not on import
    import asyncio

__all__ = ["MAX_BATCH", "Coalescer", "coalesces"]

R = TypeVar("R")

MAX_BATCH = 1000
"""Distinct keys in one bulk read (the size of one MGET chunk, see ``_pipelines``)."""


def coalesces(store: object) -> bool:
    """Whether the single async reads of ``store`` are worth coalescing into bulk reads.

    Those of a store with native async bulk reads (Redis) are: each is a
    round trip. Not those of the stores that answer inline, in process: a
    memory store's read costs less than the tick a batch waits, and a
    ``TieredCache`` used as a tier would lose, read in bulk, its backfill.
    """
    from instructor_cache.backends.tiered import TieredCache  # noqa: PLC0415  (it imports us)

    return isinstance(store, AsyncBulkStore) and not isinstance(store, (MemoryCache, TieredCache))


class _Batch(Generic[R]):
    """The reads one loop asked for since the batch opened: each key with its waiters."""

    __slots__ = ("loop", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: dict[str, list[asyncio.Future[R]]] = {}


class Coalescer(Generic[R]):
    """Single reads by key, answered in batches by ``read_many`` (which must not raise).

    ``miss`` is what a waiter gets when its batch was never answered.
    """

    __slots__ = (
        "_current_loop",
        "_local",
        "_miss",
        "_read_many",
        "_running_loop",
        "_size",
        "_task",
        "_tasks",
    )

    def __init__(
        self,
        read_many: Callable[[Sequence[str]], Awaitable[list[R]]],
        miss: R,
        size: int = MAX_BATCH,
    ) -> None:
        import asyncio  # noqa: PLC0415  (see TYPE_CHECKING above)

        self._running_loop = asyncio.get_running_loop
        self._current_loop = asyncio.events._get_running_loop  # None outside a loop, no raise
        # A Task made as such, not by the loop's task factory: an eager one
        # would start the read, and close the batch, before anyone joined it.
        self._task = asyncio.Task
        self._read_many = read_many
        self._miss = miss
        self._size = size
        self._local = threading.local()
        # The loop keeps only weak references to tasks: these are the bulk reads'.
        self._tasks: set[asyncio.Task[None]] = set()

    def open_here(self) -> bool:
        """Whether the running loop has a batch open: a read that joins it costs the store nothing.

        While the breaker is half-open, the reads of the probe's tick join the
        probe's batch rather than skip the store: else a burst of cached calls
        on a Redis that came back would each pay again, but for the probe.
        """
        batch: _Batch[R] | None = getattr(self._local, "batch", None)
        return batch is not None and batch.loop is self._current_loop()

    async def read(self, key: str) -> R:
        """``key``'s answer, from the bulk read of this tick's batch."""
        loop = self._running_loop()
        batch: _Batch[R] | None = getattr(self._local, "batch", None)
        if batch is None or batch.loop is not loop:
            batch = self._local.batch = _Batch(loop)
            task = self._task(self._answer(batch), loop=loop)  # its first step is a tick on
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, batch))
        future: asyncio.Future[R] = loop.create_future()
        waiting = batch.waiters.get(key)
        if waiting is not None:
            waiting.append(future)
        else:
            batch.waiters[key] = [future]
            if len(batch.waiters) >= self._size:
                self._local.batch = None  # full: the next read opens another
        return await future

    async def _answer(self, batch: _Batch[R]) -> None:
        """One tick after the batch opened: every read of that tick has joined it; read them."""
        if getattr(self._local, "batch", None) is batch:
            self._local.batch = None
        keys = list(batch.waiters)
        answers = await self._read_many(keys)
        if len(answers) == len(keys):  # else no waiter could be told which is its own
            for key, answer in zip(keys, answers, strict=True):
                _tell(batch.waiters[key], answer)

    def _done(self, batch: _Batch[R], task: asyncio.Task[None]) -> None:
        """However the read ended (cancelled, even before it began), no waiter is left waiting."""
        self._tasks.discard(task)
        if getattr(self._local, "batch", None) is batch:
            self._local.batch = None
        for waiting in batch.waiters.values():
            _tell(waiting, self._miss)


def _tell(waiting: list[asyncio.Future[R]], answer: R) -> None:
    for future in waiting:
        if not future.done():  # cancelled meanwhile, or told already
            future.set_result(answer)
