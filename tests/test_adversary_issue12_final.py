"""Final adversarial reproducers for issue 12: the offline single-flight, savings through layers."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from instructor_cache import CircuitBreaker, MemoryCache, instructor_cache


class Person(BaseModel):
    name: str
    age: int


async def test_offline_waiters_get_the_answer_not_the_leaders_callers_edits_of_it() -> None:
    """With the breaker open, a waiter's copy of the shared result must be the function's
    answer, not the leader's own model as its caller went on to edit it before the waiter woke."""
    breaker = CircuitBreaker(failures=1, cooldown=3600)
    breaker.failed()  # open: the store is skipped, the leader shares its value itself
    calls: list[str] = []

    @instructor_cache(MemoryCache(), circuit_breaker=breaker, ignore=("calls",))
    async def extract(text: str) -> Person:
        calls.append(text)
        await asyncio.sleep(0.05)
        return Person(name=text, age=20)

    async def edit_own_result() -> Person:
        mine = await extract("ann")
        mine.age = -1  # the leader's caller owns its model and may change it at once
        return mine

    leader = asyncio.create_task(edit_own_result())
    await asyncio.sleep(0.01)  # the leader is computing
    waiters = [asyncio.create_task(extract("ann")) for _ in range(2)]
    assert (await leader).age == -1
    answers = await asyncio.gather(*waiters)
    assert calls == ["ann"]
    assert [a.age for a in answers] == [20, 20]


def test_a_top_layer_over_two_cached_layers_stores_the_original_calls_duration() -> None:
    """Three stacked layers: the bottom layer's hit fills the middle one, whose duration must
    reach the top layer too, else the top stores microseconds and its hits count no savings."""

    @instructor_cache(MemoryCache())
    @instructor_cache(MemoryCache())
    @instructor_cache(MemoryCache())
    def extract(text: str) -> Person:
        time.sleep(0.2)
        return Person(name=text, age=1)

    extract.__wrapped__.__wrapped__("Al")  # the bottom layer pays ~0.2 s
    extract("Al")  # top and middle miss, the bottom hits
    extract("Al")  # a top hit: it saved the original call's time
    assert extract.cache_info().hits == 1
    assert extract.cache_info().time_saved >= 0.19


async def test_a_result_cache_if_refuses_is_not_shared_while_the_breaker_is_open() -> None:
    """A result cache_if refuses (a failed extraction) is not handed to waiting calls with a
    healthy store; with the breaker open it must not be either: each calls the function."""
    breaker = CircuitBreaker(failures=1, cooldown=3600)
    breaker.failed()
    calls: list[str] = []

    @instructor_cache(
        MemoryCache(), circuit_breaker=breaker, cache_if=lambda p: p.age > 0, ignore=("calls",)
    )
    async def extract(text: str) -> Person:
        age = len(calls)  # the first answer (age 0) is a refused one
        calls.append(text)
        await asyncio.sleep(0.05)
        return Person(name=text, age=age)

    answers = await asyncio.gather(*(extract("ann") for _ in range(3)))
    assert len(calls) == 3
    assert sorted(a.age for a in answers) == [0, 1, 2]
