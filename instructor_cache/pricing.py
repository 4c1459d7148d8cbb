"""What a model's tokens cost, for ``cache_info().cost_saved``.

Prices are USD per million tokens, input and output, from the providers'
public price lists as of ``PRICES_AS_OF``; they change, so check yours and
add or override any with ``set_price`` (or by assigning into ``PRICES``)::

    from instructor_cache import pricing

    pricing.set_price("my-fine-tuned-model", input=3.0, output=12.0)
    pricing.PRICES["gpt-4o-mini"] = pricing.Price(input=0.15, output=0.60)

A model name finds the longest listed name it starts with, followed by a
date or revision only, so dated releases need no entry of their own:
``gpt-4o-mini-2024-07-18`` costs what ``gpt-4o-mini`` does, never what
``gpt-4o`` does, and ``claude-3-5-haiku-20241022`` what ``claude-3-5-haiku``
does; but ``claude-opus-4-5`` is not ``claude-opus-4``, nor ``gpt-5-pro``
``gpt-5``: a name the table does not know has no price, never a guessed one.
A provider prefix (``openai/``, ``models/``) need not be listed, but may be
(a name listed with it is matched as given). A model with no price costs 0,
its tokens are still counted. Costs are worked out at each hit from the
tokens the entry recorded, so a price set later applies to entries already
stored. The figures are list prices: batch discounts, cached
input, long-context tiers and reasoning surcharges are not modelled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, MutableMapping
from typing import NamedTuple

from instructor_cache.errors import ConfigurationError

__all__ = ["PRICES", "PRICES_AS_OF", "Price", "PriceTable", "cost", "price_of", "set_price"]

PRICES_AS_OF = "2025-08-01"
"""When the built-in figures were taken from the providers' price lists."""

# What may follow a listed name in a longer one: not ".", so "gpt-4.5" is not "gpt-4".
_BOUNDARIES = ("-", "@", ":")
# What may follow that boundary: a date or revision (3 digits or more), or "latest".
_RELEASE = re.compile(r"(?:[0-9]{3,}|latest)(?:[-@:.][0-9a-z]*)*$")
_MEMO_LIMIT = 4096  # model names looked up and remembered before starting over


class Price(NamedTuple):
    """USD per million tokens."""

    input: float
    output: float


class PriceTable(MutableMapping[str, Price]):
    """Model name (lowercase) to ``Price``; a change forgets every lookup made so far.

    Lookups are remembered per model string, so a hit costs a dict read, not a
    scan of the table; assigning or deleting a price clears them.
    """

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices: dict[str, Price] = {}
        self._found: dict[str, Price | None] = {}
        self.update(prices)

    def __getitem__(self, model: str) -> Price:
        return self._prices[model.lower()]

    def __setitem__(self, model: str, price: Price) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"a model name must be a non-empty str, not {model!r}")
        self._prices[model.lower()] = _checked(price)
        self._found = {}

    def __delitem__(self, model: str) -> None:
        del self._prices[model.lower()]
        self._found = {}

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def find(self, model: str) -> Price | None:
        """The price of ``model``, by the longest listed name it starts with; ``None`` if none."""
        found = self._found
        try:
            return found[model]
        except KeyError:
            pass
        price = self._search(model)
        if len(found) >= _MEMO_LIMIT:  # model names read from entries: keep it bounded
            found.clear()
        found[model] = price
        return price

    def _search(self, model: str) -> Price | None:
        """Over a snapshot of the table: a hit's lookup runs while another thread may set a
        price, and iterating the dict itself would then raise out of the hit.

        The name as given is matched too, not only without its provider prefix: a price
        set for ``anthropic/claude-3.5-sonnet`` (as OpenRouter names it) is that name's.
        """
        full = model.lower()
        names = {full, full.rpartition("/")[2]}
        best, found = "", None
        for listed, price in list(self._prices.items()):
            if len(listed) > len(best) and any(_extends(name, listed) for name in names):
                best, found = listed, price
        return found


def _extends(name: str, listed: str) -> bool:
    """Whether ``name`` is ``listed`` or a dated or revised release of it.

    Only a date or a revision number may follow (``-2024-07-18``, ``-20241022``,
    ``-0613``, ``@001``), or ``latest``: a short number is a newer model
    (``claude-opus-4-5`` is not ``claude-opus-4``), and a word another one
    (``gpt-5-pro``, ``gpt-4o-audio-preview``), whose price is unknown rather
    than guessed.
    """
    if not name.startswith(listed):
        return False
    if len(name) == len(listed):
        return True
    return name[len(listed)] in _BOUNDARIES and _RELEASE.match(name, len(listed) + 1) is not None


