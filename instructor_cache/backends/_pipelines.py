"""Many keys on Redis in few round trips: chunks, pipelines, and MGET by cluster slot.

A bulk call is cut into chunks of ``CHUNK`` keys, each its own command or
pipeline, so that no single command holds the server (which runs one at a
time) for long, and each is bounded by the command timeout as a GET is.

On a Cluster one MGET may name keys of one slot only (else CROSSSLOT), so
the keys of each slot get an MGET of their own and the MGETs, or the SETs,
go out in one cluster pipeline: written to every node, then read back.
redis-py's ``mget_nonatomic`` does the same, but the sync cluster pipeline
sends again, one by one, every command that failed with a connection error
or a timeout: with one node stalled, each of its hundreds of commands would
wait a timeout of its own. So the sync pipeline is run without that
(``allow_redirections=False``), and only the commands answered with a
redirect (MOVED, ASK, TRYAGAIN: slots are moving) are sent again, each as
a command of the cluster client, which follows redirects and learns the new
slot map. The asyncio cluster pipeline already sends again only redirects.

Reads with remaining TTLs (``get_many_with_ttl``) are a GET and a PTTL per
key in one pipeline: both name one key, so on a Cluster one node answers
the pair, and the cluster pipeline groups the pairs by node.

(The keys a SCAN yields for ``clear_prefix`` are UNLINKed in batches too.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import AskError, MovedError, TryAgainError

__all__ = [
    "CHUNK",
    "abatches",
    "amget",
    "amget_with_pttl",
    "apipeline",
    "batches",
    "chunks",
    "mget",
    "mget_with_pttl",
    "pipeline",
]

CHUNK = 1000
_REDIRECTS = (MovedError, AskError, TryAgainError)
Command = tuple[Any, ...]


def batches(keys: Iterator[Any], size: int = 500) -> Iterator[list[Any]]:
    """The keys a SCAN yields, in lists of ``size`` (to UNLINK a list at a time)."""
    batch: list[Any] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def abatches(keys: AsyncIterator[Any], size: int = 500) -> AsyncIterator[list[Any]]:
    batch: list[Any] = []
    async for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pipeline(
    client: redis.Redis | redis.cluster.RedisCluster, commands: Sequence[Command]
) -> list[Any]:
    """The replies to ``commands`` in one non-transactional pipeline; the first error raised."""
    if isinstance(client, redis.cluster.RedisCluster):
        return _on_cluster(client, commands)
    pipe: Any = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    replies: list[Any] = pipe.execute()
    return replies


async def apipeline(
    client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster, commands: Sequence[Command]
) -> list[Any]:
    """The same on an asyncio client."""
    pipe: Any = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    replies: list[Any] = await pipe.execute()
    return replies


def mget(client: redis.Redis | redis.cluster.RedisCluster, names: Sequence[str]) -> list[Any]:
    """The values of ``names``, in their order: one MGET, or on a cluster one per slot."""
    if isinstance(client, redis.cluster.RedisCluster):
        groups = _by_slot(client, names)
        return _in_order(len(names), groups, _on_cluster(client, _mgets(names, groups)))
    untyped: Any = client  # redis-py's execute_command has no annotations
    values: list[Any] = untyped.execute_command("MGET", *names)
    return values


async def amget(
    client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster, names: Sequence[str]
) -> list[Any]:
    """The same on an asyncio client."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        groups = _by_slot(client, names)
        return _in_order(len(names), groups, await apipeline(client, _mgets(names, groups)))
    untyped: Any = client
    values: list[Any] = await untyped.execute_command("MGET", *names)
    return values


def mget_with_pttl(
    client: redis.Redis | redis.cluster.RedisCluster, names: Sequence[str]
) -> list[tuple[Any, Any]]:
    """``(value, milliseconds left)`` of each of ``names``, in their order: one pipeline."""
    return _pairs(pipeline(client, _gets_and_pttls(names)))


async def amget_with_pttl(
    client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster, names: Sequence[str]
) -> list[tuple[Any, Any]]:
    """The same on an asyncio client."""
    return _pairs(await apipeline(client, _gets_and_pttls(names)))


def _gets_and_pttls(names: Sequence[str]) -> list[Command]:
    return [command for name in names for command in (("GET", name), ("PTTL", name))]


def _pairs(replies: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(replies[::2], replies[1::2], strict=True))


def _by_slot(
    client: redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster,
    names: Sequence[str],
) -> list[list[int]]:
    """The positions of ``names``, grouped by slot (the client's own hashing)."""
    slots: dict[int, list[int]] = {}
    for position, name in enumerate(names):
        slots.setdefault(client.keyslot(name), []).append(position)
    return list(slots.values())


def _mgets(names: Sequence[str], groups: list[list[int]]) -> list[Command]:
    return [("MGET", *(names[i] for i in positions)) for positions in groups]


def _in_order(count: int, groups: list[list[int]], replies: list[Any]) -> list[Any]:
    values: list[Any] = [None] * count
    for positions, reply in zip(groups, replies, strict=True):
        for position, value in zip(positions, reply, strict=True):
            values[position] = value
    return values


def _on_cluster(client: redis.cluster.RedisCluster, commands: Sequence[Command]) -> list[Any]:
    untyped: Any = client  # redis-py's cluster pipeline has no annotations
    command_type: Any = redis.cluster.PipelineCommand
    stack = [command_type(command, {}, i) for i, command in enumerate(commands)]
    replies: list[Any] = untyped.pipeline().send_cluster_commands(
        stack, raise_on_error=False, allow_redirections=False
    )
    for i, reply in enumerate(replies):
        if isinstance(reply, _REDIRECTS):
            replies[i] = untyped.execute_command(*commands[i])
        elif isinstance(reply, Exception):
            raise reply
    return list(replies)
