"""Shared cache on Redis (single node or Cluster), with short timeouts and no hidden retries."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import NoBackoff

from instructor_cache._breaker import CircuitBreaker
from instructor_cache.backends._failures import as_backend_error
from instructor_cache.backends._ttl import TTL, to_seconds
from instructor_cache.errors import ConfigurationError

__all__ = ["RedisCache"]

_DEFAULT_TIMEOUT = 0.25
_SCAN_COUNT = 1000
# What a Redis call can raise: the server's and the client's errors (redis.RedisError
# covers connection, timeout, authentication and out-of-memory), and the socket's.
_FAILURES = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)

SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class RedisCache:
    """Entries as plain strings under their keys (``prefix + key``), TTL set in the same SET.

    Give it a URL (``redis://``, ``rediss://`` for TLS, ``unix://``, with
    password and db) or a client you made (``redis.Redis``,
    ``redis.asyncio.Redis``, ``redis.cluster.RedisCluster``). From a URL it
    builds its clients itself with the failure behaviour a cache needs:
    connect and operation timeouts of ``timeout`` seconds (0.25 by default,
    where redis-py waits 5 s) and no retries (redis-py retries with backoff),
    so a dead or slow Redis costs a call a fraction of a second, and after a
    few failures its ``circuit_breaker`` makes decorated functions skip it
    for a cooldown without paying even that. ``cluster=True`` (or a cluster
    client) talks to a Redis Cluster.

    One connection pool serves sync calls; async calls get one per event
    loop, since redis-py's asyncio connections belong to the loop that made
    them. A client you pass in is used as it is, with your timeouts.
    """

    def __init__(
        self,
        url_or_client: str | SyncClient | AsyncClient = "redis://localhost:6379/0",
        *,
        prefix: str = "",
        ttl: TTL = None,
        timeout: float = _DEFAULT_TIMEOUT,
        cluster: bool = False,
        circuit_breaker: CircuitBreaker | None = None,
        **client_options: Any,
    ) -> None:
        # A prefix ends at a separator, so that "instructor" never matches the
        # keys of "instructor-staging" when clearing by pattern.
        self.prefix = prefix if not prefix or prefix.endswith(":") else prefix + ":"
        self._ttl = to_seconds(ttl)
        self.circuit_breaker = circuit_breaker if circuit_breaker is not None else CircuitBreaker()
        self._lock = threading.Lock()
        self._sync: SyncClient | None = None
        self._async_by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncClient, AsyncIterator[None]]
        ] = weakref.WeakKeyDictionary()
        self._given_async: AsyncClient | None = None
        if isinstance(url_or_client, str):
            self._url: str | None = url_or_client
            self._cluster = cluster
            self._options = {
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "decode_responses": True,
                **client_options,
            }
        elif isinstance(url_or_client, (redis.Redis, redis.cluster.RedisCluster)):
            self._url, self._sync = None, url_or_client
            self._cluster = isinstance(url_or_client, redis.cluster.RedisCluster)
        elif isinstance(url_or_client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            self._url, self._given_async = None, url_or_client
            self._cluster = isinstance(url_or_client, redis.asyncio.cluster.RedisCluster)
        else:
            raise ConfigurationError(
                f"RedisCache takes a redis:// URL or a redis-py client, got {url_or_client!r}"
            )

    def __repr__(self) -> str:
        where = self._url or type(self._sync or self._given_async).__name__
        return f"RedisCache({where!r}, prefix={self.prefix!r})"

    # -- clients ---------------------------------------------------------------

    @property
    def client(self) -> SyncClient:
        """The sync client, made on first use.

        Made outside the lock: a cluster client connects in its constructor,
        and callers must not queue behind one another's connect timeouts.
        """
        client = self._sync
        if client is None:
            if self._url is None:
                raise ConfigurationError(
                    "this RedisCache was given an asyncio client only: sync calls (and "
                    "cache_clear) need a URL or a sync client (redis.Redis)"
                )
            made = self._make_sync(self._url)
            with self._lock:
                if self._sync is None:
                    self._sync = made
                client = self._sync
            if client is not made:  # another thread won the race
                made.close()
        return client

    @property
    def _sync_only(self) -> bool:
        """Given only a sync client: async calls run it in a worker thread."""
        return self._url is None and self._given_async is None

    async def aclient(self) -> AsyncClient:
        """The async client for the running event loop, made on first use in that loop.

        It is closed when the loop shuts down (``asyncio.run`` does that on
        exit): an async generator started here is finalised by the loop's
        ``shutdown_asyncgens()``, and its ``finally`` closes the client's
        connections, so no socket outlives its loop.
        """
        if self._given_async is not None:
            return self._given_async
        loop = asyncio.get_running_loop()
        entry = self._async_by_loop.get(loop)
        if entry is not None:
            return entry[0]
        if self._url is None:
            raise ConfigurationError("no URL to make an asyncio client from")
        client = self._make_async(self._url)
        closer = _close_when_the_loop_shuts_down(client, self._async_by_loop, loop)
        await closer.__anext__()
        self._async_by_loop[loop] = (client, closer)
        return client

    async def aclose(self) -> None:
        """Close the async client of the running loop now, rather than at loop shutdown."""
        entry = self._async_by_loop.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()

    def _make_sync(self, url: str) -> SyncClient:
        retry = redis.retry.Retry(NoBackoff(), 0)
        if self._cluster:
            return redis.cluster.RedisCluster.from_url(url, retry=retry, **self._options)
        return redis.Redis.from_url(url, retry=retry, **self._options)

    def _make_async(self, url: str) -> AsyncClient:
        retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
        if self._cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(url, retry=retry, **self._options)
        return redis.asyncio.Redis.from_url(url, retry=retry, **self._options)

    @property
    def maxsize(self) -> int | None:
        return None  # bounded by the server's maxmemory, not by a count

    # No __len__: counting keys under a prefix is a SCAN of the whole db, too
    # dear for cache_info(), which reports currsize=None for Redis.

    # -- the backend protocol --------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._failures("GET"):
            value = self.client.get(self.prefix + key)
        return _text(value)

    async def aget(self, key: str) -> str | None:
        if self._sync_only:
            return await asyncio.to_thread(self.get, key)
        with self._failures("GET"):
            value = await (await self.aclient()).get(self.prefix + key)
        return _text(value)

    def remaining_ttl(self, key: str) -> float | None:
        """Seconds the entry has left (PTTL): ``None`` for no expiry, 0 for no entry."""
        with self._failures("PTTL"):
            milliseconds = self.client.pttl(self.prefix + key)
        return _seconds(milliseconds)

    async def aremaining_ttl(self, key: str) -> float | None:
        if self._sync_only:
            return await asyncio.to_thread(self.remaining_ttl, key)
        with self._failures("PTTL"):
            milliseconds = await (await self.aclient()).pttl(self.prefix + key)
        return _seconds(milliseconds)

    def set(self, key: str, value: str, ttl: TTL = None) -> None:
        milliseconds = self._milliseconds(ttl)
        with self._failures("SET"):
            self.client.set(self.prefix + key, value, px=milliseconds)

    async def aset(self, key: str, value: str, ttl: TTL = None) -> None:
        if self._sync_only:
            await asyncio.to_thread(self.set, key, value, ttl)
            return
        milliseconds = self._milliseconds(ttl)
        with self._failures("SET"):
            await (await self.aclient()).set(self.prefix + key, value, px=milliseconds)

    def delete(self, key: str) -> bool:
        with self._failures("DEL"):
            return bool(self.client.delete(self.prefix + key))

    async def adelete(self, key: str) -> bool:
        if self._sync_only:
            return await asyncio.to_thread(self.delete, key)
        with self._failures("DEL"):
            return bool(await (await self.aclient()).delete(self.prefix + key))

    def clear(self) -> None:
        """Delete every key under this cache's prefix; never FLUSHDB.

        Without a prefix the cache cannot tell its keys from the db's others,
        so it refuses rather than empty the database.
        """
        self.clear_prefix(self._whole_cache())

    async def aclear(self) -> None:
        await self.aclear_prefix(self._whole_cache())

    def _whole_cache(self) -> str:
        if not self.prefix:
            raise ConfigurationError(
                f"{self!r} has no prefix, so clear() would delete every key in the database; "
                "give it a prefix, or clear one function's entries with cache_clear()"
            )
        return ""

    def clear_prefix(self, prefix: str) -> int:
        """Delete the keys under ``prefix`` by SCAN (on every primary of a cluster), never KEYS."""
        client, deleted = self.client, 0
        with self._failures("SCAN/UNLINK"):
            for batch in _batches(client.scan_iter(match=self._pattern(prefix), count=_SCAN_COUNT)):
                deleted += int(client.unlink(*batch))  # a cluster client splits it by slot
        return deleted

    async def aclear_prefix(self, prefix: str) -> int:
        if self._sync_only:
            return await asyncio.to_thread(self.clear_prefix, prefix)
        client, deleted = await self.aclient(), 0
        with self._failures("SCAN/UNLINK"):
            keys = client.scan_iter(match=self._pattern(prefix), count=_SCAN_COUNT)
            async for batch in _abatches(keys):
                deleted += int(await client.unlink(*batch))  # a cluster client splits it by slot
        return deleted

    def close(self) -> None:
        """Close the sync connection pool; async clients close with their event loops."""
        with self._lock:
            if self._sync is not None and self._url is not None:
                self._sync.close()
                self._sync = None

    # -- helpers ---------------------------------------------------------------

    def _failures(self, command: str) -> contextlib.AbstractContextManager[None]:
        return as_backend_error(self, command, _FAILURES)

    def _milliseconds(self, ttl: TTL) -> int | None:
        seconds = self._ttl if ttl is None else to_seconds(ttl)
        return None if seconds is None else max(1, round(seconds * 1000))

    def _pattern(self, prefix: str) -> str:
        return _escape_glob(self.prefix + prefix) + "*"


async def _close_when_the_loop_shuts_down(
    client: AsyncClient, clients: weakref.WeakKeyDictionary[Any, Any], loop: Any
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        clients.pop(loop, None)  # the entry refers to the loop: let both go
        await client.aclose()


def _seconds(milliseconds: Any) -> float | None:
    if milliseconds == -1:  # no expiry
        return None
    return max(0.0, float(milliseconds) / 1000)  # -2, no such key: nothing left


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "replace")  # a client made without decode_responses


def _escape_glob(text: str) -> str:
    """Escape the characters SCAN MATCH treats as a pattern (``*?[]\\``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _batches(keys: Iterator[Any], size: int = 500) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _abatches(keys: AsyncIterator[Any], size: int = 500) -> AsyncIterator[list[Any]]:
    batch: list[Any] = []
    async for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
