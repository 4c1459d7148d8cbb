"""Final adversary pass over the whole change: what the parts get wrong together."""

from __future__ import annotations

from typing import Any

from instructor_cache import MemoryCache, instructor_cache
from tests._fakes import UserDetail


def _with_raw(user: UserDetail, raw: Any) -> UserDetail:
    """What instructor does to the model it returns."""
    object.__setattr__(user, "_raw_response", raw)
    return user


def test_a_dict_raw_response_json_cannot_carry_is_not_served_changed_on_a_hit() -> None:
    """A dict raw completion with an int key and a tuple comes back on a hit with a string key
    and a list (``raw[200]`` worked on the call, raises KeyError on the hit): a raw response
    whose JSON form is not faithful must not be stored as if it were."""

    @instructor_cache(MemoryCache())
    def extract(text: str) -> UserDetail:
        return _with_raw(
            UserDetail(name=text, age=1), {"model": "gpt-4o", 200: "ok", "stop": ("a",)}
        )

    paid = extract("Al")
    hit = extract("Al")
    assert hit == paid
    raw = getattr(hit, "_raw_response", None)
    assert raw is None or raw == paid._raw_response  # type: ignore[attr-defined]
