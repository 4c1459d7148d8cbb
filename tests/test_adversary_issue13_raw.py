"""Adversarial reproducers for issue 13: raw completions, token usage, pricing and savings."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

import instructor
import openai
import pytest
from openai.types.chat import ChatCompletion

from instructor_cache import CircuitBreaker, MemoryCache, instructor_cache, pricing
from tests._fakes import UserDetail
from tests._openai import httpx, tool_call_completion

RAW = {"model": "gpt-4o-mini-2024-07-18", "usage": {"prompt_tokens": 900, "completion_tokens": 100}}
TOKENS = 1000


def with_raw(user: UserDetail, raw: Any = RAW) -> UserDetail:
    """What instructor does to the model it returns."""
    object.__setattr__(user, "_raw_response", raw)
    return user


@pytest.fixture
def prices() -> Iterator[pricing.PriceTable]:
    """The price table, restored after the test whatever it changed."""
    saved = dict(pricing.PRICES)
    yield pricing.PRICES
    pricing.PRICES.clear()
    pricing.PRICES.update(saved)


def openai_client() -> Any:
    """A real instructor + openai client over a mock transport that answers "Name is 25"."""

    def answer(request: Any) -> Any:
        body = json.loads(request.content)
        name, _, age = body["messages"][-1]["content"].partition(" is ")
        tool = body["tools"][0]["function"]["name"]
        arguments = json.dumps({"name": name, "age": int(age)})
        return tool_call_completion(body["model"], tool, arguments)

    http = httpx.Client(transport=httpx.MockTransport(answer))
    return instructor.from_openai(openai.OpenAI(api_key="test-key", http_client=http))


def openai_extract() -> Any:
    """A cached extraction through a real instructor + openai client."""
    client = openai_client()

    @instructor_cache(MemoryCache(), ignore=("client",))
    def extract(text: str) -> UserDetail:
        result: UserDetail = client.chat.completions.create(
            model="gpt-4o-mini",
            response_model=UserDetail,
            messages=[{"role": "user", "content": text}],
        )
        return result

    return extract


def test_a_hits_raw_response_takes_the_dump_options_of_the_providers_response() -> None:
    """``completion.model_dump(exclude_none=True)`` and ``model_dump_json(indent=2)`` work on the
    call's ChatCompletion, so code logging them must not raise TypeError once the call is a hit."""
    extract = openai_extract()
    paid = extract("Jason is 25")._raw_response
    hit = extract("Jason is 25")._raw_response
    assert extract.cache_info().hits == 1
    assert hit.model_dump(exclude_none=True) == paid.model_dump(exclude_none=True)
    assert hit.model_dump(mode="json") == paid.model_dump(mode="json")
    assert json.loads(hit.model_dump_json(indent=2)) == json.loads(paid.model_dump_json(indent=2))
    assert hit.model_dump_json(exclude_none=True) == paid.model_dump_json(exclude_none=True)


def test_a_set_price_during_a_hits_price_lookup_does_not_crash_the_hit(
    prices: pricing.PriceTable,
) -> None:
    """A price set (by another thread) while a hit scans the table for its model's price must not
    raise "dictionary changed size during iteration" out of the decorated call: the trace
    function below stands for that thread, landing between two steps of the scan."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), {**RAW, "model": "gpt-4o-mini-2099"})

    extract("Al")
    landed: list[str] = []

    def another_thread(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code is not pricing.PriceTable._search.__code__:
            return None

        def step(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "line" and not landed and "listed" in frame.f_locals:
                landed.append("set")
                pricing.set_price("acme-large", input=1.0, output=2.0)
            return step

        return step

    previous = sys.gettrace()  # a coverage tracer, say: put back after
    sys.settrace(another_thread)
    try:
        hit = extract("Al")
    finally:
        sys.settrace(previous)
    assert landed == ["set"]
    assert hit == UserDetail(name="Al", age=1)
    assert extract.cache_info().hits == 1


def test_gemini_thinking_tokens_count_in_the_tokens_and_cost_saved() -> None:
    """Gemini 2.5 bills its thinking (``thoughts_token_count``) as output, outside
    ``candidates_token_count``: a hit saves them too, as OpenAI's ``completion_tokens`` and
    Anthropic's ``output_tokens`` already include reasoning."""
    metadata = {
        "prompt_token_count": 50,
        "candidates_token_count": 10,
        "thoughts_token_count": 400,
        "total_token_count": 460,
    }
    raw = {"model_version": "gemini-2.5-flash", "usage_metadata": metadata}

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), raw)

    extract("Al")
    extract("Al")
    info = extract.cache_info()
    assert info.tokens_saved == metadata["total_token_count"]
    price = pricing.price_of("gemini-2.5-flash")
    assert price is not None
    produced = metadata["candidates_token_count"] + metadata["thoughts_token_count"]
    expected = (metadata["prompt_token_count"] * price.input + produced * price.output) / 1e6
    assert info.cost_saved == pytest.approx(expected)


