"""instructor's ``cache=`` follows ``cache_control`` (blocks, the process default) as decorated
calls do: real instructor and openai, HTTP on a mock transport."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from instructor_cache import FixtureStore, MemoryCache, cache_control
from instructor_cache._control import Mode, set_default_control, watch_replay_misses
from instructor_cache._instructor import PREFIX
from instructor_cache.backends import Store
from instructor_cache.errors import CacheMissError
from tests.test_instructor_cache_param import (
    Provider,
    _ttls,
    ask,
    async_client,
    sync_client,
)
from tests.test_instructor_cache_param import (
    provider as provider,  # noqa: PLC0414  (the fixture, re-exported for pytest)
)
from tests.test_instructor_cache_param import (
    stored_keys as stored_keys,  # noqa: PLC0414
)


@pytest.fixture
def misses() -> Iterator[list[CacheMissError]]:
    seen: list[CacheMissError] = []
    stop = watch_replay_misses(seen.append)
    yield seen
    stop()


def test_off_neither_reads_nor_writes(backend: Store, provider: Provider) -> None:
    client = sync_client(provider, cache=backend)
    client.chat.completions.create(**ask())  # stored
    with cache_control("off"):
        assert client.chat.completions.create(**ask()).name == "Jason"
        client.chat.completions.create(**ask("Ann is 3"))
    assert len(provider.requests) == 3
    client.chat.completions.create(**ask("Ann is 3"))  # "off" stored nothing
    assert len(provider.requests) == 4
    client.chat.completions.create(**ask())  # and left the entry alone
    assert len(provider.requests) == 4


def test_read_only_serves_hits_and_stores_nothing(backend: Store, provider: Provider) -> None:
    client = sync_client(provider, cache=backend)
    client.chat.completions.create(**ask())
    with cache_control("read-only"):
        client.chat.completions.create(**ask())
        client.chat.completions.create(**ask("Ann is 3"))
    assert len(provider.requests) == 2
    client.chat.completions.create(**ask("Ann is 3"))
    assert len(provider.requests) == 3


def test_write_only_calls_and_replaces_the_entry(
    backend: Store, provider: Provider, stored_keys: list[str]
) -> None:
    client = sync_client(provider, cache=backend)
    client.chat.completions.create(**ask(cache_ttl=100))
    with cache_control("write-only"):
        client.chat.completions.create(**ask(cache_ttl=1000))
    assert len(provider.requests) == 2
    for ttl in _ttls(backend, stored_keys[0]):
        assert ttl is not None
        assert 900 < ttl <= 1000  # the second answer replaced the first
    client.chat.completions.create(**ask())
    assert len(provider.requests) == 2


def test_replay_serves_hits_and_a_miss_raises_before_the_provider(
    backend: Store, provider: Provider, misses: list[CacheMissError]
) -> None:
    client = sync_client(provider, cache=backend)
    client.chat.completions.create(**ask())
    with cache_control("replay"):
        assert client.chat.completions.create(**ask()).age == 25
        with pytest.raises(CacheMissError, match="replay mode") as raised:
            client.chat.completions.create(**ask("Ann is 3"))
    assert len(provider.requests) == 1
    assert raised.value.key.startswith(PREFIX)
    assert "UserDetail" in str(raised.value)
    assert misses == [raised.value]  # a test runner hears of it even if the code catches it


async def test_the_async_client_follows_the_block_of_its_task(
    backend: Store, provider: Provider
) -> None:
    client = async_client(provider, cache=backend)
    await client.chat.completions.create(**ask())
    with cache_control("replay"):
        assert (await client.chat.completions.create(**ask())).age == 25
        with pytest.raises(CacheMissError):
            await client.chat.completions.create(**ask("Ann is 3"))
    with cache_control("off"):
        await client.chat.completions.create(**ask())
    assert len(provider.requests) == 2


def test_store_routes_reads_and_writes_and_ttl_replaces_cache_ttl(
    provider: Provider, stored_keys: list[str]
) -> None:
    own, other = MemoryCache(), MemoryCache()
    client = sync_client(provider, cache=own)
    with cache_control(store=other, ttl=60):
        client.chat.completions.create(**ask(cache_ttl=5))
        client.chat.completions.create(**ask(cache_ttl=5))
    assert len(provider.requests) == 1
    assert own.get(stored_keys[0]) is None
    entry = other.get_with_ttl(stored_keys[0])
    assert entry is not None
    assert entry[1] is not None
    assert 50 < entry[1] <= 60
    client.chat.completions.create(**ask())  # outside: its own cache=, which has nothing
    assert len(provider.requests) == 2


def test_a_session_default_records_then_replays_into_a_fixture_directory(
    provider: Provider, tmp_path: Path
) -> None:
    """As the pytest plugin sets it: every call goes to the fixture directory, whatever cache=
    (a cache_namespace= keys it alike in the next run's client)."""
    fixtures = FixtureStore(tmp_path / "fixtures")
    client = sync_client(provider, cache=MemoryCache())
    assert set_default_control("write-only", store=fixtures) is None
    try:
        client.chat.completions.create(**ask(cache_namespace="suite"))
    finally:
        set_default_control()
    fresh = sync_client(provider, cache=MemoryCache())  # a new run: an empty cache=
    assert set_default_control("replay", store=fixtures) is None
    try:
        assert fresh.chat.completions.create(**ask(cache_namespace="suite")).name == "Jason"
        with pytest.raises(CacheMissError):
            fresh.chat.completions.create(**ask("Ann is 3", cache_namespace="suite"))
    finally:
        set_default_control()
    assert len(provider.requests) == 1
    assert len(list((tmp_path / "fixtures").rglob("*.json"))) == 1


@pytest.mark.parametrize("mode", ["replay", "read-only"])
def test_replay_and_read_only_leave_an_unreadable_entry_in_place(
    backend: Store, provider: Provider, stored_keys: list[str], mode: Mode
) -> None:
    """As for decorated calls: modes that do not write do not delete (a committed recording)."""
    client = sync_client(provider, cache=backend)
    client.chat.completions.create(**ask())
    backend.set(stored_keys[0], "planted")
    with cache_control(mode), contextlib.suppress(CacheMissError):
        client.chat.completions.create(**ask())
    assert backend.get(stored_keys[0]) == "planted"
    client.chat.completions.create(**ask())  # in normal mode it is a miss, and replaced
    assert backend.get(stored_keys[0]) != "planted"
