"""Shared cache on Redis (single node or Cluster), with short timeouts and no hidden retries."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import NoBackoff

from instructor_cache._instructor_hook import InstructorCompatible
from instructor_cache._ttl import TTL, bounded, to_seconds
from instructor_cache.backends import _redis_lock
from instructor_cache.backends._deadline import with_deadline
from instructor_cache.backends._loops import PerLoop
from instructor_cache.backends._pipelines import (
    CHUNK,
    abatches,
    amget,
    amget_with_pttl,
    apipeline,
    batches,
    chunks,
    mget,
    mget_with_pttl,
    pipeline,
)
from instructor_cache.backends._turns import (
    NO_TURNS,
    AsyncTurn,
    AsyncTurns,
    NoTurns,
    Turn,
    Turns,
)
from instructor_cache.errors import ConfigurationError

__all__ = ["RedisCache"]

_DEFAULT_TIMEOUT = 0.25
_DEFAULT_CONNECTIONS = 100
# Connections a client may open beyond the commands in flight: a cluster client
# queries the topology on a connection of its own while commands hold the rest.
_SPARE_CONNECTIONS = 8
_SCAN_COUNT = 1000
SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class RedisCache(InstructorCompatible):
    """Entries as plain strings under their keys (``prefix + key``), TTL set in the same SET.

    Give it a URL (``redis://``, ``rediss://`` for TLS, ``unix://``, with
    password and db) or a client you made (``redis.Redis``,
    ``redis.asyncio.Redis``, ``redis.cluster.RedisCluster``). From a URL it
    builds its clients itself with the failure behaviour a cache needs: a
    connect timeout and a whole-command timeout of ``timeout`` seconds (0.25
    by default, where redis-py waits 5 s per socket read) and none of
    redis-py's retries with backoff, so a dead, stalled or slow Redis costs a
    call a fraction of a second; a failure is raised as ``BackendError``
    (decorated functions fall back, and their guard's circuit breaker skips
    a failing Redis for a cooldown). ``cluster=True`` (or a cluster client)
    talks to a Redis Cluster; bulk reads and writes are grouped by slot.
    It runs no scripts, so a Redis user denied scripting (as on managed
    Redis) serves it in full.

    It is a ``LockingStore``: ``lock`` and ``unlock`` take and release the
    short lock under which one process computes a missing entry while the
    others wait, a key of its own (``prefix + key + ":lock"``, which no
    entry's key ends with); on a Cluster it hashes on its own name, so it
    may live on another node than its entry (see ``_redis_lock``).

    At most ``max_connections`` (100) commands are in flight per client;
    callers beyond that wait in line for a connection rather than fail, so a
    burst of hits is served in full; the line gives up only when Redis stops
    answering (see ``_turns``); a bulk call (``get_many``, ``set_many``)
    takes one place in that line. One pool serves sync calls; async calls get
    one per event loop, since redis-py's asyncio connections belong to the
    loop that made them. A client you pass in is used as it is, with your
    timeouts and pool.
    """

    def __init__(
        self,
        url_or_client: str | SyncClient | AsyncClient = "redis://localhost:6379/0",
        *,
        prefix: str = "",
        ttl: TTL = None,
        timeout: float = _DEFAULT_TIMEOUT,
        cluster: bool = False,
        **client_options: Any,
    ) -> None:
        # A prefix ends at a separator, so that "instructor" never matches the
        # keys of "instructor-staging" when clearing by pattern.
        self.prefix = prefix if not prefix or prefix.endswith(":") else prefix + ":"
        if "circuit_breaker" in client_options:  # else it would reach redis-py, and fail there
            raise ConfigurationError(
                "RedisCache takes no circuit_breaker any more: a store only raises, and the "
                "circuit breaker belongs to the layer the decorator puts around every store; "
                "configure it there"
            )
        self._ttl = to_seconds(ttl)
        self._lock = threading.Lock()
        self._sync: SyncClient | None = None
        self._per_loop: PerLoop[AsyncClient] = PerLoop()
        self._given_async: AsyncClient | None = None
        self._turns: Turns | NoTurns = NO_TURNS
        self._connections = _DEFAULT_CONNECTIONS
        if isinstance(url_or_client, str):
            self._url: str | None = url_or_client
            self._cluster = cluster
            self._connections = client_options.pop("max_connections", None) or _DEFAULT_CONNECTIONS
            self._turns = Turns(self._connections)
            self._options = {
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "decode_responses": True,
                "max_connections": self._connections + _SPARE_CONNECTIONS,
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
                    "this RedisCache was given an asyncio client only: sync calls need a URL "
                    "or a sync client (redis.Redis); an async function clears its entries "
                    "with `await fn.acache_clear()`"
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
    def serves_sync_calls(self) -> bool:
        """False for one given an asyncio client only: it has no client for sync calls."""
        return self._url is not None or self._sync is not None

    @property
    def _sync_only(self) -> bool:
        """Given only a sync client: async calls run it in a worker thread."""
        return self._url is None and self._given_async is None

    async def aclient(self) -> AsyncClient:
        """The async client for the running event loop, made on first use in that loop."""
        return (await self._aclient_and_turns())[0]

    async def _aclient_and_turns(self) -> tuple[AsyncClient, AsyncTurns | NoTurns]:
        """The running loop's client and line, made on first use in that loop (see _loops)."""
        if self._given_async is not None:
            return self._given_async, NO_TURNS
        client, turns = await self._per_loop.get(self._make_async_and_turns)
        return client, turns

    async def aclose(self) -> None:
        """Close the async client of the running loop now, rather than at loop shutdown."""
        await self._per_loop.aclose()

    def _make_sync(self, url: str) -> SyncClient:
        retry = redis.retry.Retry(NoBackoff(), 0)
        options = dict(self._options)
        scheme = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        base = scheme.get("connection_class", redis.Connection)
        options.setdefault("connection_class", with_deadline(base))
        if self._cluster:
            # RedisCluster lets a rediss:// URL override connection_class with
            # plain SSLConnection; the class given here already speaks TLS.
            url = url.replace("rediss://", "redis://", 1)
            return redis.cluster.RedisCluster.from_url(url, retry=retry, **options)
        return redis.Redis.from_url(url, retry=retry, **options)

    def _make_async_and_turns(self) -> tuple[AsyncClient, AsyncTurns]:
        if self._url is None:
            raise ConfigurationError("no URL to make an asyncio client from")
        retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
        options, turns = self._options, AsyncTurns(self._connections)
        if self._cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(
                self._url, retry=retry, **options
            ), turns
        return redis.asyncio.Redis.from_url(self._url, retry=retry, **options), turns

    @property
    def maxsize(self) -> int | None:
        return None  # bounded by the server's maxmemory, not by a count

    # No __len__: counting keys under a prefix is a SCAN of the whole db, too
    # dear for cache_info(), which reports currsize=None for Redis.

    # -- the backend protocol --------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._turn("GET") as turn:
            return _text(turn.run("GET", self.prefix + key))

    async def aget(self, key: str) -> str | None:
        if self._sync_only:
            return await asyncio.to_thread(self.get, key)
        async with self._aturn("GET") as turn:
            return _text(await turn.run("GET", self.prefix + key))

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        """The entry and the seconds it has left (``None``: no expiry), in one round trip.

        A GET and a PTTL sent together in one pipeline, not a Lua script: a
        Redis user may be denied scripting (managed Redis often does that),
        and every read of a tier would then fail. On a cluster both name one
        key, so one node answers both. The two are not atomic: an entry
        deleted in between comes back with no time left, so no tier keeps a
        copy of it.
        """
        commands = self._get_and_pttl(key)
        with self._turn("GET+PTTL") as turn:
            return _with_ttl(turn.call(functools.partial(pipeline, commands=commands)))

    async def aget_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        if self._sync_only:
            return await asyncio.to_thread(self.get_with_ttl, key)
        commands = self._get_and_pttl(key)
        async with self._aturn("GET+PTTL") as turn:
            return _with_ttl(await turn.call(functools.partial(apipeline, commands=commands)))

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        command = self._set_command(key, value, ttl)
        with self._turn("SET") as turn:
            turn.run(*command)

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        if self._sync_only:
            await asyncio.to_thread(self.set, key, value, ttl)
            return
        command = self._set_command(key, value, ttl)
        async with self._aturn("SET") as turn:
            await turn.run(*command)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The entries of ``keys`` in their order: MGET, by slot on a cluster, in chunks."""
        if not keys:
            return []
        values: list[Any] = []
        with self._turn("MGET") as turn:
            for names in chunks([self.prefix + key for key in keys]):
                values += turn.call(functools.partial(mget, names=names))
        return [_text(value) for value in values]

    async def aget_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        if self._sync_only:
            return await asyncio.to_thread(self.get_many, keys)
        values: list[Any] = []
        async with self._aturn("MGET") as turn:
            for names in chunks([self.prefix + key for key in keys]):
                values += await turn.call(functools.partial(amget, names=names))
        return [_text(value) for value in values]

    def get_many_with_ttl(self, keys: Sequence[str]) -> list[tuple[str, float | None] | None]:
        """``get_with_ttl`` for many keys: their GET+PTTL pairs in one pipeline, in chunks.

        What coalesced reads of a lower tier use, so that a burst of them
        still backfills the tiers above with each entry's remaining life.
        """
        if not keys:
            return []
        pairs: list[tuple[Any, Any]] = []
        with self._turn("GET+PTTL (pipeline)") as turn:
            for names in chunks([self.prefix + key for key in keys], CHUNK // 2):
                pairs += turn.call(functools.partial(mget_with_pttl, names=names))
        return [_with_ttl(pair) for pair in pairs]

    async def aget_many_with_ttl(
        self, keys: Sequence[str]
    ) -> list[tuple[str, float | None] | None]:
        if not keys:
            return []
        if self._sync_only:
            return await asyncio.to_thread(self.get_many_with_ttl, keys)
        pairs: list[tuple[Any, Any]] = []
        async with self._aturn("GET+PTTL (pipeline)") as turn:
            for names in chunks([self.prefix + key for key in keys], CHUNK // 2):
                pairs += await turn.call(functools.partial(amget_with_pttl, names=names))
        return [_with_ttl(pair) for pair in pairs]

    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        """Every entry with the same TTL: SETs in one pipeline (across slots), in chunks."""
        if not items:
            return
        with self._turn("SET (pipeline)") as turn:
            for commands in chunks(self._set_commands(items, ttl)):
                turn.call(functools.partial(pipeline, commands=commands))

    async def aset_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        if not items:
            return
        if self._sync_only:
            await asyncio.to_thread(self.set_many, items, ttl)
            return
        async with self._aturn("SET (pipeline)") as turn:
            for commands in chunks(self._set_commands(items, ttl)):
                await turn.call(functools.partial(apipeline, commands=commands))

    def delete(self, key: str) -> bool:
        with self._turn("DEL") as turn:
            return bool(turn.run("DEL", self.prefix + key))

    async def adelete(self, key: str) -> bool:
        if self._sync_only:
            return await asyncio.to_thread(self.delete, key)
        async with self._aturn("DEL") as turn:
            return bool(await turn.run("DEL", self.prefix + key))

    # -- the lock under which one process computes an entry (see _redis_lock) ------

    def lock(self, key: str, token: str, ttl: float) -> bool:
        commands = _redis_lock.lock_commands(self._lock_name(key), token, ttl)
        with self._turn("SET NX (lock)") as turn:
            return _redis_lock.holds(
                turn.call(functools.partial(pipeline, commands=commands)), token
            )

    async def alock(self, key: str, token: str, ttl: float) -> bool:
        if self._sync_only:
            return await asyncio.to_thread(self.lock, key, token, ttl)
        commands = _redis_lock.lock_commands(self._lock_name(key), token, ttl)
        async with self._aturn("SET NX (lock)") as turn:
            replies = await turn.call(functools.partial(apipeline, commands=commands))
        return _redis_lock.holds(replies, token)

    def unlock(self, key: str, token: str) -> bool:
        release = functools.partial(_redis_lock.unlock, name=self._lock_name(key), token=token)
        with self._turn("WATCH/DEL (unlock)") as turn:
            return turn.call(release)

    async def aunlock(self, key: str, token: str) -> bool:
        if self._sync_only:
            return await asyncio.to_thread(self.unlock, key, token)
        release = functools.partial(_redis_lock.aunlock, name=self._lock_name(key), token=token)
        async with self._aturn("WATCH/DEL (unlock)") as turn:
            return await turn.call(release)

    def clear(self) -> None:
        """Delete every key under this cache's prefix; never FLUSHDB (see ``clear_prefix``)."""
        self.clear_prefix("")

    async def aclear(self) -> None:
        await self.aclear_prefix("")

    def clear_prefix(self, prefix: str) -> int:
        """Delete the keys under ``prefix`` by SCAN (on every primary of a cluster), never KEYS.

        Without a prefix of its own the cache cannot tell its keys from the
        database's others (an application's sessions, queues), so it refuses
        to clear them all (``prefix=""``, as ``clear()`` and a tiered cache's
        ``clear()`` ask) rather than empty the database.
        """
        pattern = self._pattern(prefix)
        deleted = 0
        with self._turn("SCAN/UNLINK") as turn:
            client = turn.client
            for batch in batches(client.scan_iter(match=pattern, count=_SCAN_COUNT)):
                deleted += int(client.unlink(*batch))  # a cluster client splits it by slot
        return deleted

    async def aclear_prefix(self, prefix: str) -> int:
        pattern = self._pattern(prefix)
        if self._sync_only:
            return await asyncio.to_thread(self.clear_prefix, prefix)
        deleted = 0
        async with self._aturn("SCAN/UNLINK") as turn:
            client = turn.client
            keys = client.scan_iter(match=pattern, count=_SCAN_COUNT)
            async for batch in abatches(keys):
                deleted += int(await client.unlink(*batch))  # a cluster client splits it by slot
        return deleted

    def scan(self, prefix: str = "") -> Iterator[str]:
        """The keys under ``prefix`` (this cache's own prefix taken off), by SCAN, never KEYS.

        On a cluster, SCAN runs on every primary in turn. Redis may yield a
        key twice while it rehashes; locks are not entries and are left
        out. A cache without a prefix of its own scans the whole database,
        whatever else it holds.
        """
        pattern = _escape_glob(self.prefix + prefix) + "*"
        start = len(self.prefix)
        with self._turn("SCAN") as turn:
            names = turn.client.scan_iter(match=pattern, count=_SCAN_COUNT)
            for name in names:
                key = _text(name)
                if key is not None and not key.endswith(_redis_lock.SUFFIX):
                    yield key[start:]

    def close(self) -> None:
        """Close the sync connection pool, and the async clients of loops closed meanwhile.

        The async clients of running loops close with their loops.
        """
        with self._lock:
            if self._sync is not None and self._url is not None:
                self._sync.close()
                self._sync = None
        self._per_loop.release_closed_loops()

    # -- helpers ---------------------------------------------------------------

    def _turn(self, command: str) -> Turn[SyncClient]:
        return Turn(self, command, self._client_and_turns)

    def _aturn(self, command: str) -> AsyncTurn[AsyncClient]:
        return AsyncTurn(self, command, self._aclient_and_turns)

    def _client_and_turns(self) -> tuple[SyncClient, Turns | NoTurns]:
        return self.client, self._turns

    def _lock_name(self, key: str) -> str:
        return _redis_lock.lock_name(self.prefix + key)

    def _get_and_pttl(self, key: str) -> tuple[tuple[Any, ...], ...]:
        return ("GET", self.prefix + key), ("PTTL", self.prefix + key)

    def _set_command(self, key: str, value: str, ttl: float | None) -> tuple[Any, ...]:
        seconds = bounded(ttl, self._ttl)
        if seconds is None:
            return ("SET", self.prefix + key, value)
        # Redis refuses an expiry past 2**63 ms from now: "forever" written as a
        # huge TTL (2**63 - 1) would fail every write. Any TTL beyond this one
        # (some 31,700 years) is the same in practice.
        milliseconds = round(min(seconds, _LONGEST_TTL) * 1000)
        return ("SET", self.prefix + key, value, "PX", max(1, milliseconds))

    def _set_commands(self, items: Mapping[str, str], ttl: float | None) -> list[tuple[Any, ...]]:
        return [self._set_command(key, value, ttl) for key, value in items.items()]

    def _pattern(self, prefix: str) -> str:
        """The SCAN MATCH pattern of the keys under ``prefix``; never every key of the db."""
        if not self.prefix + prefix:
            raise ConfigurationError(
                f"{self!r} has no prefix, so clearing it would delete every key in the "
                "database; give the RedisCache a prefix (RedisCache(url, prefix='myapp')), "
                "or clear one function's entries with its cache_clear()"
            )
        return _escape_glob(self.prefix + prefix) + "*"


_LONGEST_TTL = 1e12
"""Seconds: the longest expiry written (see ``_set_command``)."""


def _seconds(milliseconds: Any) -> float | None:
    if milliseconds == -1:  # no expiry
        return None
    return max(0.0, float(milliseconds) / 1000)  # -2, deleted since the GET: nothing left


def _with_ttl(replies: Sequence[Any]) -> tuple[str, float | None] | None:
    value, milliseconds = replies
    text = _text(value)
    return None if text is None else (text, _seconds(milliseconds))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "replace")  # a client made without decode_responses


def _escape_glob(text: str) -> str:
    """Escape the characters SCAN MATCH treats as a pattern (``*?[]\\``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
