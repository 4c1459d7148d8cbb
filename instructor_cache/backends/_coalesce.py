"""Coalesced reads: single async reads made while others are in flight share one bulk read.

Under a burst (``asyncio.gather`` over 1,000 cached calls) every call would
send a GET of its own and hold a pooled connection for it: 1,000 round trips,
and a pool run dry. Here a read that finds ``DIRECT`` reads of its loop in
flight joins the loop's pending batch instead; when one of those reads ends,
the batch is read with one bulk read of the store (one MGET, by slot on a
Cluster), and each waiter gets its answer. A burst so costs a few round
trips; a lone read (nothing in flight) is sent at once, as it would be
without coalescing, and pays nothing for it: not even a loop tick.

- Per event loop: a decorated function may be awaited from several loops in
  several threads, and an asyncio Redis client belongs to one loop. A loop
  runs in one thread, so the state is the thread's, checked against the
  running loop (a thread may run one loop after another).
- A key asked for while it is being read, or twice in one batch, is read once;
  but not after a write through the store began (``wrote``): a read sent
  before a refresh or an invalidation would hand a call made after it the
  answer it replaced.
- A batch holds at most ``MAX_BATCH`` distinct keys; a bigger burst starts
  the full batch at once and opens another: a few MGETs, none holding the
  server long.
- Each waiter awaits a future of its own, so one cancelled while waiting
  leaves the others, those waiting for the same key too, to their answers.
  A read cancelled while others wait on its key hands them a retry.
- ``read_one`` and ``read_many`` are the guard's reads, which fail open
  themselves: a failed bulk read is one failure for the whole batch
  (counted, logged and fed to the breaker once, not once per waiter), and
  every waiter gets a miss. Should a batch end otherwise (cancelled as its
  loop shuts down, even before it began), the waiters still waiting get a
  miss too: none waits for ever.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from instructor_cache.backends._contract import AsyncBulkStore
from instructor_cache.backends.memory import MemoryCache

if TYPE_CHECKING:  # asyncio loads with the first store that reads in bulk, not on import
    import asyncio

__all__ = ["DIRECT", "MAX_BATCH", "Coalescer", "coalesces"]

R = TypeVar("R")

MAX_BATCH = 1000
"""Distinct keys in one bulk read (the size of one MGET chunk, see ``_pipelines``)."""

DIRECT = 1
"""Reads a loop sends at once, each on its own, before further ones wait to go in bulk."""


def coalesces(store: object) -> bool:
    """Whether the single async reads of ``store`` are worth coalescing into bulk reads.

    Those of a store with native async bulk reads (Redis) are: each is a
    round trip. Not those of the stores that answer inline, in process: a
    memory store's read costs less than the tick a batch waits, and a
    ``TieredCache`` used as a tier would lose, read in bulk, its backfill.
    """
    from instructor_cache.backends.tiered import TieredCache  # noqa: PLC0415  (it imports us)

    return isinstance(store, AsyncBulkStore) and not isinstance(store, (MemoryCache, TieredCache))


class _Retry:
    """Told to the waiters of a read that was cancelled: they read again themselves."""


_RETRY = _Retry()


class _Batch(Generic[R]):
    """The reads one loop asked for while its reads were busy: each key with its waiters."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: dict[str, list[asyncio.Future[R | _Retry]]] = {}


class _LoopReads(Generic[R]):
    """One loop's reads: how many are in flight, the keys being read, the batch waiting."""

    __slots__ = ("batch", "in_flight", "loop", "reading")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: a thread keeps its last loop's reads, which must not keep that loop alive.
        self.loop = weakref.ref(loop)
        self.in_flight = 0
        # Key -> the writes made before its read was sent, and the read's waiters.
        self.reading: dict[str, tuple[int, list[asyncio.Future[R | _Retry]]]] = {}
        self.batch: _Batch[R] | None = None


