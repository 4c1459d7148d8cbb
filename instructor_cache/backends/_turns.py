"""Commands take turns on a bounded connection pool, so that no cached entry goes unserved.

redis-py's pools hold at most ``max_connections`` connections and raise on
the next caller ("Too many connections"): under a burst of 1,000 hits, 900
would fail open and pay for the function. Here the callers beyond the pool
wait in line (first come, first served) for a connection to come back.

How long may they wait? No fixed time fits: with 100 connections and 10,000
callers, the last one legitimately waits for a hundred round trips. So the
line is bounded by the server's answers, not by a clock: while commands
come back, every waiter keeps its place, and each command in flight is
itself bounded by its timeout. When a command fails and Redis has answered
nothing since it was sent, the server may be dead or stalled, or this
process paused (a garbage collection, a starved CPU) past the timeout. The
commands started from then on decide: if one of them fails with nothing
answered either, everyone in line is turned away at once (a
``ConnectionError``, which fails open) instead of paying one timeout per
pool-full of callers; a dead server costs the line two timeouts.

A command whose failure proves nothing (Redis answered others meanwhile,
or other commands are under way that will tell) is run once more in the
same turn, so a pause of ours does not cost a paid call. A lone command on
a dead Redis is not tried twice.

``Turn`` and ``AsyncTurn`` are one command in its turn, as the backend
uses them; a bulk operation (MGET in chunks, a pipeline) is one turn too,
however many connections of a cluster it uses at once, so a burst of them
waits in line like a burst of GETs; the lines behind them, for threads and for the tasks of one
event loop, share their bookkeeping and are written side by side.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import redis
import redis.exceptions

from instructor_cache.backends._failures import backend_error

__all__ = ["FAILURES", "NO_TURNS", "AsyncTurn", "AsyncTurns", "NoTurns", "Turn", "Turns"]

W = TypeVar("W")
C = TypeVar("C")
R = TypeVar("R")

# What a Redis call can raise: the server's and the client's errors (redis.RedisError
# covers connection, timeout, authentication and out-of-memory), and the socket's.
FAILURES = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)
# Of those, the ones that mean Redis did not answer (a refused write is an answer).
UNANSWERED = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.RedisClusterException,
    OSError,
)


# The outcome of a command, as the line judges it.
ANSWERED, FAILED, NEITHER = True, False, None


def refused() -> redis.ConnectionError:
    return redis.ConnectionError(
        "Redis answered nothing while this call waited for a connection from the pool"
    )


class _Line(Generic[W]):
    """Free connections, the waiters in order, and what Redis answered.

    A turn is stamped with ``epoch``, which moves on each answer and when a
    command fails unanswered: a command whose stamp is still current when it
    fails saw nothing answered meanwhile, and ``suspect`` says whether it
    was started after an earlier such failure.
    """

    __slots__ = ("answered", "epoch", "free", "size", "suspect", "waiting")

    def __init__(self, size: int) -> None:
        self.size = self.free = size
        self.waiting: deque[W] = deque()
        self.answered = 0
        self.epoch = 0
        self.suspect = False

    def take(self) -> int | None:
        """The epoch now if a connection is free (and nobody is ahead), else None."""
        if self.free and not self.waiting:
            self.free -= 1
            return self.epoch
        return None

    def again(self, seen: int, answered: int) -> int | None:
        """A command failed unanswered: its new stamp if it may run once more, else None.

        Not when its failure was conclusive, nor when it runs alone with
        nothing answered: a lone caller on a dead Redis pays one timeout.
        """
        if self.epoch == seen and self.suspect:
            return None
        alone = self.free == self.size - 1 and not self.waiting
        if alone and self.answered == answered:
            return None
        if self.epoch == seen:  # as in give_back: the commands from now on decide
            self.suspect = True
            self.epoch += 1
        return self.epoch

    def give_back(self, seen: int, outcome: bool | None) -> tuple[W | None, list[W]]:
        """Return a connection: the waiter it passes to, and the waiters turned away."""
        turned_away: list[W] = []
        if outcome is ANSWERED:
            self.answered += 1
            self.epoch += 1
            self.suspect = False
        elif outcome is FAILED and self.epoch == seen:
            if self.suspect:  # started after an unanswered failure, and unanswered too
                turned_away, self.waiting = list(self.waiting), deque()
            else:  # perhaps a pause of ours: the commands started from now on decide
                self.suspect = True
                self.epoch += 1
        if self.waiting:
            return self.waiting.popleft(), turned_away
        self.free += 1
        return None, turned_away


class _Waiter:
    __slots__ = ("ready", "seen")

    def __init__(self) -> None:
        self.ready = threading.Lock()
        self.ready.acquire()
        self.seen: int | None = None  # set before ``ready`` is released: None means turned away


class Turns:
    """The line for threads sharing one sync client."""

    def __init__(self, size: int) -> None:
        self._line: _Line[_Waiter] = _Line(size)
        self._lock = threading.Lock()

    @property
    def answered(self) -> int:
        return self._line.answered

    def take(self) -> int:
        with self._lock:
            seen = self._line.take()
            if seen is not None:
                return seen
            waiter = _Waiter()
            self._line.waiting.append(waiter)
        try:
            waiter.ready.acquire()
        except BaseException:  # interrupted while waiting: leave the line, or pass the turn on
            with self._lock:
                if waiter in self._line.waiting:
                    self._line.waiting.remove(waiter)
            if waiter.seen is not None:
                self.give_back(waiter.seen, NEITHER)
            raise
        if waiter.seen is None:
            raise refused()
        return waiter.seen

    def again(self, seen: int, answered: int) -> int | None:
        with self._lock:
            return self._line.again(seen, answered)

    def give_back(self, seen: int, outcome: bool | None) -> None:
        with self._lock:
            following, turned_away = self._line.give_back(seen, outcome)
            if following is not None:
                following.seen = self._line.epoch
        for waiter in turned_away:
            waiter.ready.release()
        if following is not None:
            following.ready.release()


class AsyncTurns:
    """The line for the tasks of one event loop sharing its client (no lock: one thread)."""

    def __init__(self, size: int) -> None:
        self._line: _Line[asyncio.Future[int | None]] = _Line(size)

    @property
    def answered(self) -> int:
        return self._line.answered

    def take(self) -> int | None:
        """A turn at once if one is free; else None, and the caller awaits ``wait()``."""
        return self._line.take()

    async def wait(self) -> int:
        waiter: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._line.waiting.append(waiter)
        try:
            seen = await waiter
        except asyncio.CancelledError:  # leave the line, or pass on a turn given meanwhile
            if waiter in self._line.waiting:
                self._line.waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                given = waiter.result()
                if given is not None:
                    self.give_back(given, NEITHER)
            raise
        if seen is None:
            raise refused()
        return seen

    def again(self, seen: int, answered: int) -> int | None:
        return self._line.again(seen, answered)

    def give_back(self, seen: int, outcome: bool | None) -> None:
        following, turned_away = self._line.give_back(seen, outcome)
        for waiter in turned_away:
            if not waiter.done():
                waiter.set_result(None)
        while following is not None and following.done():  # cancelled while in line: the next
            following, _ = self._line.give_back(seen, NEITHER)
        if following is not None:
            following.set_result(self._line.epoch)


class NoTurns:
    """For a client the caller made: used as it is, with its own pool."""

    answered = 0

    def take(self) -> int:
        return 0

    async def wait(self) -> int:  # never awaited: take() always gives a turn
        return 0

    def again(self, seen: int, answered: int) -> int | None:
        return None  # a failed command is never tried twice

    def give_back(self, seen: int, outcome: bool | None) -> None:
        pass


NO_TURNS = NoTurns()


class Turn(Generic[C]):
    """One command (a SCAN, a bulk call) on the sync client, in its turn; failures as BackendError.

    A class rather than a generator: it sits on every hit's path.
    """

    __slots__ = ("_answered", "_command", "_get", "_owner", "_seen", "_turns", "client")

    def __init__(
        self, owner: object, command: str, get: Callable[[], tuple[C, Turns | NoTurns]]
    ) -> None:
        self._owner, self._command, self._get, self._seen = owner, command, get, 0

    def __enter__(self) -> Turn[C]:
        try:
            self.client, self._turns = self._get()
            self._seen = self._turns.take()
            self._answered = self._turns.answered
        except FAILURES as exc:
            raise backend_error(self._owner, self._command, exc) from exc
        return self

    def run(self, *command: Any) -> Any:
        """Run ``command``, and once more if its failure proves nothing (see the module).

        Redis may well be up, and the failure a one-off or a pause on our
        side (a busy interpreter, a garbage collection) past the timeout.
        """
        client: Any = self.client
        try:
            return client.execute_command(*command)
        except UNANSWERED:
            seen = self._turns.again(self._seen, self._answered)
            if seen is None:
                raise
        self._seen = seen
        return client.execute_command(*command)

    def call(self, operation: Callable[[C], R]) -> R:
        """Run ``operation(client)`` (a pipeline, an MGET by slot) as ``run`` runs a command."""
        try:
            return operation(self.client)
        except UNANSWERED:
            seen = self._turns.again(self._seen, self._answered)
            if seen is None:
                raise
        self._seen = seen
        return operation(self.client)

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        self._turns.give_back(self._seen, ANSWERED if exc is None else _outcome(exc))
        if isinstance(exc, FAILURES):
            raise backend_error(self._owner, self._command, exc) from exc


class AsyncTurn(Generic[C]):
    """The same on the running loop's client."""

    __slots__ = ("_answered", "_command", "_get", "_owner", "_seen", "_turns", "client")

    def __init__(
        self,
        owner: object,
        command: str,
        get: Callable[[], Awaitable[tuple[C, AsyncTurns | NoTurns]]],
    ) -> None:
        self._owner, self._command, self._get, self._seen = owner, command, get, 0
        self._turns: AsyncTurns | NoTurns = NO_TURNS

    async def __aenter__(self) -> AsyncTurn[C]:
        try:
            self.client, turns = await self._get()
            seen = turns.take()
            if seen is None:
                seen = await turns.wait()
        except FAILURES as exc:
            raise backend_error(self._owner, self._command, exc) from exc
        self._turns, self._seen, self._answered = turns, seen, turns.answered
        try:
            # Start the command's clock when the loop comes back to it: a burst
            # of tasks, each taking its turn first, can hold the loop for longer
            # than the timeout, which would otherwise expire on a healthy server.
            await asyncio.sleep(0)
        except BaseException:
            turns.give_back(seen, NEITHER)
            raise
        return self

    async def run(self, *command: Any) -> Any:
        """Run ``command``, and once more if its failure proves nothing."""
        client: Any = self.client
        try:
            return await client.execute_command(*command)
        except UNANSWERED:
            seen = self._turns.again(self._seen, self._answered)
            if seen is None:
                raise
        self._seen = seen
        return await client.execute_command(*command)

    async def call(self, operation: Callable[[C], Awaitable[R]]) -> R:
        """Run ``operation(client)`` as ``run`` runs a command."""
        try:
            return await operation(self.client)
        except UNANSWERED:
            seen = self._turns.again(self._seen, self._answered)
            if seen is None:
                raise
        self._seen = seen
        return await operation(self.client)

    async def __aexit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        self._turns.give_back(self._seen, ANSWERED if exc is None else _outcome(exc))
        if isinstance(exc, FAILURES):
            raise backend_error(self._owner, self._command, exc) from exc


def _outcome(exc: BaseException) -> bool | None:
    """How a command that raised ``exc`` counts for the line: did Redis answer it?"""
    if isinstance(exc, UNANSWERED):
        return FAILED
    return ANSWERED if isinstance(exc, Exception) else NEITHER  # an error reply; a cancellation