def test_a_model_name_json_text_cannot_carry_does_not_make_every_repeat_a_paid_call() -> None:
    """A raw completion whose model name holds a lone surrogate (json.loads accepts one from the
    wire) must cost the entry its usage at most, never the entry: else each repeat pays again."""
    calls: list[str] = []
    raw = {"model": "gpt-4o\ud800", "usage": {"prompt_tokens": 9, "completion_tokens": 5}}

    @instructor_cache(MemoryCache(), ignore=("calls",))
    def extract(text: str) -> UserDetail:
        calls.append(text)
        return with_raw(UserDetail(name=text, age=1), raw)

    extract("Al")
    assert extract("Al") == UserDetail(name="Al", age=1)
    assert calls == ["Al"]


def test_a_repeated_input_in_a_batch_saves_what_a_repeated_call_would() -> None:
    """``map(["Al", "Al"])`` pays once and counts the repeat as a hit: that hit saved the call's
    tokens and cost, as the second of two single calls does, not nothing."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1))

    @instructor_cache(MemoryCache())
    def single(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1))

    extract.map(["Al", "Al"])
    single("Al")
    single("Al")
    batch, calls = extract.cache_info(), single.cache_info()
    assert (batch.hits, batch.misses) == (calls.hits, calls.misses) == (1, 1)
    assert batch.tokens_saved == calls.tokens_saved == TOKENS
    assert batch.cost_saved == pytest.approx(calls.cost_saved)


async def test_a_waiter_served_by_its_leader_while_the_store_is_skipped_counts_the_savings() -> (
    None
):
    """With the breaker open, a call that waits for the same call in flight gets its result and
    counts a hit; that hit saved the leader's tokens and time, as a waiter served from the store
    does, not nothing."""
    breaker = CircuitBreaker(failures=1, cooldown=3600)
    breaker.failed()  # open: the store is skipped, the leader shares its value itself

    @instructor_cache(MemoryCache(), circuit_breaker=breaker)
    async def extract(text: str) -> UserDetail:
        await asyncio.sleep(0.05)
        return with_raw(UserDetail(name=text, age=1))

    leader = asyncio.create_task(extract("Al"))
    await asyncio.sleep(0.01)  # the leader is computing
    waiter = asyncio.create_task(extract("Al"))
    assert await leader == await waiter == UserDetail(name="Al", age=1)
    info = extract.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert info.tokens_saved == TOKENS
    assert info.time_saved >= 0.04


@pytest.mark.parametrize(
    ("model", "listed_sibling"),
    [
        ("o1-pro-2025-03-19", "o1"),  # $150/$600 per million, o1 is $15/$60
        ("gpt-4o-2024-05-13", "gpt-4o"),  # the first gpt-4o snapshot: $5/$15, not $2.50/$10
        ("gpt-4-1106-preview", "gpt-4"),  # GPT-4 Turbo's preview: $10/$30, not GPT-4's $30/$60
    ],
)
def test_a_model_priced_apart_from_its_listed_prefix_is_not_charged_at_the_prefixs_price(
    model: str, listed_sibling: str
) -> None:
    """The longest-prefix rule must not turn a model the table does not know into another
    model's price: these are priced differently by OpenAI, so cost_saved would be 10x off."""
    assert pricing.price_of(model) != pricing.price_of(listed_sibling)


