"""Our stores as instructor's ``cache=``: real instructor and openai, HTTP on a mock transport."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import instructor
import instructor.cache
import openai
import pytest
import redis.asyncio
from pydantic import BaseModel, Field, field_validator

from instructor_cache import MemoryCache, RedisCache, TieredCache, instructor_cache
from instructor_cache._instructor import PREFIX, cache_info, unwrap, wrap
from instructor_cache.backends import ReadsWithTTL, Store
from tests._openai import httpx, tool_call_completion
from tests._redis import RedisServer
from tests._subprocess import json_under_hash_seed


class UserDetail(BaseModel):
    """A model whose alias a naive model_dump_json/model_validate_json pair would break."""

    name: str = Field(alias="userName")
    age: int


class Provider:
    """Answers "<name> is <age>" as a tool call, or as JSON content when no tool is offered."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.requests.append(body)
        name, _, age = body["messages"][-1]["content"].partition(" is ")
        arguments = json.dumps({"userName": name, "age": int(age)})
        response = tool_call_completion(body["model"], "UserDetail", arguments)
        if "tools" not in body:  # JSON mode: the message content is the JSON
            completion = response.json()
            completion["choices"][0]["message"] = {"role": "assistant", "content": arguments}
            response = httpx.Response(200, json=completion)
        return response


@pytest.fixture
def provider() -> Provider:
    return Provider()


def sync_client(
    provider: Provider, mode: instructor.Mode = instructor.Mode.TOOLS, **kw: Any
) -> Any:
    http = httpx.Client(transport=httpx.MockTransport(provider))
    return instructor.from_openai(openai.OpenAI(api_key="k", http_client=http), mode=mode, **kw)


def async_client(provider: Provider, **kw: Any) -> Any:
    http = httpx.AsyncClient(transport=httpx.MockTransport(provider))
    return instructor.from_openai(openai.AsyncOpenAI(api_key="k", http_client=http), **kw)


def ask(text: str = "Jason is 25", **kw: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "response_model": UserDetail,
        "messages": [{"role": "user", "content": text}],
        **kw,
    }


@pytest.fixture
def stored_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys instructor stores under, in our stores' key space (the helper still runs)."""
    keys: list[str] = []
    original = instructor.cache.store_cached_response

    def recording(cache: Any, key: str, *args: Any, **kwargs: Any) -> None:
        keys.append(PREFIX + key)
        original(cache, key, *args, **kwargs)

    monkeypatch.setattr(instructor.cache, "store_cached_response", recording)
    return keys


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON], ids=str)
@pytest.mark.parametrize("per_call", [False, True], ids=["client", "per-call"])
def test_repeated_create_reaches_the_provider_once(
    backend: Store, provider: Provider, mode: instructor.Mode, per_call: bool
) -> None:
    """Each store as cache= (on the client or per call) serves a repeated create() itself."""
    client = sync_client(provider, mode, **({} if per_call else {"cache": backend}))
    extra = {"cache": backend} if per_call else {}
    answers = [client.chat.completions.create(**ask(**extra)) for _ in range(3)]
    assert [(a.name, a.age) for a in answers] == [("Jason", 25)] * 3
    assert len(provider.requests) == 1
    assert client.chat.completions.create(**ask("Ann is 3", **extra)).name == "Ann"
    assert len(provider.requests) == 2
    assert cache_info(backend)[:2] == (2, 2)  # type: ignore[arg-type]


async def test_async_client_reaches_the_provider_once(backend: Store, provider: Provider) -> None:
    """instructor's async client calls the store's sync methods; it still caches, loop unblocked."""
    client = async_client(provider, cache=backend)
    first = await client.chat.completions.create(**ask())
    second = await client.chat.completions.create(**ask())
    assert (first.name, first.age) == (second.name, second.age) == ("Jason", 25)
    assert len(provider.requests) == 1


def test_create_with_completion_returns_the_raw_completion_on_a_hit(
    backend: Store, provider: Provider
) -> None:
    """On a hit the raw completion comes back too, its usage readable as on the miss."""
    client = sync_client(provider, cache=backend)
    _, miss = client.chat.completions.create_with_completion(**ask())
    user, hit = client.chat.completions.create_with_completion(**ask())
    assert len(provider.requests) == 1
    assert user.age == 25
    assert hit.usage.total_tokens == miss.usage.total_tokens == 14
    assert hit.choices[0].message.tool_calls[0].function.name == "UserDetail"


def test_a_hits_raw_completion_dumps_like_the_misses(backend: Store, provider: Provider) -> None:
    """instructor restores it as SimpleNamespaces, with no model_dump(): ours dumps the same."""
    client = sync_client(provider, cache=backend)
    _, miss = client.chat.completions.create_with_completion(**ask())
    _, hit = client.chat.completions.create_with_completion(**ask())
    assert len(provider.requests) == 1
    assert hit.model_dump()["usage"] == miss.model_dump()["usage"]
    assert json.loads(hit.model_dump_json())["id"] == miss.id


