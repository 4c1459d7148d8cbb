"""Async twins for a backend whose I/O blocks: run each call on a worker thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from instructor_cache._ttl import TTL

__all__ = ["ThreadedAsyncMixin"]

T = TypeVar("T")


class ThreadedAsyncMixin:
    """Gives a blocking backend its ``a``-prefixed twins without blocking the event loop.

    The calls run on one worker thread that belongs to the backend, not on
    the loop's shared executor: a backend whose connections are per thread
    (SQLite's) can then close the worker's connection in ``close_worker``
    instead of leaving it to the garbage collector when some pool thread ends.
    """

    _worker: ThreadPoolExecutor | None = None
    _worker_lock = threading.Lock()

    def get(self, key: str) -> str | None:
        raise NotImplementedError

    def set(self, key: str, value: str, ttl: TTL = None) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the backend's worker thread, awaited."""
        worker = self._worker
        if worker is None:
            with self._worker_lock:
                if self._worker is None:
                    name = f"instructor_cache-{type(self).__name__}"
                    self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
                worker = self._worker
        return await asyncio.get_running_loop().run_in_executor(worker, fn, *args)

    def close_worker(self, close_there: Callable[[], object]) -> None:
        """Run ``close_there`` on the worker thread, then stop the thread."""
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.submit(close_there).result()
            worker.shutdown(wait=True)

    async def aget(self, key: str) -> str | None:
        return await self.in_worker(self.get, key)

    async def aset(self, key: str, value: str, ttl: TTL = None) -> None:
        await self.in_worker(self.set, key, value, ttl)

    async def adelete(self, key: str) -> bool:
        return await self.in_worker(self.delete, key)

    async def aclear(self) -> None:
        await self.in_worker(self.clear)
