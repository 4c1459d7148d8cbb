"""Token usage and raw completions in entries: every provider's shape, and entries we did not
write (older ones, corrupt fields), which still hit."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from pydantic import BaseModel

from instructor_cache import MemoryCache, RawResponse, instructor_cache, pricing
from tests._fakes import UserDetail

OPENAI = {"model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 30, "completion_tokens": 7}}
ANTHROPIC = {
    "model": "claude-3-5-haiku-20241022",
    "usage": {"input_tokens": 40, "output_tokens": 11},
}
GOOGLE = {
    "model_version": "gemini-2.0-flash-001",
    "usage_metadata": {"prompt_token_count": 50, "candidates_token_count": 13},
}


def with_raw(user: UserDetail, raw: Any) -> UserDetail:
    """What instructor does to the model it returns."""
    object.__setattr__(user, "_raw_response", raw)
    return user


@pytest.mark.parametrize(
    ("raw", "model", "tokens"),
    [
        (OPENAI, "gpt-4o", (30, 7)),
        (ANTHROPIC, "claude-3-5-haiku", (40, 11)),
        (GOOGLE, "gemini-2.0-flash", (50, 13)),
    ],
    ids=["openai", "anthropic", "google"],
)
def test_each_providers_usage_is_counted_at_its_price(
    raw: dict[str, Any], model: str, tokens: tuple[int, int]
) -> None:
    """OpenAI's, Anthropic's and Google's names for the token counts all reach cache_info()."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), raw)

    extract("Al")
    hit = extract("Al")
    price = pricing.price_of(model)
    assert price is not None
    given, produced = tokens
    info = extract.cache_info()
    assert info.tokens_saved == given + produced
    assert info.cost_saved == pytest.approx((given * price.input + produced * price.output) / 1e6)
    assert hit._raw_response.model_dump() == raw  # type: ignore[attr-defined]


def test_a_raw_response_json_cannot_hold_is_dropped_and_the_value_still_cached() -> None:
    """A raw response with no JSON form is not stored (no pickle, no str()); the value is."""
    calls: list[str] = []

    @instructor_cache(MemoryCache(), ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        return with_raw(UserDetail(name=text, age=1), {"usage": object()})

    extract("Al")
    hit = extract("Al")
    assert calls == ["Al"]
    assert hit == UserDetail(name="Al", age=1)
    assert not hasattr(hit, "_raw_response")


class Opaque:
    """A raw response of a provider class that is neither pydantic nor a dict."""

    def __init__(self) -> None:
        self.usage = {"prompt_tokens": 3, "completion_tokens": 4}


def test_a_raw_response_of_an_unknown_class_is_not_stored_but_its_usage_is() -> None:
    """Its usage still counts; the response itself is not stored as text."""
    store = MemoryCache()

    @instructor_cache(store)
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), Opaque())

    extract("Al")
    hit = extract("Al")
    assert not hasattr(hit, "_raw_response")
    assert extract.cache_info().tokens_saved == 7
    text = store.get(extract.cache_key("Al"))
    assert text is not None
    assert "raw" not in json.loads(text)


def planted(field: str, stored: Any) -> tuple[Any, MemoryCache]:
    """A function whose one entry has ``field`` replaced by ``stored`` (or removed if None)."""
    store = MemoryCache()

    @instructor_cache(store)
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), OPENAI)

    extract("Al")
    key = extract.cache_key("Al")
    entry = json.loads(store.get(key) or "")
    assert field in entry
    if stored is None:
        del entry[field]
    else:
        entry[field] = stored
    store.set(key, json.dumps(entry))
    return extract, store