def _checked(price: object) -> Price:
    if not isinstance(price, tuple) or len(price) != 2:
        raise ConfigurationError(f"a price is Price(input=..., output=...), not {price!r}")
    given, produced = price
    for number in (given, produced):
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not math.isfinite(number)
            or number < 0
        ):
            raise ConfigurationError(
                f"a price is a finite, non-negative number of USD per million tokens, "
                f"not {number!r}"
            )
    return Price(float(given), float(produced))


PRICES = PriceTable(
    {
        # OpenAI
        "gpt-5": Price(1.25, 10.00),
        "gpt-5-mini": Price(0.25, 2.00),
        "gpt-5-nano": Price(0.05, 0.40),
        "gpt-4.1": Price(2.00, 8.00),
        "gpt-4.1-mini": Price(0.40, 1.60),
        "gpt-4.1-nano": Price(0.10, 0.40),
        "gpt-4o": Price(2.50, 10.00),
        "gpt-4o-2024-05-13": Price(5.00, 15.00),  # the first snapshot, dearer than gpt-4o
        "gpt-4o-realtime-preview": Price(5.00, 20.00),
        "gpt-4o-mini": Price(0.15, 0.60),
        "gpt-4o-mini-realtime-preview": Price(0.60, 2.40),
        "gpt-4-turbo": Price(10.00, 30.00),
        # GPT-4 Turbo's previews, named as gpt-4's versions but priced as gpt-4-turbo
        "gpt-4-0125-preview": Price(10.00, 30.00),
        "gpt-4-1106-preview": Price(10.00, 30.00),
        "gpt-4-1106-vision-preview": Price(10.00, 30.00),
        "gpt-4-vision-preview": Price(10.00, 30.00),
        "gpt-4": Price(30.00, 60.00),
        "gpt-4-32k": Price(60.00, 120.00),
        "gpt-3.5-turbo": Price(0.50, 1.50),
        "gpt-3.5-turbo-0613": Price(1.50, 2.00),
        "gpt-3.5-turbo-1106": Price(1.00, 2.00),
        "gpt-3.5-turbo-16k": Price(3.00, 4.00),
        "gpt-3.5-turbo-instruct": Price(1.50, 2.00),
        "o1": Price(15.00, 60.00),
        "o1-pro": Price(150.00, 600.00),
        "o1-mini": Price(1.10, 4.40),
        "o3": Price(2.00, 8.00),
        "o3-pro": Price(20.00, 80.00),
        "o3-mini": Price(1.10, 4.40),
        "o3-deep-research": Price(10.00, 40.00),
        "o4-mini": Price(1.10, 4.40),
        "o4-mini-deep-research": Price(2.00, 8.00),
        # Anthropic
        "claude-opus-4-1": Price(15.00, 75.00),
        "claude-opus-4": Price(15.00, 75.00),
        "claude-sonnet-4": Price(3.00, 15.00),
        "claude-3-7-sonnet": Price(3.00, 15.00),
        "claude-3-5-sonnet": Price(3.00, 15.00),
        "claude-3-5-haiku": Price(0.80, 4.00),
        "claude-3-opus": Price(15.00, 75.00),
        "claude-3-sonnet": Price(3.00, 15.00),
        "claude-3-haiku": Price(0.25, 1.25),
        # Google (prompts up to 200k tokens for 2.5 Pro; text input)
        "gemini-2.5-pro": Price(1.25, 10.00),
        "gemini-2.5-flash": Price(0.30, 2.50),
        "gemini-2.5-flash-lite": Price(0.10, 0.40),
        "gemini-2.0-flash": Price(0.10, 0.40),
        "gemini-2.0-flash-lite": Price(0.075, 0.30),
        "gemini-1.5-pro": Price(1.25, 5.00),
        "gemini-1.5-flash": Price(0.075, 0.30),
        "gemini-1.5-flash-8b": Price(0.0375, 0.15),
    }
)
"""The price table every cost is read from; assign into it to add or override a model."""


def set_price(model: str, *, input: float, output: float) -> None:
    """Add or override the price of ``model`` (and of its dated versions), in USD per million
    tokens."""
    PRICES[model] = Price(input, output)


def price_of(model: str) -> Price | None:
    """The price ``model`` is charged at, or ``None`` if the table has none for it."""
    return PRICES.find(model)


def cost(model: str | None, input_tokens: int, output_tokens: int) -> float:
    """In USD: what ``input_tokens`` in and ``output_tokens`` out of ``model`` cost (0 if
    the model has no price)."""
    price = None if model is None else PRICES.find(model)
    if price is None:
        return 0.0
    return (input_tokens * price.input + output_tokens * price.output) / 1_000_000
