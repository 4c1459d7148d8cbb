"""Final adversary pass over the stores and keys: each test fails on the code it was written for."""

from __future__ import annotations

import datetime
import decimal
import pathlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import AnyUrl, NameEmail

from instructor_cache import MemoryCache, TieredCache, instructor_cache
from tests._stores import DictStore
from tests.conftest import FakeLLM, UserDetail


class _PausingTTLStore(DictStore):
    """A lower tier that, once armed, pauses inside ``get_with_ttl`` after reading the entry."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.reading = threading.Event()
        self.release = threading.Event()

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        text = self.get(key)
        if self.armed and text is not None:
            self.armed = False
            self.reading.set()
            self.release.wait(10)
        return None if text is None else (text, None)


def test_a_delete_through_the_tiered_store_itself_is_not_undone_by_a_decorated_backfill(
    llm: FakeLLM,
) -> None:
    """A ``TieredCache.delete`` made while a decorated call reads a lower tier is undone.

    The backfill guard counts writes per composition: the decorated
    function's tiers and the ``TieredCache``'s own are composed apart, each
    with its own counter, so a delete through the store itself (or through
    another function decorated over it) does not stop the decorated call
    from copying the deleted entry into memory, where it is served again.
    """
    memory, lower = MemoryCache(), _PausingTTLStore()
    tiered = TieredCache(memory, lower)

    @instructor_cache(tiered, ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    extract("A is 1")
    key = extract.cache_key("A is 1")
    memory.clear()
    lower.armed = True
    reader = threading.Thread(target=extract, args=("A is 1",))
    reader.start()
    assert lower.reading.wait(10)
    assert tiered.delete(key) is True  # gone from every tier
    lower.release.set()
    reader.join(10)
    assert tiered.get(key) is None  # what was deleted stays deleted
    extract("A is 1")
    assert len(llm.calls) == 2


class Money(decimal.Decimal):
    """An amount that carries its currency as an instance attribute."""


class Stamp(datetime.date):
    """A date that carries the calendar it was read from as an instance attribute."""


class Document(pathlib.PurePosixPath):
    """A path that carries the language of the file as an instance attribute."""


class Endpoint(AnyUrl):
    """A URL (pydantic.networks, encoded by its lazy branch) that carries a tenant."""


class Recipient(NameEmail):
    """An e-mail address (pydantic.networks) that carries a mailing list."""


class Ticket(uuid.UUID):
    """A UUID that carries a queue name (set through ``object.__setattr__``: UUID is frozen)."""


_MADE: dict[str, Callable[[], Any]] = {
    "decimal": lambda: Money("1"),
    "date": lambda: Stamp(2024, 1, 1),
    "path": lambda: Document("/a"),
    "url": lambda: Endpoint("https://example.com/"),
    "email": lambda: Recipient("A", "a@example.com"),
    "uuid": lambda: Ticket(int=1),
}


def _tagged(kind: str, tag: str) -> Any:
    value = _MADE[kind]()
    object.__setattr__(value, "tag", tag)
    return value


@pytest.mark.parametrize("kind", sorted(_MADE))
def test_subclass_instances_that_differ_in_their_attributes_do_not_share_a_key(
    kind: str,
) -> None:
    """Subclass instances (a Decimal, date, path, URL, e-mail, UUID) told apart by an attribute.

    ``_encoding`` keys these by class and text (``str``, ``isoformat``,
    name and address) and, unlike the builtin subclasses (a ``str``
    subclass), which keep it through ``_instance_state``, leaves out
    the instance's own attributes; so two instances the function tells
    apart share a key, and the second call is answered with the first's
    result.
    """
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def describe(value: Any) -> UserDetail:
        tag: str = value.tag
        calls.append(tag)
        return UserDetail(name=tag, age=1)

    assert describe(_tagged(kind, "first")).name == "first"
    assert describe(_tagged(kind, "second")).name == "second"
    assert calls == ["first", "second"]


def test_a_paid_result_reaches_the_caller_when_a_capture_becomes_unencodable_during_the_call(
    llm: FakeLLM,
) -> None:
    """A closure that creates its client lazily loses the result it just paid for.

    At decoration the captured ``client`` is ``None``, which encodes; the
    call sets it to a client object, and ``Memo.check_context``, run after
    the paid call to warn about moving captures, re-reads the context
    through ``KeyBuilder.prefix`` and raises ``UnencodableArgumentError``,
    so the caller gets an exception instead of the paid result (the
    memo's own rule: "nothing here may raise, the caller has paid").
    """

    def make() -> Any:
        client: object | None = None

        @instructor_cache(ignore=("llm",))
        def extract(text: str) -> UserDetail:
            nonlocal client
            if client is None:
                client = object()  # the lazily made API client
            return llm(text)

        return extract

    extract = make()
    assert extract("A is 1") == UserDetail(name="A", age=1)
    assert len(llm.calls) == 1
