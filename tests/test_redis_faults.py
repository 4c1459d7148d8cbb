"""A dead, slow, full or misconfigured Redis never breaks the app or holds it up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from instructor_cache import CircuitBreaker, RedisCache, instructor_cache
from instructor_cache.backends._guard import breaker_for
from tests._redis import RedisServer, free_port, running_cluster, running_server
from tests.conftest import Clock, FakeLLM, UserDetail, run_in_two_processes

# A call that falls back pays at most two timeouts (GET, then SET) of 0.25 s;
# a naive client would wait 5 s per command and retry.
BOUND = 1.5


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def make_extract(backend: RedisCache, llm: FakeLLM, breaker: CircuitBreaker | None = None) -> Any:
    @instructor_cache(backend, ignore=("llm",), circuit_breaker=breaker)
    def extract(text: str) -> UserDetail:
        return llm(text)

    return extract


def test_redis_down_at_start(llm: FakeLLM) -> None:
    """Nothing listening: every call is right, fast, counted; the open breaker costs nothing."""
    backend = RedisCache(f"redis://127.0.0.1:{free_port()}/0")
    extract = make_extract(backend, llm)
    durations = []
    for i in range(8):
        result, took = timed(lambda i=i: extract(f"A is {i}"))
        assert result == UserDetail(name="A", age=i)
        durations.append(took)
    assert max(durations) < BOUND
    assert breaker_for(backend).is_open  # the store's own, shared breaker
    assert durations[-1] < 0.05
    # GET, SET, GET fail (the breaker opens), the SET is skipped, then 6 calls go straight through
    assert extract.cache_info().errors == 10
    backend.close()


def test_redis_down_at_start_async(llm: FakeLLM) -> None:
    """The async path falls back the same way."""
    backend = RedisCache(f"redis://127.0.0.1:{free_port()}/0")

    @instructor_cache(backend, ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> list[float]:
        durations = []
        for i in range(5):
            started = time.monotonic()
            assert await extract(f"B is {i}") == UserDetail(name="B", age=i)
            durations.append(time.monotonic() - started)
        return durations

    durations = asyncio.run(scenario())
    assert max(durations) < BOUND
    # GET, SET, GET fail (the breaker opens), the SET is skipped, three calls go straight through
    assert extract.cache_info().errors == 7


def test_redis_killed_mid_run_then_restarted(llm: FakeLLM, server: RedisServer) -> None:
    """Hits while up; right answers while down; caching resumes after a restart, no restart here."""
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown=1.0, timer=clock)
    backend = RedisCache(server.url)
    extract = make_extract(backend, llm, breaker)
    extract("C is 1")
    assert extract("C is 1") == UserDetail(name="C", age=1)
    assert extract.cache_info().hits == 1

    server.stop()
    for _ in range(4):
        result, took = timed(lambda: extract("C is 1"))
        assert result == UserDetail(name="C", age=1)
        assert took < BOUND
    assert breaker.is_open

    server.start()  # same port, empty: persistence is off
    clock.advance(breaker.cooldown)
    extract("C is 1")
    calls = len(llm.calls)
    assert extract("C is 1") == UserDetail(name="C", age=1)
    assert len(llm.calls) == calls
    assert not breaker.is_open
    backend.close()


def test_paused_redis_costs_a_timeout_not_a_hang(llm: FakeLLM, server: RedisServer) -> None:
    """A server that accepts but never answers is cut off by the operation timeout."""
    backend = RedisCache(server.url)
    extract = make_extract(backend, llm, CircuitBreaker(failures=2, cooldown=30))
    extract("D is 4")
    server.pause()
    try:
        for i in range(4):
            result, took = timed(lambda i=i: extract(f"D is {i}"))
            assert result == UserDetail(name="D", age=i)
            assert took < BOUND
        _, took = timed(lambda: extract("D is 9"))
        assert took < 0.05  # the breaker is open: no timeout paid at all
    finally:
        server.resume()
    # GET and SET time out (the breaker opens), then four calls go straight through
    assert extract.cache_info().errors == 6
    backend.close()


def test_redis_out_of_memory_still_serves_results(llm: FakeLLM, tmp_path: Path) -> None:
    """With maxmemory and noeviction, writes fail (counted) and every result is still right."""
    with running_server(
        tmp_path / "full", "--maxmemory", "2mb", "--maxmemory-policy", "noeviction"
    ) as server:
        filler = server.client()
        size, i = 20_000, 0
        while size >= 16:  # fill the server until even a small write is refused
            i += 1
            try:
                filler.set(f"filler:{i}", "x" * size)
            except redis.exceptions.OutOfMemoryError:
                size //= 4
            assert i < 10_000, "the server never filled up"
        filler.close()
        backend = RedisCache(server.url)
        extract = make_extract(backend, llm)
        for _ in range(3):
            assert extract("E is 5") == UserDetail(name="E", age=5)
        assert len(llm.calls) == 3
        # Per call, two refused SETs (the single-flight lock's and the entry's); the GETs worked.
        assert extract.cache_info().errors == 6
        backend.close()


def test_wrong_password_falls_back(
    llm: FakeLLM, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that refuses our credentials is a backend failure like any other."""
    with running_server(tmp_path / "auth", "--requirepass", "right") as server:
        url = server.url.replace("redis://", "redis://:wrong@")
        backend = RedisCache(url)
        extract = make_extract(backend, llm)
        assert extract("F is 6") == UserDetail(name="F", age=6)
        assert extract("F is 6") == UserDetail(name="F", age=6)
        assert extract.cache_info().errors == 4  # GET, SET, GET refused; the SET then skipped
        assert "Authentication" in caplog.text or "WRONGPASS" in caplog.text
        backend.close()
        good = RedisCache(server.url.replace("redis://", "redis://:right@"))
        extract_ok = make_extract(good, llm)
        extract_ok("F is 6")
        extract_ok("F is 6")
        assert extract_ok.cache_info().hits == 1
        good.close()


