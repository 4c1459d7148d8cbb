"""Decorated functions at module level, importable by a worker process (tests/test_results.py)."""

from __future__ import annotations

from pydantic import BaseModel

from instructor_cache import instructor_cache


class Shout(BaseModel):
    text: str


@instructor_cache
def shout(text: str) -> Shout:
    return Shout(text=text.upper())


class Extractor(BaseModel):
    """A picklable instance whose data is part of its cached method's key (``self``)."""

    suffix: str

    @instructor_cache
    def extract(self, text: str) -> Shout:
        return Shout(text=text + self.suffix)

    @instructor_cache
    @classmethod
    def describe(cls, text: str) -> Shout:
        return Shout(text=f"{cls.__name__}:{text}")

    @classmethod
    @instructor_cache
    def describe_below(cls, text: str) -> Shout:
        return Shout(text=f"{cls.__name__}/{text}")
