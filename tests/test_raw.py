"""The raw completion and token usage behind a result, kept on hits: real instructor + openai."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import instructor
import openai
import pytest
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from instructor_cache import MemoryCache, RawResponse, instructor_cache, pricing
from instructor_cache.backends import Store
from tests._openai import USAGE, content_completion, httpx, tool_call_completion


class UserDetail(BaseModel):
    name: str
    age: int


class FakeOpenAI:
    """Answers tool calls (a model or instructor's Iterable of them) and JSON mode; counts."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: Any) -> Any:
        self.requests += 1
        body = json.loads(request.content)
        name, _, age = body["messages"][-1]["content"].partition(" is ")
        user = {"name": name, "age": int(age)}
        if "tools" not in body:
            return content_completion(body["model"], json.dumps(user))
        tool = body["tools"][0]["function"]["name"]
        arguments = {"tasks": [user]} if tool.startswith("Iterable") else user
        return tool_call_completion(body["model"], tool, json.dumps(arguments))


@pytest.fixture
def fake_openai() -> FakeOpenAI:
    return FakeOpenAI()


def client_for(fake: FakeOpenAI, mode: instructor.Mode = instructor.Mode.TOOLS) -> Any:
    http = httpx.Client(transport=httpx.MockTransport(fake))
    return instructor.from_openai(openai.OpenAI(api_key="test-key", http_client=http), mode=mode)


@pytest.fixture
def prices() -> Iterator[pricing.PriceTable]:
    """The price table, restored after the test whatever it changed."""
    saved = dict(pricing.PRICES)
    yield pricing.PRICES
    pricing.PRICES.clear()
    pricing.PRICES.update(saved)


def expected_cost(model: str, hits: int = 1) -> float:
    price = pricing.price_of(model)
    assert price is not None
    per_call = USAGE["prompt_tokens"] * price.input + USAGE["completion_tokens"] * price.output
    return hits * per_call / 1_000_000


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON], ids=str)
def test_a_hit_keeps_the_raw_completion_readable_by_attribute(
    fake_openai: FakeOpenAI, backend: Store, mode: instructor.Mode
) -> None:
    """``result._raw_response`` reads the same usage, model and message on a hit as on the call."""
    client = client_for(fake_openai, mode)

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str, llm: Any) -> UserDetail:
        result: UserDetail = llm.chat.completions.create(
            model="gpt-4o-mini-2024-07-18",
            response_model=UserDetail,
            messages=[{"role": "user", "content": text}],
        )
        return result

    paid = extract("Jason is 25", client)
    hit = extract("Jason is 25", client)
    assert fake_openai.requests == 1
    # Equal to the model without any raw completion: it is not part of the value.
    assert hit == UserDetail(name="Jason", age=25)
    assert hit.model_dump() == paid.model_dump()
    raw, original = hit._raw_response, paid._raw_response  # type: ignore[attr-defined]
    assert isinstance(raw, RawResponse)
    assert raw.usage.total_tokens == original.usage.total_tokens == USAGE["total_tokens"]
    assert raw.model == original.model
    assert raw.choices[0].message.content == original.choices[0].message.content
    assert raw.choices[0].message.role == "assistant"
    assert len(raw.choices) == 1
    assert raw.model_dump() == json.loads(original.model_dump_json())


def test_a_completion_returned_beside_the_model_comes_back_as_a_chat_completion(
    fake_openai: FakeOpenAI, backend: Store
) -> None:
    """``-> tuple[Model, ChatCompletion]`` (create_with_completion) hits with a real completion."""
    client = client_for(fake_openai)

    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str, llm: Any) -> tuple[UserDetail, ChatCompletion]:
        result: tuple[UserDetail, ChatCompletion] = llm.chat.completions.create_with_completion(
            model="gpt-4o",
            response_model=UserDetail,
            messages=[{"role": "user", "content": text}],
        )
        return result

    paid = extract("Jason is 25", client)
    user, completion = extract("Jason is 25", client)
    assert fake_openai.requests == 1
    assert user == UserDetail(name="Jason", age=25)
    assert type(completion) is ChatCompletion
    assert completion == paid[1]
    info = extract.cache_info()
    assert info.tokens_saved == USAGE["total_tokens"]
    assert info.cost_saved == pytest.approx(expected_cost("gpt-4o"))


