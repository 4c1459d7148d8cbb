"""A real instructor + openai client, its HTTP answered by a mock transport, behind the cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import instructor
import openai
import pytest
from pydantic import BaseModel, Field

from instructor_cache import instructor_cache
from instructor_cache.backends import Store
from tests._openai import httpx, tool_call_completion


class UserDetail(BaseModel):
    """A model whose alias a naive model_dump_json/model_validate_json pair would break."""

    name: str = Field(alias="userName", description="The user's first name")
    age: int


class FakeOpenAI:
    """Answers chat completions with a tool call extracting name and age; records requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.requests.append(body)
        text = body["messages"][-1]["content"]
        name, _, age = text.partition(" is ")
        arguments = json.dumps({"userName": name, "age": int(age)})
        return tool_call_completion(body["model"], "UserDetail", arguments)


@pytest.fixture
def fake_openai() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Any:
    http = httpx.Client(transport=httpx.MockTransport(fake_openai))
    return instructor.from_openai(openai.OpenAI(api_key="test-key", http_client=http))


def make_extract(client: Any, backend: Store) -> Callable[..., UserDetail]:
    @instructor_cache(backend, ignore=("llm",))
    def extract(text: str, llm: Any, model: str = "gpt-4o-mini") -> UserDetail:
        result: UserDetail = llm.chat.completions.create(
            model=model,
            response_model=UserDetail,
            messages=[{"role": "user", "content": text}],
        )
        return result

    return extract


def test_instructor_results_are_cached(
    client: Any, fake_openai: FakeOpenAI, backend: Store
) -> None:
    """instructor's result (its own subclass of the model) is stored; a repeat sends nothing."""
    extract = make_extract(client, backend)
    first = extract("Jason is 25", client)
    assert type(first) is not UserDetail  # instructor's own subclass, with _raw_response
    second = extract("Jason is 25", client)
    assert second == UserDetail(userName="Jason", age=25)
    assert type(second) is UserDetail
    assert len(fake_openai.requests) == 1
    assert extract.cache_info().hits == 1
    extract("Jason is 25", client, model="gpt-4o")
    assert [r["model"] for r in fake_openai.requests] == ["gpt-4o-mini", "gpt-4o"]


def test_entries_survive_a_new_process_view_of_the_directory(
    client: Any, fake_openai: FakeOpenAI, tmp_path: Any, disk: Any
) -> None:
    """A second DiskCache on the same directory, as a restarted app would open, hits."""
    make_extract(client, disk(tmp_path))("Ann is 31", client)
    again = make_extract(client, disk(tmp_path))
    assert again("Ann is 31", client) == UserDetail(userName="Ann", age=31)
    assert len(fake_openai.requests) == 1