@pytest.mark.parametrize(
    "stored",
    [
        "9 tokens",
        [9, 5],
        {"model": "gpt-4o", "input": -1, "output": 5},
        {"model": "gpt-4o", "input": 1.5, "output": 5},
        {"model": "gpt-4o", "input": True, "output": 5},
        {"model": 4, "input": 9, "output": 5},
        {"model": "gpt-4o", "input": 10**30, "output": 5},
        {"input": 9},
    ],
    ids=["text", "list", "negative", "float", "bool", "model-not-text", "huge", "partial"],
)
def test_a_usage_field_we_did_not_write_is_ignored_and_the_entry_hits(stored: Any) -> None:
    """A corrupt or planted usage costs its savings, never the hit, never an exception."""
    extract, _ = planted("usage", stored)
    assert extract("Al") == UserDetail(name="Al", age=1)
    info = extract.cache_info()
    assert (info.hits, info.errors, info.tokens_saved, info.cost_saved) == (1, 0, 0, 0.0)


@pytest.mark.parametrize("stored", ["text", 3, [1, 2], True], ids=repr)
def test_a_raw_field_that_is_not_an_object_is_ignored_and_the_entry_hits(stored: Any) -> None:
    """A raw field of another shape gives the hit no raw response, and no exception."""
    extract, _ = planted("raw", stored)
    hit = extract("Al")
    assert hit == UserDetail(name="Al", age=1)
    assert isinstance(getattr(hit, "_raw_response", None), (RawResponse, type(None)))
    assert extract.cache_info().hits == 1


def test_an_entry_written_before_usage_was_recorded_still_hits() -> None:
    """An entry with neither usage nor raw field (the format before them) is a hit saving no
    tokens."""
    extract, store = planted("usage", None)
    key = extract.cache_key("Al")
    entry = json.loads(store.get(key) or "")
    del entry["raw"]
    assert set(entry) == {"v", "created", "duration", "value"}
    store.set(key, json.dumps(entry))
    hit = extract("Al")
    assert hit == UserDetail(name="Al", age=1)
    assert not hasattr(hit, "_raw_response")
    info = extract.cache_info()
    assert (info.hits, info.misses, info.tokens_saved) == (1, 1, 0)


class Completion(BaseModel):
    """A completion-like model returned beside the result."""

    model: str
    usage: dict[str, int]


def test_a_completion_in_a_returned_tuple_gives_its_usage() -> None:
    """``-> tuple[Model, Completion]``: the completion's usage is the call's."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> tuple[UserDetail, Completion]:
        usage = {"prompt_tokens": 2, "completion_tokens": 3}
        return UserDetail(name=text, age=1), Completion(model="gpt-4o-mini", usage=usage)

    extract("Al")
    assert extract("Al")[1].usage == {"prompt_tokens": 2, "completion_tokens": 3}
    assert extract.cache_info().tokens_saved == 5


def test_a_raw_view_is_read_only_and_reads_like_the_response() -> None:
    """Objects by attribute or key, arrays by index; iterable, sized, with a repr that shows the
    data; assignment and unknown fields raise."""
    view = RawResponse({"choices": [{"message": {"content": "hi"}}], "model": "m"})
    assert view.choices[0].message.content == "hi"
    assert view["choices"][0]["message"]["content"] == "hi"
    assert [choice.message.content for choice in view.choices] == ["hi"]
    assert list(view) == ["choices", "model"]
    assert (len(view), len(view.choices), "model" in view) == (2, 1, True)
    assert repr(view) == "RawResponse({'choices': [{'message': {'content': 'hi'}}], 'model': 'm'})"
    assert view == RawResponse(view.model_dump())
    with pytest.raises(AttributeError, match="no field 'usage'"):
        _ = view.usage
    with pytest.raises(AttributeError, match="read-only"):
        view.model = "other"  # type: ignore[misc]


def test_a_hit_with_its_raw_view_copies_and_pickles() -> None:
    """copy.deepcopy and pickle of a hit keep its raw view, though the view refuses assignment."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), OPENAI)

    extract("Al")
    hit = extract("Al")
    for again in (copy.deepcopy(hit), pickle.loads(pickle.dumps(hit))):  # noqa: S301  (our own)
        assert again == hit
        assert again._raw_response == hit._raw_response  # type: ignore[attr-defined]
        assert again._raw_response.usage.prompt_tokens == 30  # type: ignore[attr-defined]