def test_a_list_hit_counts_the_tokens_of_the_call(fake_openai: FakeOpenAI) -> None:
    """``-> list[Model]``: instructor's ListResponse carries the usage, which the hit counts."""
    client = client_for(fake_openai)

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str, llm: Any) -> list[UserDetail]:
        result: list[UserDetail] = llm.chat.completions.create(
            model="gpt-4o-mini",
            response_model=list[UserDetail],
            messages=[{"role": "user", "content": text}],
        )
        return result

    paid = extract("Jason is 25", client)
    hit = extract("Jason is 25", client)
    assert fake_openai.requests == 1
    assert hit == paid == [UserDetail(name="Jason", age=25)]
    assert extract.cache_info().tokens_saved == USAGE["total_tokens"]
    assert extract.cache_info().cost_saved == pytest.approx(expected_cost("gpt-4o-mini"))


def make_extract(fake: FakeOpenAI, model: str) -> Callable[[str], UserDetail]:
    client = client_for(fake)

    @instructor_cache(MemoryCache(), ignore=("client",))
    def extract(text: str) -> UserDetail:
        result: UserDetail = client.chat.completions.create(
            model=model, response_model=UserDetail, messages=[{"role": "user", "content": text}]
        )
        return result

    return extract


def test_cost_saved_follows_the_price_table(
    fake_openai: FakeOpenAI, prices: pricing.PriceTable
) -> None:
    """Each hit saves the canned usage at the listed price of the model that answered."""
    extract = make_extract(fake_openai, "gpt-4o-mini-2024-07-18")
    for _ in range(3):
        extract("Jason is 25")
    info = extract.cache_info()  # type: ignore[attr-defined]
    assert (info.hits, info.tokens_saved) == (2, 2 * USAGE["total_tokens"])
    assert info.cost_saved == pytest.approx(expected_cost("gpt-4o-mini", hits=2))
    assert info.cost_saved > 0


def test_a_price_set_later_applies_to_entries_stored_before(
    fake_openai: FakeOpenAI, prices: pricing.PriceTable
) -> None:
    """An unknown model saves tokens but no money, until the user gives it a price."""
    extract = make_extract(fake_openai, "acme-large-2026-01-01")
    extract("Jason is 25")
    extract("Jason is 25")
    info = extract.cache_info()  # type: ignore[attr-defined]
    assert (info.tokens_saved, info.cost_saved) == (USAGE["total_tokens"], 0.0)
    pricing.set_price("acme-large", input=2.0, output=4.0)
    extract("Jason is 25")
    info = extract.cache_info()  # type: ignore[attr-defined]
    assert info.tokens_saved == 2 * USAGE["total_tokens"]
    assert info.cost_saved == pytest.approx(expected_cost("acme-large"))


async def test_an_async_hit_keeps_the_raw_completion(fake_openai: FakeOpenAI) -> None:
    """The same through an async instructor client and an async decorated function."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake_openai))
    client = instructor.from_openai(openai.AsyncOpenAI(api_key="test-key", http_client=http))

    @instructor_cache(MemoryCache(), ignore=("client",))
    async def extract(text: str) -> UserDetail:
        result: UserDetail = await client.chat.completions.create(
            model="gpt-4o", response_model=UserDetail, messages=[{"role": "user", "content": text}]
        )
        return result

    await extract("Jason is 25")
    hit = await extract("Jason is 25")
    assert fake_openai.requests == 1
    assert hit._raw_response.usage.total_tokens == USAGE["total_tokens"]  # type: ignore[attr-defined]
    assert extract.cache_info().cost_saved == pytest.approx(expected_cost("gpt-4o"))
    await http.aclose()


def test_a_stored_raw_response_takes_dump_options_that_keep_its_data_and_refuses_others() -> None:
    """Options that change nothing for stored data are taken, as the miss's object takes them;
    a misspelt one is a TypeError, as pydantic's, never silently ignored."""
    from instructor_cache._raw import RawResponse

    raw = RawResponse({"model": "gpt-4o-mini", "usage": {"total_tokens": 3}, "refusal": None})
    assert raw.model_dump(exclude_unset=True, by_alias=True) == dict(raw)
    assert raw.to_dict(exclude_none=True) == {"model": "gpt-4o-mini", "usage": {"total_tokens": 3}}
    assert raw.to_json().startswith('{\n  "model"')  # indent 2, as the openai SDK's
    with pytest.raises(TypeError, match="exclude_nones"):
        raw.model_dump(exclude_nones=True)
