"""One asyncio Redis client per event loop, closed with its loop however the loop ends.

redis-py's asyncio connections belong to the loop that opened them, so each
loop gets a client of its own, made on first use. It must not outlive the
loop, and the loop must not outlive its use:

- ``asyncio.run`` (and ``loop.shutdown_asyncgens()``) finalises an async
  generator started with the client: its ``finally`` closes the client.
- A loop closed with ``loop.close()`` alone runs nothing more, and its
  sockets can no longer be closed the asyncio way (closing a transport is a
  callback of the loop). Its client would keep the loop alive, since open
  transports refer to their loop. So the clients of closed loops are
  released (their sockets closed directly, as the loop would have done) at
  the start of every full garbage collection, which is when such a loop
  could be reclaimed, and also when a client is made for another loop and
  when the cache is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, TypeVar

__all__ = ["PerLoop"]

C = TypeVar("C")


class _Entry(Generic[C]):
    __slots__ = ("client", "closer", "extra")

    def __init__(self, client: C, extra: Any) -> None:
        self.client: C | None = client
        self.extra = extra
        self.closer: AsyncGenerator[None, None] | None = None


class PerLoop(Generic[C]):
    """The clients of the event loops in use, each with an ``extra`` (the loop's line)."""

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry[C]] = (
            weakref.WeakKeyDictionary()
        )
        _EVERY.add(self)

    async def get(self, make: Callable[[], tuple[C, Any]]) -> tuple[C, Any]:
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is None or entry.client is None:
            self.release_closed_loops()
            entry = _Entry(*make())
            closer = _close_at_shutdown(self._entries, entry, weakref.ref(loop))
            await closer.__anext__()
            entry.closer = closer
            self._entries[loop] = entry
        return entry.client, entry.extra  # type: ignore[return-value]

    async def aclose(self) -> None:
        """Close the running loop's client now."""
        entry = self._entries.pop(asyncio.get_running_loop(), None)
        if entry is not None and entry.closer is not None:
            await entry.closer.aclose()

    def release_closed_loops(self) -> None:
        for loop, entry in list(self._entries.items()):
            if loop.is_closed():
                self._entries.pop(loop, None)
                _release(entry)


_EVERY: weakref.WeakSet[PerLoop[Any]] = weakref.WeakSet()


def _before_a_full_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "start" and info.get("generation") == 2:
        for per_loop in list(_EVERY):
            per_loop.release_closed_loops()


gc.callbacks.append(_before_a_full_collection)


async def _close_at_shutdown(
    entries: weakref.WeakKeyDictionary[Any, Any], entry: _Entry[Any], loop: weakref.ref[Any]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        running = loop()
        if running is not None and entries.get(running) is entry:
            del entries[running]
        client, entry.client = entry.client, None
        if client is not None:
            await client.aclose()


def _release(entry: _Entry[Any]) -> None:
    """Close the sockets of a client whose loop was closed, and end its closer."""
    client, entry.client = entry.client, None
    if client is not None:
        for connection in _connections(client):
            _close_on_a_closed_loop(connection)
    if entry.closer is not None:  # its finally has nothing left to do: it ends at once
        with contextlib.suppress(StopIteration, RuntimeError):
            entry.closer.aclose().send(None)


def _connections(client: Any) -> list[Any]:
    """The connections of a redis.asyncio client, single node or cluster."""
    if hasattr(client, "get_nodes"):
        return [c for node in client.get_nodes() for c in getattr(node, "_connections", ())]
    pool = client.connection_pool
    idle = getattr(pool, "_available_connections", ())
    return [*idle, *getattr(pool, "_in_use_connections", ())]


def _close_on_a_closed_loop(connection: Any) -> None:
    """Do what closing would have done had the loop run: the socket closed, nothing left open.

    ``abort()`` marks the transport closing, then fails to schedule the rest
    (the loop is closed); the rest, closing the socket, is done here. Reaches
    into redis-py and asyncio internals, guarded: a version without them
    leaves the socket to the garbage collector, as before.
    """
    writer = getattr(connection, "_writer", None)
    if writer is None:
        return
    connection._writer = connection._reader = None
    transport = writer.transport
    with contextlib.suppress(RuntimeError):
        transport.abort()
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None) or transport
    if getattr(inner, "_sock", None) is not None:
        with contextlib.suppress(RuntimeError, AttributeError):
            inner._call_connection_lost(None)
