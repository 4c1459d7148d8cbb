"""Adversarial reproducers for issue 13: our stores as instructor's ``cache=``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from instructor_cache import MemoryCache, RedisCache
from instructor_cache._instructor import cache_info
from tests._subprocess import json_under_hash_seed
from tests.test_instructor_cache_param import Provider, ask, async_client, sync_client


class Suffixed(BaseModel):
    """A model whose validator changes the name only when the call passes a context."""

    name: str = Field(alias="userName")
    age: int

    @field_validator("name")
    @classmethod
    def add_suffix(cls, name: str, info: ValidationInfo) -> str:
        if isinstance(info.context, dict) and "suffix" in info.context:
            info.context.setdefault("validated", []).append(name)
            return name + str(info.context["suffix"])
        return name


def test_a_hit_is_validated_with_the_calls_context_as_the_write_check_was() -> None:
    """A validator that acts on the call's context= must not run twice on a hit.

    The write check validated the stored JSON without the context, found it
    unchanged and stored it; the hit validates it with the context and the
    suffix is added again: "Jason!!" where the provider's answer was "Jason!".
    The check must not record into the caller's context either: one
    validation per create() is all the caller sees.
    """
    provider = Provider()
    client = sync_client(provider, cache=MemoryCache())
    context: dict[str, Any] = {"suffix": "!"}
    names = [
        client.chat.completions.create(**ask(response_model=Suffixed), context=context).name
        for _ in range(3)
    ]
    assert names == ["Jason!"] * 3
    assert context["validated"] == ["Jason"] * 3


async def test_an_async_hit_is_validated_with_the_calls_context() -> None:
    """The async client's hit must not re-apply a context validator either."""
    provider = Provider()
    client = async_client(provider, cache=MemoryCache())
    context: dict[str, Any] = {"suffix": "?"}
    names = [
        (await client.chat.completions.create(**ask(response_model=Suffixed), context=context)).name
        for _ in range(2)
    ]
    assert names == ["Jason?"] * 2


AFTER_RELOAD = """
import importlib, json, sys
sys.path.insert(0, ".")
how = sys.argv[1]
import instructor.cache
import instructor_cache
if how == "reload":
    importlib.reload(instructor.cache)
else:
    del sys.modules["instructor.cache"]
    import instructor.cache
from instructor_cache import MemoryCache
from pydantic import BaseModel
from tests.test_instructor_cache_param import Provider, ask, sync_client
class UserDetail(BaseModel):  # no alias: instructor's own AutoCache can serve it back
    userName: str
    age: int
ours, theirs = Provider(), Provider()
mine = sync_client(ours, cache=MemoryCache())
auto = sync_client(theirs, cache=instructor.cache.AutoCache())
for _ in range(3):
    mine.chat.completions.create(**ask(response_model=UserDetail))
    auto.chat.completions.create(**ask(response_model=UserDetail))
print(json.dumps([len(ours.requests), len(theirs.requests)]))
"""


@pytest.mark.parametrize("how", ["reload", "fresh import"])
def test_our_stores_still_cache_after_instructor_cache_is_executed_again(how: str) -> None:
    """After importlib.reload (or a fresh import) of instructor.cache, our stores still cache.

    Re-executing the module makes a new BaseCache and restores instructor's
    own helpers, while the module keeps its "adopted" flag: our stores stop
    being instructor caches and every create() is a paid call, in silence.
    instructor's own AutoCache must cache throughout.
    """
    assert json_under_hash_seed(AFTER_RELOAD, "0", how) == [1, 1]


HOOK_RELOADED = """
import importlib, json
import instructor_cache._instructor_hook as hook
importlib.reload(hook)
try:
    import instructor.cache
except RecursionError:
    print(json.dumps("RecursionError"))
else:
    print(json.dumps("imported"))
"""


def test_instructor_imports_after_our_hook_module_is_reloaded() -> None:
    """Reloading our hook before instructor is imported must not make ``import instructor`` fail.

    The reload installed a second finder; each asked the other for
    instructor.cache's spec, without end, and the import raised RecursionError.
    """
    assert json_under_hash_seed(HOOK_RELOADED, "0") == "imported"


def _user_detail(*, shouting: bool) -> type[BaseModel]:
    """One of two models of one name and one JSON schema; one upper-cases the name."""

    class UserDetail(BaseModel):
        name: str = Field(alias="userName")
        age: int

        if shouting:

            @field_validator("name")
            @classmethod
            def shout(cls, name: str) -> str:
                return name.upper()

    return UserDetail


def test_two_models_of_one_schema_do_not_share_an_entry() -> None:
    """A model that validates differently must not be served another's entry.

    instructor keys on the JSON schema, which shows no validator: the quiet
    model got the shouting one's "JASON" where the provider says "Jason"
    (the decorator keys on the class's behaviour too, for this reason).
    """
    provider = Provider()
    client = sync_client(provider, cache=MemoryCache())
    shouting, quiet = _user_detail(shouting=True), _user_detail(shouting=False)
    assert client.chat.completions.create(**ask(response_model=shouting)).name == "JASON"
    assert client.chat.completions.create(**ask(response_model=quiet)).name == "Jason"
    assert client.chat.completions.create(**ask(response_model=quiet)).name == "Jason"
    assert len(provider.requests) == 2


def test_a_cache_ttl_of_practically_forever_is_stored_in_redis(redis_url: str) -> None:
    """cache_ttl=2**63 - 1 (a common "forever") must cache in Redis as it does on disk.

    Redis refuses a PX past its clock's range, so every create() failed to
    store, was counted as an error and paid the provider again.
    """
    provider = Provider()
    store = RedisCache(redis_url, prefix=f"forever{id(provider)}:")
    client = sync_client(provider, cache=store)
    for _ in range(3):
        assert client.chat.completions.create(**ask(cache_ttl=2**63 - 1)).age == 25
    assert len(provider.requests) == 1
    assert cache_info(store).errors == 0
    store.clear()
    store.close()
