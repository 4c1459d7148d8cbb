"""Adversarial reproducers for issue 11 (one small store contract): each fails today."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from instructor_cache import DiskCache, MemoryCache, RedisCache, TieredCache, instructor_cache
from tests._stores import DictStore
from tests.conftest import FakeLLM, UserDetail

LOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("SELECT count(*) FROM Cache").fetchall()
print("locked", flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def _locked(database: Path, release_after: float) -> Iterator[None]:
    """Another process holds ``database`` locked, at most ``release_after`` seconds."""
    process = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    timer = threading.Timer(release_after, process.kill)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        timer.start()
        yield
    finally:
        timer.cancel()
        process.kill()
        process.communicate(timeout=10)


async def test_concurrent_async_calls_on_a_locked_disk_do_not_queue_behind_each_timeout(
    tmp_path: Path, llm: FakeLLM
) -> None:
    """40 concurrent async calls on a locked database each pay a 0.25 s write in line, 10 s total.

    The breaker opens after three failures, but every write was let through
    before it was queued on the store's single worker thread, so the last
    caller waits for 40 timeouts: the wait grows with the load, unbounded.
    """
    backend = DiskCache(tmp_path / "cache")
    backend.set("warm", "up")

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    texts = [f"N{i} is {i}" for i in range(40)]
    with _locked(tmp_path / "cache" / "cache.db", release_after=60.0):
        started = time.monotonic()
        results = await asyncio.gather(*(extract(text) for text in texts))
        elapsed = time.monotonic() - started
    assert results == [UserDetail(name=f"N{i}", age=i) for i in range(40)]
    assert elapsed < 3.0  # a few timeouts until the breaker opens, not one per caller


@pytest.fixture
def redis_without_scripting(redis_url: str) -> Iterator[str]:
    """A URL for a user of the real Redis who may GET, SET and PTTL but not run scripts (ACL)."""
    admin = redis.Redis.from_url(redis_url)
    user = f"noscript{uuid.uuid4().hex[:8]}"
    admin.execute_command("ACL", "SETUSER", user, "on", ">secret", "~*", "+@all", "-@scripting")
    try:
        yield redis_url.replace("redis://", f"redis://{user}:secret@", 1)
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_redis_tier_that_may_not_run_scripts_still_serves_its_hits(
    redis_without_scripting: str, llm: FakeLLM
) -> None:
    """A Redis tier whose ACL denies EVAL (as managed Redis may) turns every hit into a paid call.

    The tier reads through ``get_with_ttl``, a Lua script; its NOPERM error
    is a failed read, so the entry that GET would have returned is never
    served, the function is paid again, and the breaker then skips Redis.
    """
    memory = MemoryCache()
    shared = RedisCache(redis_without_scripting, prefix=f"adv-{uuid.uuid4().hex[:8]}")
    shared.set("probe", "ok")
    assert shared.get("probe") == "ok"  # the user may read and write plain keys

    @instructor_cache(TieredCache(memory, shared), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    try:
        assert extract("A is 1") == UserDetail(name="A", age=1)
        memory.clear()  # a restarted process: its memory tier is empty, Redis still holds it
        assert extract("A is 1") == UserDetail(name="A", age=1)
        assert len(llm.calls) == 1
    finally:
        shared.clear()
        shared.close()


class TimedeltaTTLStore(DictStore):
    """A user's tier that tells the remaining TTL as a ``timedelta`` rather than float seconds."""

    def get_with_ttl(self, key: str) -> tuple[str, Any] | None:
        text = self.get(key)
        return None if text is None else (text, datetime.timedelta(seconds=60))


class BareTextTTLStore(DictStore):
    """A user's tier whose ``get_with_ttl`` returns the bare text (a user's mistake)."""

    def get_with_ttl(self, key: str) -> Any:
        return self.get(key)


@pytest.mark.parametrize(
    "lower", [TimedeltaTTLStore, BareTextTTLStore], ids=["timedelta-ttl", "bare-text"]
)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_malformed_get_with_ttl_of_a_user_tier_does_not_reach_the_caller(
    lower: type[DictStore], flavour: str, llm: FakeLLM
) -> None:
    """A lower tier's malformed ``get_with_ttl`` answer raises out of the decorated call.

    The guard returns the store's answer unchecked and ``Tiers.get`` unpacks
    it and compares ``ttl > 0`` outside any guard: a TypeError or ValueError
    from the cache layer reaches the caller instead of a fail-open miss.
    """
    store = lower()
    memory = MemoryCache()
    tiers = TieredCache(memory, store)
    if flavour == "sync":

        @instructor_cache(tiers, ignore=("llm",))
        def extract(text: str) -> UserDetail:
            return llm(text)

        call = extract
    else:

        @instructor_cache(tiers, ignore=("llm",))
        async def aextract(text: str) -> UserDetail:
            return llm(text)

        def call(text: str) -> UserDetail:
            return asyncio.run(aextract(text))

    assert call("A is 1") == UserDetail(name="A", age=1)
    memory.clear()
    assert call("A is 1") == UserDetail(name="A", age=1)