def test_a_dict_raw_response_reads_back_as_a_dict() -> None:
    """A raw completion that was a dict (the README's example; instructor's Bedrock responses)
    must not come back on a hit as an object on which ``.get``, ``json.dumps`` and
    ``isinstance(raw, dict)`` all fail, when they worked on the call."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), {"model": "gpt-4o", "usage": {"x": 1}})

    paid = extract("Al")._raw_response  # type: ignore[attr-defined]
    hit = extract("Al")._raw_response  # type: ignore[attr-defined]
    assert paid.get("model") == "gpt-4o"
    assert hit.get("model") == "gpt-4o"
    assert json.loads(json.dumps(hit)) == json.loads(json.dumps(paid))


def test_the_model_beside_a_returned_completion_keeps_its_raw_response_on_a_hit() -> None:
    """``-> tuple[Model, ChatCompletion]`` (the README's way to get a real completion back):
    instructor hangs the completion on the model too, so ``user._raw_response`` read on the
    call must not raise AttributeError on its hit."""
    client = openai_client()

    @instructor_cache(MemoryCache(), ignore=("client",))
    def extract(text: str) -> tuple[UserDetail, ChatCompletion]:
        result: tuple[UserDetail, ChatCompletion] = client.chat.completions.create_with_completion(
            model="gpt-4o",
            response_model=UserDetail,
            messages=[{"role": "user", "content": text}],
        )
        return result

    paid, _ = extract("Jason is 25")
    hit, completion = extract("Jason is 25")
    assert extract.cache_info().hits == 1
    raw = hit._raw_response  # type: ignore[attr-defined]
    assert raw.usage.total_tokens == paid._raw_response.usage.total_tokens  # type: ignore[attr-defined]
    assert raw.model == completion.model


def test_credentials_echoed_in_a_raw_response_are_not_stored() -> None:
    """A Responses API response carries the request's tools back: an MCP tool's
    ``authorization`` token and ``headers`` (OpenAI blanks them; a compatible server may echo
    them). The cache must not write those credentials in plain text into every entry."""
    from openai.types.responses import Response

    mcp = {
        "type": "mcp",
        "server_label": "crm",
        "server_url": "https://crm.example/mcp",
        "authorization": "oauth-secret-token",
        "headers": {"X-Api-Key": "sk-mcp-secret"},
    }
    response = Response.model_validate(
        {
            "id": "resp_1",
            "created_at": 0,
            "model": "gpt-4o",
            "object": "response",
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [mcp],
        }
    )
    store = MemoryCache()

    @instructor_cache(store)
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), response)

    extract("Al")
    hit = extract("Al")
    text = store.get(extract.cache_key("Al"))
    assert text is not None
    assert "oauth-secret-token" not in text
    assert "sk-mcp-secret" not in text
    assert hit._raw_response.tools[0].server_label == "crm"  # type: ignore[attr-defined]


def test_bedrock_converse_usage_counts_in_the_tokens_saved() -> None:
    """instructor's Bedrock client returns the Converse response, a dict whose usage is
    ``inputTokens``/``outputTokens``: a hit saves those tokens too, not 0."""
    usage = {"inputTokens": 120, "outputTokens": 30, "totalTokens": 150}

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), {"usage": usage, "stopReason": "end_turn"})

    extract("Al")
    extract("Al")
    assert extract.cache_info().tokens_saved == usage["totalTokens"]


def test_a_list_of_results_from_several_calls_saves_all_their_tokens() -> None:
    """A function that extracts each text with its own instructor call and returns the list
    (each model with its raw completion) paid for every call: its hit saved all their tokens,
    not 0 because the list itself carries no raw completion."""

    @instructor_cache(MemoryCache())
    def extract_all(texts: tuple[str, ...]) -> list[UserDetail]:
        return [with_raw(UserDetail(name=text, age=1), {**RAW}) for text in texts]  # a call each

    extract_all(("Al", "Bo", "Cy"))
    extract_all(("Al", "Bo", "Cy"))
    info = extract_all.cache_info()
    assert info.hits == 1
    assert info.tokens_saved == 3 * TOKENS
    assert info.cost_saved == pytest.approx(3 * pricing.cost(RAW["model"], 900, 100))  # type: ignore[arg-type]


def test_anthropic_prompt_cache_tokens_count_in_the_tokens_saved() -> None:
    """Anthropic's ``input_tokens`` leaves out the prompt tokens written to and read from its
    cache (``cache_creation_input_tokens``, ``cache_read_input_tokens``), which the call still
    processed and paid for: a hit saved them too (OpenAI's ``prompt_tokens`` includes its cached
    ones)."""
    usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 30000,
        "output_tokens": 40,
    }

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return with_raw(UserDetail(name=text, age=1), {"model": "claude-sonnet-4", "usage": usage})

    extract("Al")
    extract("Al")
    assert extract.cache_info().tokens_saved == sum(usage.values())
