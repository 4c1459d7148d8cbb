"""Adversary, session 15: instructor's cache= under cache_control, the LRU of routes, leftovers.

Each test reproduces one finding; a failing one is marked ``xfail(strict=True)``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, field_validator

from instructor_cache import FixtureStore, MemoryCache, cache_control, instructor_cache
from instructor_cache._control import Mode, set_default_control
from instructor_cache.errors import CacheMissError
from tests._openai import tool_call_completion
from tests.test_instructor_cache_param import Provider, UserDetail, ask, sync_client
from tests.test_instructor_cache_param import (
    provider as provider,  # noqa: PLC0414  (the fixture, re-exported for pytest)
)


class Answer(BaseModel):
    text: str
    version: int


def _slow_first_call(*, evict: bool) -> int:
    """The version a routed store serves after a refresh that ran while an older call computed."""
    routed = MemoryCache()
    version = {"a": 0}
    started, release = threading.Event(), threading.Event()

    @instructor_cache(MemoryCache(), ignore=("release", "started", "version"))
    def extract(text: str) -> Answer:
        seen = version.get(text, 0)
        if text == "a" and seen == 0:  # the older call: it reads its answer, then is slow
            started.set()
            assert release.wait(30)
        return Answer(text=text, version=seen)

    def older() -> None:
        with cache_control(store=routed):
            extract("a")

    thread = threading.Thread(target=older)
    thread.start()
    try:
        assert started.wait(30)
        if evict:  # 64 other stores used since: the route to ``routed`` is dropped
            for _ in range(64):
                with cache_control(store=MemoryCache()):
                    extract("other")
        version["a"] = 1
        with cache_control("write-only", store=routed):
            assert extract("a").version == 1  # the refresh: stored
    finally:
        release.set()
        thread.join(30)
    with cache_control(store=routed):
        return extract("a").version


def test_a_refresh_outdates_an_older_call_on_the_same_routed_store() -> None:
    """Control: with the route kept, the older call's answer is not stored over the refresh's."""
    assert _slow_first_call(evict=False) == 1


def test_a_refresh_outdates_an_older_call_even_after_the_route_was_dropped() -> None:
    """A route dropped from the LRU while a call runs must not let that call's older answer
    overwrite a refresh made on the new route."""
    assert _slow_first_call(evict=True) == 1


class Bumped(BaseModel):
    """Reads back as itself below 100; from 100 its validator adds one on every validation."""

    name: str = Field(alias="userName")
    age: int

    @field_validator("age")
    @classmethod
    def bump(cls, age: int) -> int:
        return age + 1 if age >= 100 else age


class Ages:
    """A provider answering the same request with the next age each time."""

    def __init__(self, *ages: int) -> None:
        self.ages = list(ages)
        self.requests = 0

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.requests += 1
        arguments = json.dumps({"userName": "Jason", "age": self.ages.pop(0)})
        return tool_call_completion(body["model"], "Bumped", arguments)


def test_a_write_only_instructor_call_that_stores_nothing_removes_the_old_entry() -> None:
    """As a decorated refresh does: a write-only answer that cannot be stored must not leave
    the older answer to be served in its place."""
    provider = Ages(25, 200, 300)
    client = sync_client(provider, cache=MemoryCache())  # type: ignore[arg-type]
    assert client.chat.completions.create(**ask(response_model=Bumped)).age == 25  # stored
    with cache_control("write-only"):
        refreshed = client.chat.completions.create(**ask(response_model=Bumped))
    assert refreshed.age == 201  # not stored: it would read back as 202
    assert provider.requests == 2
    later = client.chat.completions.create(**ask(response_model=Bumped))
    assert later.age != 25  # the answer the refresh replaced is never served again


@pytest.mark.parametrize("mode", ["replay", "read-only"])
def test_replay_and_read_only_instructor_calls_leave_a_fixture_directory_as_it_is(
    tmp_path: Path, mode: Mode, provider: Provider
) -> None:
    """An entry a replaying test cannot use is a miss, and stays in the committed directory."""
    fixtures = FixtureStore(tmp_path / "fixtures")
    client = sync_client(provider, cache=MemoryCache())
    with cache_control(store=fixtures):
        client.chat.completions.create(**ask(cache_namespace="suite"))  # recorded
    [path] = (tmp_path / "fixtures").rglob("*.json")
    recorded = json.loads(path.read_text())
    recorded["text"] = recorded["text"].replace("Jason", "Jasom")  # edited by hand
    path.write_text(json.dumps(recorded))
    with cache_control(mode, store=fixtures), contextlib.suppress(CacheMissError):
        client.chat.completions.create(**ask(cache_namespace="suite"))
    assert path.exists()


class Tasks:
    """A provider answering any tool request with one task, Jason aged 25, under its tool (or
    25, to a simple type's)."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.requests += 1
        function = body["tools"][0]["function"]
        tool = function["name"]
        if "content" in function["parameters"]["properties"]:  # a simple type's wrapper
            arguments = json.dumps({"content": 25})
        else:
            arguments = json.dumps({"tasks": [{"userName": "Jason", "age": 25}]})
        return tool_call_completion(body["model"], tool, arguments)


@pytest.mark.parametrize("response_model", [list[UserDetail], int], ids=["list", "simple-type"])
def test_replaying_an_answer_instructor_never_stores_says_so(response_model: Any) -> None:
    """instructor stores one model only: a replay of a list or simple-type answer could never be
    recorded, so its error says to use the decorator, not to record it first (which never works);
    it still never calls the provider."""
    provider = Tasks()
    client = sync_client(provider, cache=MemoryCache())  # type: ignore[arg-type]
    client.chat.completions.create(**ask(response_model=response_model))
    with cache_control("replay"), pytest.raises(CacheMissError) as raised:
        client.chat.completions.create(**ask(response_model=response_model))
    assert "@instructor_cache" in str(raised.value)
    assert "Record it first" not in str(raised.value)
    assert provider.requests == 1


class Restoring(Provider):
    """A provider during whose answer the process default is put back (a test's routing ends
    while a worker thread it started still runs a call)."""

    def __call__(self, request: Any) -> Any:
        set_default_control()
        return super().__call__(request)


def test_an_instructor_call_records_where_it_was_routed_when_it_began(tmp_path: Path) -> None:
    """A call routed to the fixture directory when it began records there, as a decorated
    call does, even if the routing ends while the provider answers."""
    fixtures = FixtureStore(tmp_path / "fixtures")
    client = sync_client(Restoring(), cache=MemoryCache())
    set_default_control("normal", ttl=None, store=fixtures)
    try:
        client.chat.completions.create(**ask(cache_namespace="suite"))
    finally:
        set_default_control()
    assert len(list((tmp_path / "fixtures").rglob("*.json"))) == 1


def test_a_replay_miss_keeps_no_reference_to_the_store_it_was_routed_to(
    provider: Provider,
) -> None:
    """A store made for one replaying call is let go once the miss is raised: no write follows
    that would need it."""
    client = sync_client(provider, cache=MemoryCache())
    routed = MemoryCache()
    released = weakref.ref(routed)
    with cache_control("replay", store=routed), contextlib.suppress(CacheMissError):
        client.chat.completions.create(**ask())
    del routed
    gc.collect()
    assert released() is None
