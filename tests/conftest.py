"""Shared fixtures: the backends every behaviour test runs on, a simulated LLM, a clock.

The fakes themselves live in tests/_fakes.py; ``Clock``, ``FakeLLM`` and
``UserDetail`` are still importable from here for the modules that do so.
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from instructor_cache import DiskCache, MemoryCache, RedisCache, TieredCache
from instructor_cache.backends import Store
from tests._fakes import Clock, FakeLLM, UserDetail
from tests._redis import RedisServer, running_cluster, running_server

# What test modules import from here: the fakes are re-exported for those
# that have not moved to tests._fakes.
__all__ = ["BackendKind", "Clock", "FakeLLM", "UserDetail", "run_in_two_processes"]


class BackendKind(enum.Enum):
    MEMORY = "memory"
    DISK = "disk"
    REDIS = "redis"
    CLUSTER = "cluster"
    TIERED = "tiered"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the session (REDIS_URL points elsewhere), stopped at the end."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with running_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real 3-master Redis Cluster for the session (or REDIS_CLUSTER_URL), stopped at the end."""
    if os.environ.get("REDIS_CLUSTER_URL"):
        yield os.environ["REDIS_CLUSTER_URL"]
        return
    with running_cluster(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes.url


def _make_backend(
    kind: BackendKind, tmp_path: Path, request: pytest.FixtureRequest, **options: Any
) -> Store:
    if kind is BackendKind.MEMORY:
        return MemoryCache(maxsize=1024, **options)
    if kind is BackendKind.REDIS:
        # A prefix of the test's own keeps tests apart on one server, also on
        # a REDIS_URL server that holds other data: nothing here flushes it.
        url = request.getfixturevalue("redis_url")
        return RedisCache(url, prefix=f"test:{uuid.uuid4().hex}:", **options)
    if kind is BackendKind.CLUSTER:
        url = request.getfixturevalue("redis_cluster_url")
        return RedisCache(url, cluster=True, prefix=f"test:{uuid.uuid4().hex}:", **options)
    if kind is BackendKind.TIERED:
        # Options (a ttl) go to the last tier, so that backfill carries them up.
        return TieredCache(
            MemoryCache(maxsize=1024),
            DiskCache(tmp_path / "tier2"),
            _make_backend(BackendKind.REDIS, tmp_path, request, **options),
        )
    return DiskCache(tmp_path / "cache", **options)


@pytest.fixture(params=list(BackendKind), ids=lambda k: k.value)
def backend_kind(request: pytest.FixtureRequest) -> BackendKind:
    kind: BackendKind = request.param
    return kind


@pytest.fixture
def make_backend(
    backend_kind: BackendKind, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Store]]:
    """Builds backends of the parametrized kind; each test may make several (to share or not)."""
    made: list[Store] = []

    def make(**options: Any) -> Store:
        backend = _make_backend(backend_kind, tmp_path, request, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        if isinstance(backend, (RedisCache, TieredCache)):
            backend.clear()
        if isinstance(backend, (DiskCache, RedisCache, TieredCache)):
            backend.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A throwaway redis-server of this test's own, which it may stop, pause and restart."""
    server = RedisServer(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def redis_without_scripting(redis_url: str) -> Iterator[str]:
    """A URL for a user of the real Redis who may run every command but scripts (ACL)."""
    admin = redis.Redis.from_url(redis_url)
    user = f"noscript{uuid.uuid4().hex[:8]}"
    admin.execute_command("ACL", "SETUSER", user, "on", ">secret", "~*", "+@all", "-@scripting")
    try:
        yield redis_url.replace("redis://", f"redis://{user}:secret@", 1)
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Callable[..., DiskCache]]:
    """Makes DiskCaches (in tmp_path unless told where) and closes them after the test."""
    made: list[DiskCache] = []

    def make(directory: Path | None = None, **options: Any) -> DiskCache:
        backend = DiskCache(directory or tmp_path / f"disk{len(made)}", **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def backend(make_backend: Callable[..., Store]) -> Store:
    return make_backend()


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM()


SHARING_SCRIPT = """
from pydantic import BaseModel
from instructor_cache import DiskCache, RedisCache, instructor_cache

calls = []

class UserDetail(BaseModel):
    name: str
    age: int

@instructor_cache({backend})
def extract(text: str) -> UserDetail:
    calls.append(text)
    return UserDetail(name=text, age=len(text))

print(extract("Jason").model_dump_json(), len(calls), extract.cache_info().hits)
"""


def run_in_two_processes(tmp_path: Path, backend: str) -> list[list[str]]:
    """Run one extraction in a process, then in another, both on ``backend`` (an expression).

    Each prints its result, how often it called the function, and its hits.
    """
    script = tmp_path / "sharing.py"
    script.write_text(SHARING_SCRIPT.format(backend=backend))
    return [
        subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        for _ in range(2)
    ]
