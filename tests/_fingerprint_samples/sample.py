"""Syntax whose syntax trees differ between Pythons 3.10 to 3.13, fingerprinted on each.

It must parse on 3.10 (no ``except*``, no ``type`` statements) and import only
the standard library: the other interpreters have nothing else installed.
Editing anything here changes the golden fingerprints in test_fingerprint.py.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from collections.abc import Callable
from typing import Any

from tests._fingerprint_samples import prompts


class Tone(enum.Enum):
    FORMAL = "formal"
    CASUAL = "casual"


def traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


# fmt: off  (ruff format would merge the parts the test is about)
def render(value: object, width: int = 8) -> str:
    return f"{value!r:>{width}}|{value=}{value:{width}}{{literal}}{value:}"


# fmt: on


@traced
def extract(
    text: str,
    /,
    tone: Tone = Tone.FORMAL,
    *extra: str,
    limit: int = 3,
    **options: object,
) -> str:
    """Extract something (the docstring is not part of the fingerprint)."""
    if (n := len(text)) > limit:
        text = text[:limit]
    match options:
        case {"mode": "short"}:
            body = render(text)
        case {"mode": str(mode)} if mode:
            body = mode + text
        case [first, *_]:
            body = str(first)
        case None | True:
            body = ""
        case _:
            body = normalize(text)
    try:
        payload = json.dumps({"p": SYSTEM_PROMPT, "t": tone.value, "n": n, "x": extra})
    except (TypeError, ValueError) as error:
        payload = str(error)
    finally:
        pass
    # fmt: off
    return (
        f"{prompts.PREFIX}{body}{payload}{LIMITS}{DEFAULT_TONE}{u'u-string'}"  # noqa: UP025
        f"{b'x'!r}{1_000:,}{0x1F}{1.5e-3}{2j}{...}{-7}{10**30}"
    )
    # fmt: on


normalize = lambda s: s.strip().lower()  # noqa: E731


async def gather(items: list[int]) -> list[Any]:
    async def produce() -> Any:
        for item in items:
            yield item

    return [x async for x in produce() if x] + [await asyncio.sleep(0, v) for v in items]


def countdown(n: int) -> int:
    return 0 if n <= 0 else countdown(n - 1)


def is_even(n: int) -> bool:
    return True if n == 0 else is_odd(n - 1)


def is_odd(n: int) -> bool:
    return False if n == 0 else is_even(n - 1)


def make_greeter(greeting: str) -> Callable[..., str]:
    def greet(name: str, *, punctuation: str = "!") -> str:
        nonlocal greeting
        return f"{greeting}, {name}{punctuation}" + normalize(name)

    return greet


class Extractor:
    def __call__(self, text: str) -> str:
        return str(extract(text))


SYSTEM_PROMPT = "You extract users."  # defined after the functions that read it
LIMITS = (1, 2.5, None, True, b"\x00", ("nested", -3), frozenset({"b", "a"}))
DEFAULT_TONE = Tone.CASUAL

SAMPLES: dict[str, Callable[..., Any]] = {
    "extract": extract,
    "render": render,
    "normalize": normalize,
    "gather": gather,
    "countdown": countdown,
    "is_even": is_even,
    "greet": make_greeter("Hello"),
    "extractor": Extractor(),
    "partial": functools.partial(render, width=4),
}