class Greeted(BaseModel):
    """A model whose validator is not idempotent: read back from its JSON, it changes."""

    name: str = Field(alias="userName")
    age: int

    @field_validator("name")
    @classmethod
    def exclaim(cls, name: str) -> str:
        return name + "!"


class WithNickname(BaseModel):
    """A model with a default the provider leaves out."""

    name: str = Field(alias="userName")
    age: int
    nickname: str | None = None


def test_a_result_that_would_not_come_back_the_same_is_not_stored(
    backend: Store, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    """A model that its JSON would validate into another value is returned, never stored."""
    client = sync_client(provider, cache=backend)
    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        answers = [client.chat.completions.create(**ask(response_model=Greeted)) for _ in range(2)]
    assert [a.name for a in answers] == ["Jason!", "Jason!"]
    assert len(provider.requests) == 2
    assert cache_info(backend).misses == 2  # type: ignore[arg-type]
    assert any("does not come back" in r.getMessage() for r in caplog.records)


def test_a_hit_has_the_fields_set_of_the_miss(backend: Store, provider: Provider) -> None:
    """A default the provider left out stays unset on a hit (exclude_unset dumps agree)."""
    client = sync_client(provider, cache=backend)
    miss = client.chat.completions.create(**ask(response_model=WithNickname))
    hit = client.chat.completions.create(**ask(response_model=WithNickname))
    assert len(provider.requests) == 1
    assert hit.model_fields_set == miss.model_fields_set == {"name", "age"}
    assert hit.model_dump(exclude_unset=True) == {"name": "Jason", "age": 25}


def _ttls(store: Store, key: str) -> list[float | None]:
    stores = store.tiers if isinstance(store, TieredCache) else (store,)
    found = []
    for each in stores:
        assert isinstance(each, ReadsWithTTL)
        entry = each.get_with_ttl(key)
        assert entry is not None
        found.append(entry[1])
    return found


def test_cache_ttl_is_the_entry_ttl(
    backend: Store, provider: Provider, stored_keys: list[str]
) -> None:
    """cache_ttl= (seconds, per call) becomes the stored entry's time to live, in every tier."""
    client = sync_client(provider, cache=backend)
    client.chat.completions.create(**ask(cache_ttl=300))
    for ttl in _ttls(backend, stored_keys[0]):
        assert ttl is not None
        assert 250 < ttl <= 300


def test_the_store_ttl_bounds_cache_ttl(
    make_backend: Callable[..., Store], provider: Provider, stored_keys: list[str]
) -> None:
    """A store made with ttl= keeps instructor's entry no longer, whatever cache_ttl= asks."""
    store = make_backend(ttl=60)
    client = sync_client(provider, cache=store)
    client.chat.completions.create(**ask(cache_ttl=3600))
    remaining = _ttls(store, stored_keys[0])[-1]  # a tiered store's ttl is its last tier's
    assert remaining is not None
    assert remaining <= 60


def test_a_cache_ttl_that_is_no_duration_stores_nothing(
    backend: Store, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    """cache_ttl=0 (an entry dead at once) is answered and not stored, with a warning."""
    client = sync_client(provider, cache=backend)
    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        for _ in range(2):
            assert client.chat.completions.create(**ask(cache_ttl=0)).age == 25
    assert len(provider.requests) == 2
    assert any("cache_ttl must be" in r.getMessage() for r in caplog.records)
    assert client.chat.completions.create(**ask(cache_ttl=60)).age == 25
    assert client.chat.completions.create(**ask()).age == 25
    assert len(provider.requests) == 3


def test_a_shared_cache_namespace_shares_entries_and_none_does_not(
    backend: Store, provider: Provider
) -> None:
    """Two clients share entries under one cache_namespace=; without one, each has its own."""
    first, second = sync_client(provider, cache=backend), sync_client(provider, cache=backend)
    first.chat.completions.create(**ask())
    second.chat.completions.create(**ask())
    assert len(provider.requests) == 2
    first.chat.completions.create(**ask("Ann is 3", cache_namespace="team"))
    second.chat.completions.create(**ask("Ann is 3", cache_namespace="team"))
    assert len(provider.requests) == 3


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda entry: entry[: len(entry) // 2], id="truncated"),
        pytest.param(lambda entry: "garbage", id="planted"),
        pytest.param(lambda entry: wrap('{"model": "{\\"age\\": \\"old\\"}"}'), id="invalid"),
    ],
)
def test_a_corrupt_entry_is_a_miss(
    backend: Store, provider: Provider, stored_keys: list[str], damage: Callable[[str], str]
) -> None:
    """A truncated, planted or no longer valid entry calls the provider again, raising nothing."""
    client = sync_client(provider, cache=backend)
    client.chat.completions.create(**ask())
    stores = backend.tiers if isinstance(backend, TieredCache) else (backend,)
    for store in stores:
        entry = store.get(stored_keys[0])
        assert entry is not None
        store.set(stored_keys[0], damage(entry))
    assert client.chat.completions.create(**ask()).name == "Jason"
    assert len(provider.requests) == 2
    assert cache_info(backend).errors >= 1  # type: ignore[arg-type]
    assert client.chat.completions.create(**ask()).age == 25  # stored afresh
    assert len(provider.requests) == 2


def test_entries_are_kept_apart_from_decorated_functions(
    provider: Provider, stored_keys: list[str]
) -> None:
    """instructor's entry is under its own prefix, enveloped, and a decorated call ignores it."""
    store = MemoryCache()
    client = sync_client(provider, cache=store)
    client.chat.completions.create(**ask())
    entry = store.get(stored_keys[0])
    assert entry is not None
    assert json.loads(unwrap(entry) or "")["model"]

    @instructor_cache(store)
    def extract(text: str) -> UserDetail:
        return UserDetail(userName=text, age=1)

    assert extract("Jason is 25") == UserDetail(userName="Jason is 25", age=1)
    assert all(key.startswith(PREFIX) for key in stored_keys)


def test_a_stopped_redis_falls_back_to_the_provider(
    server: RedisServer, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, create() answers from the provider, counts and logs it, and never hangs."""
    store = RedisCache(server.url)
    client = sync_client(provider, cache=store)
    client.chat.completions.create(**ask())
    server.stop()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        for _ in range(5):
            assert client.chat.completions.create(**ask()).age == 25
    assert time.monotonic() - started < 10
    assert len(provider.requests) == 6
    assert cache_info(store).errors >= 2
    assert any(r.name == "instructor_cache" for r in caplog.records)
    store.close()


def test_a_paused_redis_costs_a_timeout_not_a_hang(server: RedisServer, provider: Provider) -> None:
    """A stalled Redis (no answer at all) makes create() fall back within its timeouts."""
    store = RedisCache(server.url)
    client = sync_client(provider, cache=store)
    server.pause()
    started = time.monotonic()
    assert client.chat.completions.create(**ask()).age == 25
    assert time.monotonic() - started < 10
    assert cache_info(store).errors >= 1
    store.close()


async def test_an_asyncio_only_redis_is_skipped_not_failed(
    redis_url: str, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    """A RedisCache with an asyncio client only, given to instructor, is skipped with a warning.

    Its circuit breaker, shared with the async functions decorated over it,
    stays closed: their hits are still served.
    """
    given = redis.asyncio.Redis.from_url(redis_url)
    store = RedisCache(given, prefix=f"asynconly{id(given)}")

    @instructor_cache(store, ignore=("provider",))
    async def extract(text: str) -> UserDetail:
        return UserDetail(userName=text, age=len(provider.requests))

    await extract("Jason")
    client = async_client(provider, cache=store)
    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        for _ in range(4):
            assert (await client.chat.completions.create(**ask())).age == 25
    assert len(provider.requests) == 4
    assert cache_info(store).errors >= 4
    assert any("asyncio client only" in r.getMessage() for r in caplog.records)
    assert (await extract("Jason")).age == 0
    assert extract.cache_info().hits == 1
    await store.aclear()
    await given.aclose()


REGISTRATION = """
import json, sys
order = sys.argv[1]
if order == "instructor.cache first":
    import instructor.cache
if order == "instructor first":
    import instructor
import instructor_cache
memory = instructor_cache.MemoryCache()
if order == "every store before instructor":
    from instructor_cache.backends import disk, redis
if order == "found before imported":
    import importlib.util
    assert importlib.util.find_spec("instructor.cache") is not None
if order != "instructor.cache first":
    assert "instructor.cache" not in sys.modules
    import instructor.cache
from instructor.cache import BaseCache
from instructor_cache import DiskCache, RedisCache, TieredCache
print(json.dumps([
    isinstance(memory, BaseCache),
    isinstance(TieredCache(memory), BaseCache),
    issubclass(DiskCache, BaseCache),
    issubclass(RedisCache, BaseCache),
    instructor.cache.load_cached_response.__module__ == "instructor_cache._instructor_hook",
    sum(type(f).__module__ == "instructor_cache._instructor_hook" for f in sys.meta_path) == 1,
]))
"""


@pytest.mark.parametrize(
    "order",
    [
        "instructor.cache first",
        "instructor first",
        "store before instructor",
        "every store before instructor",
        "found before imported",
    ],
)
def test_every_store_is_an_instructor_cache_in_any_import_order(order: str) -> None:
    """Whichever is imported first, every store passes instructor's BaseCache check, routed."""
    seen = json_under_hash_seed(REGISTRATION, "0", order)
    assert seen == [True, True, True, True, True, True]


def test_import_does_not_load_instructor() -> None:
    """``import instructor_cache`` leaves instructor unimported, and its finder waits for it."""
    code = (
        "import json, sys, instructor_cache\n"
        "print(json.dumps(['instructor' in sys.modules, "
        "any(type(f).__module__ == 'instructor_cache._instructor_hook' for f in sys.meta_path)]))"
    )
    assert json_under_hash_seed(code, "0") == [False, True]