def test_garbage_under_our_key_is_a_miss(llm: FakeLLM, redis_url: str) -> None:
    """Text written by hand, or by another version of the model, never comes back as a result."""
    backend = RedisCache(redis_url, prefix="garbage-test:")
    extract = make_extract(backend, llm)
    key = extract.cache_key("G is 7")
    client = redis.Redis.from_url(redis_url)
    for garbage in ["{not json", '{"v":1,"created":0,"duration":0,"value":{"name":1}}', "\x00\xff"]:
        client.set("garbage-test:" + key, garbage)
        assert extract("G is 7") == UserDetail(name="G", age=7)
        extract.invalidate("G is 7")
    assert extract.cache_info().errors == 3
    client.close()
    backend.clear()
    backend.close()


def test_two_processes_share_one_redis(redis_url: str, tmp_path: Path) -> None:
    """One process writes an entry; another, started later, hits it."""
    outputs = run_in_two_processes(tmp_path, f"RedisCache({redis_url!r}, prefix='two-processes:')")
    assert outputs[0] == ['{"name":"Jason","age":5}', "1", "0"]
    assert outputs[1] == ['{"name":"Jason","age":5}', "0", "1"]
    cleanup = RedisCache(redis_url, prefix="two-processes:")
    cleanup.clear()
    cleanup.close()


def test_paused_redis_costs_a_timeout_not_a_hang_async(llm: FakeLLM, server: RedisServer) -> None:
    """The asyncio client is cut off by the same operation timeout."""
    backend = RedisCache(server.url)

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=CircuitBreaker(2, cooldown=30))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> list[float]:
        await extract("H is 1")
        server.pause()
        durations = []
        try:
            for i in range(4):
                started = time.monotonic()
                assert await extract(f"H is {i}") == UserDetail(name="H", age=i)
                durations.append(time.monotonic() - started)
        finally:
            server.resume()
        return durations

    durations = asyncio.run(scenario())
    assert max(durations) < BOUND
    assert durations[-1] < 0.05  # breaker open
    assert extract.cache_info().errors == 5  # GET and SET time out, three calls go straight through


def test_many_callers_after_the_cooldown_send_one_probe(server: RedisServer) -> None:
    """When the cooldown ends only one caller probes a still-dead Redis; the rest skip."""
    from concurrent.futures import ThreadPoolExecutor

    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=0.5, timer=clock)
    backend = RedisCache(server.url)

    @instructor_cache(backend, circuit_breaker=breaker)
    def extract(text: str) -> UserDetail:
        return UserDetail(name=text, age=0)

    server.pause()
    try:
        extract("x")  # fails, opens the breaker
        assert breaker.is_open
        clock.advance(breaker.cooldown)
        with ThreadPoolExecutor(16) as pool:
            durations = list(pool.map(lambda i: timed(lambda: extract(f"y{i}"))[1], range(16)))
    finally:
        server.resume()
    slow = [d for d in durations if d > 0.2]
    assert len(slow) == 1  # the probe paid the timeout; the other fifteen did not
    backend.close()


def test_a_paused_cluster_master_costs_bounded_time(llm: FakeLLM, tmp_path: Path) -> None:
    """With one of three masters stalled, calls stay right and bounded; caching resumes after."""
    with running_cluster(tmp_path / "cluster") as nodes:
        clock = Clock()
        breaker = CircuitBreaker(failures=3, cooldown=0.5, timer=clock)
        backend = RedisCache(nodes.url, cluster=True)
        extract = make_extract(backend, llm, breaker)
        texts = [f"K{i} is {i}" for i in range(9)]  # keys on every master
        for text in texts:
            extract(text)
        nodes.servers[1].pause()
        try:
            for i, text in enumerate(texts):
                result, took = timed(lambda text=text: extract(text))
                assert result == UserDetail(name=f"K{i}", age=i)
                assert took < BOUND
        finally:
            nodes.servers[1].resume()
        clock.advance(breaker.cooldown)
        hits = extract.cache_info().hits
        for i, text in enumerate(texts):
            assert extract(text) == UserDetail(name=f"K{i}", age=i)
        # The entries written before the stall are still there: served from the cache again.
        assert extract.cache_info().hits - hits >= len(texts) - 1
        backend.close()


def test_redis_killed_mid_run_then_restarted_async(llm: FakeLLM, server: RedisServer) -> None:
    """The async path: right answers while down, caching again after the restart."""
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown=1.0, timer=clock)
    backend = RedisCache(server.url)

    @instructor_cache(backend, ignore=("llm",), circuit_breaker=breaker)
    async def extract(text: str) -> UserDetail:
        return llm(text)

    async def scenario() -> None:
        await extract("J is 1")
        server.stop()
        for _ in range(4):
            started = time.monotonic()
            assert await extract("J is 1") == UserDetail(name="J", age=1)
            assert time.monotonic() - started < BOUND
        server.start()
        clock.advance(breaker.cooldown)
        await extract("J is 1")
        calls = len(llm.calls)
        assert await extract("J is 1") == UserDetail(name="J", age=1)
        assert len(llm.calls) == calls

    asyncio.run(scenario())
    assert not breaker.is_open
    backend.close()
