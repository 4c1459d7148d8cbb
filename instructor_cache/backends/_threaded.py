"""Async twins for a backend whose I/O blocks: run each call in a worker thread."""

from __future__ import annotations

import asyncio

from instructor_cache.backends._ttl import TTL

__all__ = ["ThreadedAsyncMixin"]


class ThreadedAsyncMixin:
    """Gives a blocking backend its ``a``-prefixed twins without blocking the event loop."""

    def get(self, key: str) -> str | None:
        raise NotImplementedError

    def set(self, key: str, value: str, ttl: TTL = None) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    async def aget(self, key: str) -> str | None:
        return await asyncio.to_thread(self.get, key)

    async def aset(self, key: str, value: str, ttl: TTL = None) -> None:
        await asyncio.to_thread(self.set, key, value, ttl)

    async def adelete(self, key: str) -> bool:
        return await asyncio.to_thread(self.delete, key)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)
