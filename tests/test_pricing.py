"""The price table: dated, extendable, and read by the longest listed name a model starts with."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from instructor_cache import pricing
from instructor_cache.errors import ConfigurationError


@pytest.fixture(autouse=True)
def prices() -> Iterator[pricing.PriceTable]:
    """The price table, restored after each test whatever it changed."""
    saved = dict(pricing.PRICES)
    yield pricing.PRICES
    pricing.PRICES.clear()
    pricing.PRICES.update(saved)


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o", "gpt-4o"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("GPT-4o-Mini", "gpt-4o-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
        ("models/gemini-1.5-flash-002", "gemini-1.5-flash"),
        ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
    ],
)
def test_a_versioned_name_costs_what_its_longest_listed_prefix_costs(
    model: str, listed: str
) -> None:
    """Dated, provider-prefixed and capitalised names find their model, never a shorter one."""
    assert pricing.price_of(model) == pricing.PRICES[listed]


@pytest.mark.parametrize("model", ["gpt-4.5-preview", "gpt-4omni", "o1x", "acme-large", ""])
def test_a_name_that_only_looks_like_a_listed_one_has_no_price(model: str) -> None:
    """A listed name counts only up to a word boundary: "gpt-4" is not "gpt-4.5" nor "gpt-4omni"."""
    assert pricing.price_of(model) is None
    assert pricing.cost(model, 1000, 1000) == 0.0


def test_cost_is_tokens_at_the_price_per_million() -> None:
    """Input and output tokens are charged at their own rates."""
    price = pricing.PRICES["gpt-4o"]
    expected = (1200 * price.input + 300 * price.output) / 1_000_000
    assert pricing.cost("gpt-4o-2024-08-06", 1200, 300) == pytest.approx(expected)
    assert pricing.cost(None, 1200, 300) == 0.0


def test_set_price_overrides_a_lookup_already_remembered() -> None:
    """A price set after a model was looked up applies to its next lookup, dated names too."""
    assert pricing.price_of("gpt-4o-mini-2024-07-18") == pricing.PRICES["gpt-4o-mini"]
    pricing.set_price("gpt-4o-mini", input=1.0, output=2.0)
    assert pricing.price_of("gpt-4o-mini-2024-07-18") == pricing.Price(1.0, 2.0)
    pricing.set_price("gpt-4o-mini-2024-07-18", input=3.0, output=4.0)
    assert pricing.price_of("gpt-4o-mini-2024-07-18") == pricing.Price(3.0, 4.0)
    del pricing.PRICES["gpt-4o-mini-2024-07-18"]
    assert pricing.price_of("gpt-4o-mini-2024-07-18") == pricing.Price(1.0, 2.0)


def test_assigning_into_the_table_adds_a_model() -> None:
    """The table is a mutable mapping: assignment works as set_price does."""
    assert pricing.price_of("acme-large-2025-06-01") is None
    pricing.PRICES["acme-large"] = pricing.Price(input=5, output=6)
    assert pricing.price_of("acme-large-2025-06-01") == pricing.Price(5.0, 6.0)
    assert pricing.price_of("acme-large-v2") is None  # another model: no guessed price


@pytest.mark.parametrize(
    ("given", "produced"),
    [(-1.0, 1.0), (1.0, float("nan")), (float("inf"), 1.0), (True, 1.0)],
    ids=["negative", "nan", "inf", "bool"],
)
def test_a_price_that_is_not_a_rate_is_refused(given: float, produced: float) -> None:
    """A negative, infinite or non-numeric price is a ConfigurationError, which says the unit."""
    with pytest.raises(ConfigurationError, match="USD per million tokens"):
        pricing.set_price("acme", input=given, output=produced)


def test_the_table_says_when_its_figures_were_taken_and_covers_three_providers() -> None:
    """A dated table with OpenAI, Anthropic and Google models, each with a price."""
    assert datetime.date.fromisoformat(pricing.PRICES_AS_OF) <= datetime.date.today()
    for family in ("gpt-", "claude-", "gemini-"):
        assert any(name.startswith(family) for name in pricing.PRICES), family
    assert all(price.input > 0 and price.output > 0 for price in pricing.PRICES.values())
