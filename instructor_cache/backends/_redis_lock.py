"""The short lock that lets one process compute an entry while the others wait: no scripts.

A lock is a key of its own, ``<entry name>:lock``: an entry's key ends in
its hexadecimal digest (see ``_keys``), so no entry is ever named like a
lock, and ``get`` of the entry never sees it. On a Cluster the lock hashes
on its own name, so it may live on another node than its entry (on the
entry's slot when the entry's name carries a ``{hash tag}``, as a prefix
may); nothing ever names both in one command.

Taking it is ``SET NX PX`` followed by a ``GET`` in the same pipeline: the
caller holds the lock when the GET answers its token. Sent twice (a reply
lost to a timeout, then the command run again in its turn), it still
answers True to the caller who holds it, where a bare ``SET NX`` would
answer False and leave that caller waiting for its own lock.

Releasing it must not delete a lock that expired and was taken by another
caller since. The usual compare-and-delete is a Lua script, which a Redis
user may be denied (managed Redis often does that); here it is a
transaction: ``WATCH`` the lock, ``GET`` it, and only if it holds the
token, ``MULTI``/``DEL``/``EXEC``, which Redis refuses to run if the lock
changed after the WATCH. On a Cluster the lock is one key, so its
transaction is one node's: the sync cluster client runs it as a transaction
pipeline; the asyncio one would run each watched command on a thread of its
own, blocking the event loop meanwhile, so here the commands go on one of
the node's connections directly.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

__all__ = ["SUFFIX", "aunlock", "holds", "lock_commands", "lock_name", "unlock"]

SUFFIX = ":lock"
Command = tuple[Any, ...]

_LONGEST = 10.0**12
"""The longest lock, in seconds (some 31,700 years): Redis refuses an expiry it cannot add to
its clock in milliseconds, and ``single_flight`` may be any finite number of seconds."""


def lock_name(entry_name: str) -> str:
    """The key that holds the lock of the entry named ``entry_name`` (prefix included)."""
    return entry_name + SUFFIX


def lock_commands(name: str, token: str, ttl: float) -> tuple[Command, Command]:
    """SET the token if the lock is free, then read who holds it."""
    milliseconds = max(1, int(min(ttl, _LONGEST) * 1000))
    return ("SET", name, token, "NX", "PX", milliseconds), ("GET", name)


def holds(replies: list[Any], token: str) -> bool:
    """Whether the GET of ``lock_commands`` answered ``token``."""
    return _is(replies[1], token)


def unlock(client: redis.Redis | redis.cluster.RedisCluster, name: str, token: str) -> bool:
    """Delete the lock ``name`` if ``token`` holds it; True if it was deleted."""
    pipe: Any = client.pipeline(transaction=True)  # redis-py's pipelines have no annotations
    with pipe:
        pipe.watch(name)
        if not _is(pipe.get(name), token):
            return False
        pipe.multi()
        pipe.delete(name)
        try:
            return bool(pipe.execute()[0])
        except redis.WatchError:  # it changed since the GET: expired, and taken by another
            return False


async def aunlock(
    client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster, name: str, token: str
) -> bool:
    """The same on an asyncio client."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        return await _aunlock_on_cluster(client, name, token)
    pipe: Any = client.pipeline(transaction=True)
    async with pipe:
        await pipe.watch(name)
        if not _is(await pipe.get(name), token):
            return False
        pipe.multi()
        pipe.delete(name)
        try:
            return bool((await pipe.execute())[0])
        except redis.WatchError:
            return False


async def _aunlock_on_cluster(
    client: redis.asyncio.cluster.RedisCluster, name: str, token: str
) -> bool:
    """WATCH, GET, and MULTI/DEL/EXEC on one connection of the node that holds ``name``.

    A failure (a timeout, a MOVED while slots migrate) drops the connection,
    so that no WATCH and no unread reply goes back to the pool.
    """
    await client.initialize()  # a no-op once the client knows the slots
    node: Any = client.get_node_from_key(name)  # redis-py's cluster nodes have no annotations
    connection = node.acquire_connection()
    try:
        await connection.send_packed_command(
            connection.pack_commands([("WATCH", name), ("GET", name)])
        )
        await connection.read_response()
        if not _is(await connection.read_response(), token):
            await connection.send_command("UNWATCH")
            await connection.read_response()
            return False
        await connection.send_packed_command(
            connection.pack_commands([("MULTI",), ("DEL", name), ("EXEC",)])
        )
        replies = [await connection.read_response() for _ in range(3)]
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        node.release(connection)
    deleted = replies[2]  # None: the lock changed after the WATCH
    return deleted is not None and bool(deleted[0])


def _is(value: Any, token: str) -> bool:
    """Whether a reply is ``token``, from a client that decodes replies or one that does not."""
    return value == token if isinstance(value, str) else value == token.encode()
