"""Stand-ins shared by the test modules: a simulated LLM, its answer model, a clock moved by hand.

Here rather than in conftest, so that a test module imports them from a module
of their own (conftest re-exports them for modules that still import them
from there).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class UserDetail(BaseModel):
    name: str
    age: int


class FakeLLM:
    """Stands in for the model: counts calls and extracts deterministically from the text."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, text: str, *extra: Any) -> UserDetail:
        self.calls.append((text, *extra))
        name, _, age = text.partition(" is ")
        return UserDetail(name=name, age=int(age or 0))


class Counting:
    """A simulated LLM whose answer changes with each call: a served answer is an old one."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, text: str) -> UserDetail:
        self.calls.append(text)
        return UserDetail(name=text, age=len(self.calls))


class Clock:
    """A monotonic clock the tests move by hand, so TTL tests never sleep."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