class Coalescer(Generic[R]):
    """Single reads by key: sent at once while few are in flight, else batched for ``read_many``.

    ``read_one`` and ``read_many`` must not raise. ``miss`` is what a waiter
    gets when its batch was never answered.
    """

    __slots__ = (
        "_current_loop",
        "_direct",
        "_local",
        "_miss",
        "_read_many",
        "_read_one",
        "_running_loop",
        "_size",
        "_task",
        "_tasks",
        "_writes",
    )

    def __init__(
        self,
        read_one: Callable[[str], Awaitable[R]],
        read_many: Callable[[Sequence[str]], Awaitable[list[R]]],
        miss: R,
        *,
        size: int = MAX_BATCH,
        direct: int = DIRECT,
    ) -> None:
        import asyncio  # noqa: PLC0415  (see TYPE_CHECKING above)

        self._running_loop = asyncio.get_running_loop
        self._current_loop = asyncio.events._get_running_loop  # None outside a loop, no raise
        self._task = asyncio.Task
        self._read_one, self._read_many = read_one, read_many
        self._miss = miss
        self._size, self._direct = size, direct
        self._local = threading.local()
        # The loop keeps only weak references to tasks: these are the bulk reads'.
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes = 0  # writes begun, in any thread: a read sent before one is not shared

    def wrote(self) -> None:
        """A write through the store begins: no read sent before it answers a read made after."""
        self._writes += 1

    def open_here(self) -> bool:
        """Whether the running loop has a read in flight: a read made now waits for it.

        While the breaker is half-open, the reads made while its probe is in
        flight wait for the probe and go out after it, rather than skip the
        store: else a burst of cached calls on a Redis that came back would
        each pay again, but for the probe.
        """
        reads: _LoopReads[R] | None = getattr(self._local, "reads", None)
        return (
            reads is not None
            and reads.loop() is self._current_loop()
            and (reads.in_flight > 0 or reads.batch is not None)
        )

    def _reads(self) -> tuple[_LoopReads[R], asyncio.AbstractEventLoop]:
        loop = self._running_loop()
        reads: _LoopReads[R] | None = getattr(self._local, "reads", None)
        if reads is None or reads.loop() is not loop:
            reads = self._local.reads = _LoopReads(loop)
        return reads, loop

    async def read(self, key: str) -> R:
        """``key``'s answer: read at once, or with the bulk read of the batch it joins."""
        while True:
            reads, loop = self._reads()
            sent = reads.reading.get(key)
            waiting = sent[1] if sent is not None and sent[0] == self._writes else None
            if waiting is None and reads.in_flight < self._direct and reads.batch is None:
                return await self._read_at_once(reads, key)
            future: asyncio.Future[R | _Retry] = loop.create_future()
            if waiting is not None:  # being read right now: its answer is ours
                waiting.append(future)
            else:
                self._join(reads, loop, key, future)
            answer = await future
            if not isinstance(answer, _Retry):
                return answer

    async def _read_at_once(self, reads: _LoopReads[R], key: str) -> R:
        reads.in_flight += 1
        waiting: list[asyncio.Future[R | _Retry]] = []
        sent = reads.reading[key] = (self._writes, waiting)
        answer: R | _Retry = _RETRY
        try:
            answer = await self._read_one(key)
            return answer
        finally:
            if reads.reading.get(key) is sent:  # not a later read of the key, sent after a write
                del reads.reading[key]
            _tell(waiting, answer)
            reads.in_flight -= 1
            self._start_batch(reads, self._running_loop())

    def _join(
        self,
        reads: _LoopReads[R],
        loop: asyncio.AbstractEventLoop,
        key: str,
        future: asyncio.Future[R | _Retry],
    ) -> None:
        batch = reads.batch
        if batch is None:
            batch = reads.batch = _Batch()
        waiting = batch.waiters.get(key)
        if waiting is not None:
            waiting.append(future)
            return
        batch.waiters[key] = [future]
        if len(batch.waiters) >= self._size:  # full: read it now, the next read opens another
            self._start_batch(reads, loop, full=True)

    def _start_batch(
        self, reads: _LoopReads[R], loop: asyncio.AbstractEventLoop, *, full: bool = False
    ) -> None:
        """Read the waiting batch, once a read in flight has ended (or it is full)."""
        batch = reads.batch
        if batch is None or not batch.waiters or (reads.in_flight >= self._direct and not full):
            return
        reads.batch = None
        reads.in_flight += 1
        task = self._task(self._answer(batch), loop=loop)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, reads, batch))

    async def _answer(self, batch: _Batch[R]) -> None:
        keys = list(batch.waiters)
        answers = await self._read_many(keys)
        if len(answers) == len(keys):  # else no waiter could be told which is its own
            for key, answer in zip(keys, answers, strict=True):
                _tell(batch.waiters[key], answer)

    def _done(self, reads: _LoopReads[R], batch: _Batch[R], task: asyncio.Task[None]) -> None:
        """However the read ended (cancelled, even before it began), no waiter is left waiting."""
        self._tasks.discard(task)
        for waiting in batch.waiters.values():
            _tell(waiting, self._miss)
        reads.in_flight -= 1
        self._start_batch(reads, task.get_loop())


def _tell(waiting: list[asyncio.Future[R | _Retry]], answer: R | _Retry) -> None:
    for future in waiting:
        if not future.done():  # cancelled meanwhile, or told already
            future.set_result(answer)
