"""The lock one process computes an entry under, as guard and tiers offer it, on real Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.cluster

from instructor_cache import CircuitBreaker, DiskCache, MemoryCache, RedisCache
from instructor_cache._stats import Stats
from instructor_cache.backends import AsyncLockingStore, LockingStore, Store
from instructor_cache.backends._guard import Guard
from instructor_cache.backends._tiers import Tiers, guarded_tiers
from tests._locks import locked
from tests._redis import RedisServer, running_cluster
from tests._stores import DictStore
from tests.conftest import Clock

# A lock on a dead or stalled Redis costs one timeout of 0.25 s, never a hang.
BOUND = 1.5
FLAVOURS = ["sync", "async"]
Locks = Guard | Tiers


def lock(locks: Locks, flavour: str, key: str, token: str, ttl: float = 60.0) -> bool | None:
    """``lock`` or ``alock`` (in a loop of its own), as the flavour says."""
    if flavour == "sync":
        return locks.lock(key, token, ttl)
    return asyncio.run(locks.alock(key, token, ttl))


def unlock(locks: Locks, flavour: str, key: str, token: str) -> None:
    if flavour == "sync":
        locks.unlock(key, token)
    else:
        asyncio.run(locks.aunlock(key, token))


def guarded(store: Store, breaker: CircuitBreaker | None = None) -> tuple[Guard, Stats]:
    stats = Stats()
    return Guard(store, stats, "extract", breaker or CircuitBreaker()), stats


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


async def atimed(call: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


@pytest.fixture
def prefix() -> str:
    return f"locks-{uuid.uuid4().hex}:"


def test_redis_and_disk_lock_and_memory_does_not(tmp_path: Path) -> None:
    """RedisCache locks with native async twins, DiskCache sync only; memory (one process's) not."""
    cache = RedisCache(prefix="never-connected")
    assert isinstance(cache, LockingStore)
    assert isinstance(cache, AsyncLockingStore)
    disk = DiskCache(tmp_path)
    assert isinstance(disk, LockingStore)
    assert not isinstance(disk, AsyncLockingStore)  # a blocking store: on its worker thread
    assert not isinstance(MemoryCache(), LockingStore)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_held_lock_is_refused_to_another_process_until_released(
    redis_url: str, prefix: str, flavour: str
) -> None:
    """The first caller holds the lock, another process's waits, and only the holder frees it."""
    ours, our_stats = guarded(RedisCache(redis_url, prefix=prefix))
    theirs, _ = guarded(RedisCache(redis_url, prefix=prefix))  # another process's view
    assert ours.locks is True
    assert lock(ours, flavour, "k", "a") is True
    assert lock(theirs, flavour, "k", "b") is False
    unlock(theirs, flavour, "k", "b")  # not the holder: nothing changes
    assert lock(theirs, flavour, "k", "b") is False
    unlock(ours, flavour, "k", "a")
    assert lock(theirs, flavour, "k", "b") is True
    assert our_stats.errors == 0


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_store_without_locks_gives_no_lock_rather_than_a_wait(flavour: str) -> None:
    """Over a store with no lock, the guard says so, lock answers None and unlock does nothing."""
    store = DictStore()
    guard, stats = guarded(store)
    assert guard.locks is False
    assert lock(guard, flavour, "k", "a") is None
    unlock(guard, flavour, "k", "a")
    assert store.data == {}
    assert stats.errors == 0


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_lock_on_a_stopped_redis_is_no_lock_counted_and_quick(
    server: RedisServer, prefix: str, flavour: str
) -> None:
    """With Redis gone, lock answers None and unlock returns, each within a timeout and counted."""
    guard, stats = guarded(RedisCache(server.url, prefix=prefix), CircuitBreaker(failures=100))
    assert lock(guard, flavour, "k", "a") is True
    server.stop()
    held, took = timed(lambda: lock(guard, flavour, "k", "b"))
    assert held is None
    assert took < BOUND
    _, took = timed(lambda: unlock(guard, flavour, "k", "a"))
    assert took < BOUND
    assert stats.errors == 2
    assert guard.breaker.consecutive == 2  # they feed the breaker as any operation does


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_lock_on_a_paused_redis_costs_a_timeout_not_a_hang(
    server: RedisServer, prefix: str, flavour: str
) -> None:
    """A stalled Redis (connections open, no answer) makes lock answer None within a timeout."""
    guard, stats = guarded(RedisCache(server.url, prefix=prefix))
    assert lock(guard, flavour, "warm", "a") is True  # a connection is open before the stall
    server.pause()
    try:
        held, took = timed(lambda: lock(guard, flavour, "k", "a"))
        _, took_to_unlock = timed(lambda: unlock(guard, flavour, "warm", "a"))
    finally:
        server.resume()
    assert held is None
    assert took < BOUND
    assert took_to_unlock < BOUND
    assert stats.errors == 2


def test_locks_on_a_stalled_cluster_cost_a_timeout_not_a_hang(tmp_path: Path) -> None:
    """With every master of a Cluster stalled, lock and unlock, sync and async, each end in time."""
    with running_cluster(tmp_path / "cluster") as nodes:
        store = RedisCache(nodes.url, cluster=True, prefix="stalled:")
        guard, stats = guarded(store, CircuitBreaker(failures=100))

        async def both_async() -> tuple[bool | None, float, float]:
            held, took = await atimed(guard.alock("k", "a", 60.0))
            _, took_to_unlock = await atimed(guard.aunlock("warm", "a"))
            return held, took, took_to_unlock

        async def warm() -> bool | None:  # each loop's client knows the slots before the stall
            return await guard.alock("warm", "a", 60.0)

        assert guard.lock("warm", "a", 60.0) is True
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(warm()) is True
            for server in nodes.servers:
                server.pause()
            try:
                held, took = timed(lambda: guard.lock("k", "a", 60.0))
                _, took_to_unlock = timed(lambda: guard.unlock("warm", "a"))
                assert (held, took < BOUND, took_to_unlock < BOUND) == (None, True, True)
                held, took, took_to_unlock = loop.run_until_complete(both_async())
                assert (held, took < BOUND, took_to_unlock < BOUND) == (None, True, True)
            finally:
                for server in nodes.servers:
                    server.resume()
        finally:
            loop.run_until_complete(store.aclose())
            loop.close()
            store.close()
        # The sync lock and both unlocks failed; the async lock was not asked
        # of a store whose last operation had just failed.
        assert stats.errors == 3


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_failed_lock_feeds_the_breaker_and_the_next_is_not_asked(
    server: RedisServer, prefix: str, flavour: str
) -> None:
    """A lock that fails counts like reads and writes; while the store is failing none is asked."""
    breaker = CircuitBreaker(failures=2)
    guard, stats = guarded(RedisCache(server.url, prefix=prefix), breaker)
    server.stop()
    assert [lock(guard, flavour, "k", "a") for _ in range(3)] == [None, None, None]
    assert (breaker.consecutive, stats.errors) == (1, 1)  # no second timeout for a lock


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_open_breaker_gives_no_lock_and_leaves_redis_alone(
    redis_url: str, prefix: str, clock: Clock, flavour: str
) -> None:
    """While the breaker is open, lock answers None without asking Redis, and unlock skips it."""
    breaker = CircuitBreaker(failures=1, cooldown=5.0, timer=clock)
    guard, stats = guarded(RedisCache(redis_url, prefix=prefix), breaker)
    other, _ = guarded(RedisCache(redis_url, prefix=prefix))
    assert lock(guard, flavour, "held", "a") is True
    breaker.failed()
    assert lock(guard, flavour, "k", "a") is None
    unlock(guard, flavour, "held", "a")
    assert lock(other, flavour, "k", "b") is True  # Redis never saw the first
    assert lock(other, flavour, "held", "b") is False  # nor the release
    assert stats.errors == 1  # the skipped unlock counts; a lock not asked for is no failure
    clock.advance(5.1)
    unlock(guard, flavour, "held", "a")  # the probe: it reaches Redis and closes the breaker
    assert not breaker.is_open
    assert lock(other, flavour, "held", "b") is True


def test_a_lock_that_does_not_answer_a_bool_is_a_failure_not_a_wait() -> None:
    """A user's lock answering neither True nor False (here None) gives no lock and is counted."""

    class VagueLocks(DictStore):
        def lock(self, key: str, token: str, ttl: float) -> bool:
            return None  # type: ignore[return-value]  # the mistake under test

        def unlock(self, key: str, token: str) -> bool:
            return "OK"  # type: ignore[return-value]  # the mistake under test

    guard, stats = guarded(VagueLocks())
    assert guard.locks is True
    assert guard.lock("k", "a", 60.0) is None
    guard.unlock("k", "a")
    assert stats.errors == 2


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tiers_lock_in_redis_under_memory_and_disk(
    redis_url: str, prefix: str, tmp_path: Path, flavour: str
) -> None:
    """Memory over disk over Redis: the lock is taken in Redis, the tier every process shares."""
    disk = DiskCache(tmp_path / "disk")
    try:
        tiers = guarded_tiers(
            [MemoryCache(), disk, RedisCache(redis_url, prefix=prefix)], "extract"
        )
        other, _ = guarded(RedisCache(redis_url, prefix=prefix))  # another machine's view
        assert tiers.locks is True
        assert lock(tiers, flavour, "k", "a") is True
        assert lock(other, flavour, "k", "b") is False
        unlock(tiers, flavour, "k", "a")
        assert lock(other, flavour, "k", "b") is True
        assert lock(tiers, flavour, "k", "a") is False
    finally:
        disk.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tiers_lock_on_disk_when_no_slower_tier_locks(tmp_path: Path, flavour: str) -> None:
    """Memory over disk: the lock is taken on disk, where another process on the machine sees it."""
    disk, elsewhere = DiskCache(tmp_path / "shared"), DiskCache(tmp_path / "shared")
    try:
        tiers = guarded_tiers([MemoryCache(), disk], "extract")
        assert tiers.locks is True
        assert lock(tiers, flavour, "k", "a") is True
        assert elsewhere.lock("k", "b", 60.0) is False
        unlock(tiers, flavour, "k", "a")
        assert elsewhere.lock("k", "b", 60.0) is True
    finally:
        disk.close()
        elsewhere.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tiers_without_a_locking_tier_give_no_lock(flavour: str) -> None:
    """Tiers none of which has a lock say so, and lock answers None."""
    tiers = guarded_tiers([MemoryCache(), DictStore()], "extract", warn=False)
    assert tiers.locks is False
    assert lock(tiers, flavour, "k", "a") is None
    unlock(tiers, flavour, "k", "a")


HOLDER = """
import sys
from instructor_cache import DiskCache
disk = DiskCache(sys.argv[1])
token = "other-process"
print(disk.lock("k", token, 60.0) if sys.argv[2] == "lock" else disk.unlock("k", token))
"""


def _in_another_process(directory: Path, action: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", HOLDER, str(directory), action],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_disk_locks_are_shared_by_the_processes_of_a_directory(tmp_path: Path) -> None:
    """A lock another process took on the directory (then exited) holds here until released."""
    disk = DiskCache(tmp_path)
    try:
        assert _in_another_process(tmp_path, "lock") == "True"
        assert disk.lock("k", "here", 60.0) is False
        assert disk.unlock("k", "here") is False
        assert disk.get("k") is None
        assert _in_another_process(tmp_path, "unlock") == "True"
        assert disk.lock("k", "here", 60.0) is True
        assert _in_another_process(tmp_path, "lock") == "False"
    finally:
        disk.close()


def test_disk_locks_with_an_eviction_policy_that_tracks_reads(tmp_path: Path) -> None:
    """With statistics and LRU eviction (reads that write), locks keep their semantics."""
    disk = DiskCache(tmp_path, eviction_policy="least-recently-used", statistics=True)
    try:
        assert disk.lock("k", "a", 60.0) is True
        assert disk.lock("k", "a", 60.0) is True
        assert disk.lock("k", "b", 60.0) is False
        assert disk.unlock("k", "b") is False
        assert disk.unlock("k", "a") is True
        assert disk.lock("k", "b", 60.0) is True
    finally:
        disk.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_lock_on_a_locked_database_is_no_lock_within_a_timeout(
    tmp_path: Path, flavour: str
) -> None:
    """While another process holds the database locked, lock answers None within its timeout."""
    disk = DiskCache(tmp_path)
    guard, stats = guarded(disk)
    try:
        assert lock(guard, flavour, "warm", "a") is True  # the database exists
        with locked(tmp_path / "cache.db", release_after=60.0):
            held, took = timed(lambda: lock(guard, flavour, "k", "a"))
            _, took_to_unlock = timed(lambda: unlock(guard, flavour, "warm", "a"))
        assert held is None
        assert took < BOUND
        assert took_to_unlock < BOUND
        assert stats.errors == 2
    finally:
        disk.close()


def test_a_redis_user_denied_scripting_takes_and_releases_locks(
    redis_without_scripting: str, prefix: str
) -> None:
    """A Redis user whose ACL forbids scripts (as managed Redis may) locks and unlocks."""
    store = RedisCache(redis_without_scripting, prefix=prefix)
    other = RedisCache(redis_without_scripting, prefix=prefix)
    with pytest.raises(redis.exceptions.NoPermissionError):
        store.client.eval("return 1", 0)
    assert store.lock("k", "a", 60.0) is True
    assert other.lock("k", "b", 60.0) is False
    assert other.unlock("k", "b") is False
    assert store.unlock("k", "a") is True

    async def scenario() -> list[bool]:
        return [
            await store.alock("j", "a", 60.0),
            await other.alock("j", "b", 60.0),
            await other.aunlock("j", "b"),
            await store.aunlock("j", "a"),
            await other.alock("j", "b", 60.0),
        ]

    assert asyncio.run(scenario()) == [True, False, False, True, True]
    store.clear()


# -- a lock that changes hands between the holder's check and its delete ---------

OLD_HOLDER = "holder-whose-lock-expires"


def _seen(take_over: Callable[[], None]) -> Callable[[Any], Any]:
    def seen(reply: Any) -> Any:
        if reply in (OLD_HOLDER, OLD_HOLDER.encode()):
            take_over()
        return reply

    return seen


def _racing(take_over: Callable[[], None]) -> type[redis.Connection]:
    """Sync connections that let another holder take the lock as soon as a reply names OLD_HOLDER.

    Only the release reads OLD_HOLDER back on these connections (the lock was
    taken on others), so the take-over lands between its check and its
    delete: the moment a lock that expired meanwhile is taken by another.
    """
    seen = _seen(take_over)

    class Racing(redis.Connection):
        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            return seen(super().read_response(*args, **kwargs))

    return Racing


def _race_async_connections(monkeypatch: pytest.MonkeyPatch, take_over: Callable[[], None]) -> None:
    """The same for every asyncio connection of the test (the asyncio cluster client takes no
    connection class); the other holder uses sync ones."""
    seen = _seen(take_over)
    read = redis.asyncio.connection.Connection.read_response

    async def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        return seen(await read(self, *args, **kwargs))

    monkeypatch.setattr(redis.asyncio.connection.Connection, "read_response", read_response)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("topology", ["single", "cluster"])
def test_unlock_never_deletes_a_lock_taken_after_its_check(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    topology: str,
    flavour: str,
) -> None:
    """A lock that passes to a new holder after the old one checked it stays with the new holder."""
    cluster = topology == "cluster"
    url: str = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    plain = RedisCache(url, prefix=prefix, cluster=cluster)
    taken_over = []

    def take_over() -> None:  # the old lock expires, and another process takes it
        plain.unlock("k", OLD_HOLDER)
        taken_over.append(plain.lock("k", "new-holder", 60.0))

    client: Any
    if flavour == "sync":
        kind: Any = redis.cluster.RedisCluster if cluster else redis.Redis
        client = kind.from_url(url, connection_class=_racing(take_over))
    else:
        kind = redis.asyncio.cluster.RedisCluster if cluster else redis.asyncio.Redis
        client = kind.from_url(url)
        _race_async_connections(monkeypatch, take_over)
    racing = RedisCache(client, prefix=prefix)
    try:
        assert plain.lock("k", OLD_HOLDER, 60.0) is True
        if flavour == "sync":
            released = racing.unlock("k", OLD_HOLDER)
        else:

            async def release() -> bool:
                try:
                    return await racing.aunlock("k", OLD_HOLDER)
                finally:
                    await client.aclose()

            released = asyncio.run(release())
        assert taken_over == [True]
        assert released is False
        assert plain.lock("k", "third", 60.0) is False
        assert plain.unlock("k", "new-holder") is True
    finally:
        if flavour == "sync":
            client.close()
        plain.clear()
        plain.close()
