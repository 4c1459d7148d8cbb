"""Final adversarial reproducers for issue 12: the offline single-flight, savings through layers."""

from __future__ import annotations

import asyncio

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
