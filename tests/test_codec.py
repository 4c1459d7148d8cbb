"""Return values round-trip exactly through JSON, or are refused, never mangled."""

from __future__ import annotations

import collections.abc
import datetime
import enum
import logging
import math
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any, Literal, Optional, Union

import pytest
from pydantic import (
    AliasChoices,
    AliasGenerator,
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    Json,
    computed_field,
)
from pydantic.alias_generators import to_camel
from pydantic_core import TzInfo

from instructor_cache import instructor_cache
from instructor_cache._codec import FORMAT_VERSION, Codec, DecodeError, EncodeError
from instructor_cache._sameness import same_data
from instructor_cache.errors import UncacheableFunctionError
from tests._subprocess import json_under_hash_seed


class Role(enum.Enum):
    ADMIN = "admin"
    USER = "user"


class Address(BaseModel):
    street: str
    city: str = Field(alias="cityName")


class Account(BaseModel):
    """The kind of model real code has, where a naive dump/validate pair breaks."""

    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID = Field(alias="userId")
    display_name: str = Field(alias="displayName")
    settings: Json[dict[str, int]]
    role: Role
    created: datetime.datetime
    birthday: datetime.date | None = None
    balance: Decimal
    addresses: list[Address] = []
    nickname: str = Field(default="", exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        return f"{self.display_name} ({self.role.value})"


def account(**overrides: Any) -> Account:
    data: dict[str, Any] = {
        "userId": uuid.UUID(int=7),
        "displayName": "Jason",
        "settings": '{"retries": 3}',
        "role": Role.ADMIN,
        "created": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
        "birthday": datetime.date(1990, 1, 2),
        "balance": Decimal("10.50"),
        "addresses": [Address(street="Main St", cityName="Springfield")],
    }
    data.update(overrides)
    return Account(**data)


def roundtrip(tp: Any, value: Any) -> Any:
    codec: Codec[Any] = Codec(tp, where="test()")
    decoded, duration = codec.decode(codec.encode(value, created=1.0, duration=2.5))
    assert duration == 2.5
    return decoded


def test_naive_roundtrip_of_this_model_fails() -> None:
    """The naive model_dump_json/model_validate_json pair breaks on Account: the codec must not."""
    with pytest.raises(ValueError, match="validation error"):
        Account.model_validate_json(account().model_dump_json())


def test_real_world_model_roundtrips_exactly() -> None:
    """Aliases, Json fields, computed fields, enums, datetimes, decimals and nesting survive."""
    original = account()
    decoded = roundtrip(Account, original)
    assert decoded == original
    assert type(decoded) is Account
    assert decoded.settings == {"retries": 3}
    assert decoded.created.tzinfo is not None
    assert decoded.label == "Jason (admin)"


@pytest.mark.parametrize(
    ("tp", "value"),
    [
        (list[Account], [account(), account(displayName="Ann")]),
        (Optional[Account], None),  # noqa: UP045  (the spelling users write)
        (Account | None, account()),
        (Union[Account, Address], Address(street="a", cityName="b")),  # noqa: UP007
        (dict[str, list[int]], {"a": [1, 2], "b": []}),
        (str, "plain text"),
        (int, 42),
        (float, 1.5),
        (bool, False),
        (tuple[int, str], (1, "a")),
        (Literal["yes", "no"], "no"),
        (dict[str, Any], {"nested": {"list": [1, "two", None, 3.5]}}),
    ],
    ids=lambda v: str(v)[:30],
)
def test_supported_return_types_roundtrip(tp: Any, value: Any) -> None:
    """Containers, Optional, unions and plain JSON types decode to an equal value."""
    assert roundtrip(tp, value) == value


def test_excluded_field_with_a_non_default_value_is_not_stored() -> None:
    """A value whose excluded field would be lost is refused rather than returned changed."""
    codec: Codec[Account] = Codec(Account, where="test()")
    with pytest.raises(EncodeError, match="reads back as a different value"):
        codec.encode(account(nickname="secret"), created=0, duration=0)


def test_subclass_instance_is_not_stored_as_its_base() -> None:
    """An instance of a subclass would read back as the annotated base class, so it is refused."""

    class Admin(Address):
        level: int

    codec: Codec[Address] = Codec(Address, where="test()")
    with pytest.raises(EncodeError):
        codec.encode(Admin(street="s", cityName="c", level=3), created=0, duration=0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null",
        "[]",
        f'{{"v": {FORMAT_VERSION}}}',
        f'{{"v": {FORMAT_VERSION + 1}, "created": 0, "duration": 0, "value": "x"}}',
        '{"v": 1, "created": 0, "duration": 0, "value": "x"}',  # every field set: not v2's meaning
        f'{{"v": {FORMAT_VERSION}, "created": "yesterday", "duration": 0, "value": "x"}}',
        f'{{"v": {FORMAT_VERSION}, "created": 0, "duration": 0, "value": 5}}',
        b"\xff\xfe",
    ],
    ids=repr,
)
def test_invalid_entries_raise_decode_error(text: str | bytes) -> None:
    """Anything but a current-format entry of the right type is a DecodeError."""
    codec: Codec[str] = Codec(str, where="test()")
    with pytest.raises(DecodeError):
        codec.decode(text)


def test_unknown_envelope_fields_are_ignored() -> None:
    """A newer writer may add fields to the envelope; this reader still decodes the value."""
    codec: Codec[str] = Codec(str, where="test()")
    text = f'{{"v":{FORMAT_VERSION},"created":0,"duration":0.5,"usage":{{"tokens":3}},"value":"x"}}'
    assert codec.decode(text) == ("x", 0.5)


def test_fingerprint_tracks_the_schema() -> None:
    """Changing a field's type or description changes the fingerprint; a rebuild does not."""

    class A(BaseModel):
        x: int

    class B(BaseModel):
        x: str

    class C(BaseModel):
        x: int = Field(description="x")

    def fingerprint(tp: Any) -> str:
        return Codec(tp, where="t()").fingerprint

    assert fingerprint(A) == fingerprint(A)
    assert len({fingerprint(A), fingerprint(B), fingerprint(C), fingerprint(list[A])}) == 4


class Opaque:
    pass


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (None, "nothing to cache"),
        (Any, "concrete type"),
        (object, "concrete type"),
        (Opaque, "cannot round-trip through JSON"),
        (collections.abc.Awaitable[Account], "stream or iterator"),
        (collections.abc.Callable[[], int], "cannot round-trip through JSON"),
    ],
    ids=["none", "any", "object", "opaque-class", "awaitable", "callable"],
)
def test_unstorable_annotation_is_rejected_at_decoration(annotation: Any, message: str) -> None:
    """A return type that cannot round-trip through JSON is a TypeError when decorating."""

    def f(text: str) -> None:
        raise AssertionError("never called")

    f.__annotations__["return"] = annotation
    with pytest.raises(UncacheableFunctionError, match=message) as info:
        instructor_cache(f)
    assert isinstance(info.value, TypeError)


def test_missing_annotation_is_rejected_at_decoration() -> None:
    """A function without a return annotation gets an error that says what to add."""

    def f(text):  # type: ignore[no-untyped-def]
        return text

    with pytest.raises(UncacheableFunctionError, match="no return annotation"):
        instructor_cache(f)


def test_unresolvable_annotation_names_the_problem() -> None:
    """A forward reference that does not resolve is reported at decoration time."""

    def f(text: str) -> NotDefinedAnywhere:  # type: ignore[name-defined]  # noqa: F821
        raise AssertionError

    with pytest.raises(UncacheableFunctionError, match="NotDefinedAnywhere"):
        instructor_cache(f)


def test_unstorable_result_is_returned_logged_once_and_not_cached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A result that would not read back equal is returned every time, never stored."""
    calls: list[str] = []

    @instructor_cache
    def extract(text: str) -> Account:
        calls.append(text)
        return account(nickname="kept out of dumps")

    with caplog.at_level(logging.WARNING, logger="instructor_cache"):
        for _ in range(3):
            assert extract("x").nickname == "kept out of dumps"
    assert len(calls) == 3
    assert extract.cache_info().currsize == 0
    warnings = [r for r in caplog.records if "not caching" in r.getMessage()]
    assert len(warnings) == 1
    assert "test_codec" in warnings[0].getMessage()


def test_wrong_return_type_is_not_cached() -> None:
    """A function that returns a dict where its annotation promises a model is not cached."""
    calls: list[int] = []

    @instructor_cache
    def extract(text: str) -> Address:
        calls.append(1)
        return {"street": "s", "cityName": "c"}  # type: ignore[return-value]

    assert extract("x") == {"street": "s", "cityName": "c"}
    assert extract("x") == {"street": "s", "cityName": "c"}
    assert len(calls) == 2


class Level(str, enum.Enum):
    HIGH = "high"


class Point(BaseModel):
    x: float
    _note: str = "private"


def point(x: Any, note: str = "private") -> Point:
    made = Point(x=0.5)
    made.x, made._note = x, note  # no validate_assignment: kept as given
    return made


class Note(BaseModel):
    text: str = ""


UTC, NEW_YORK = datetime.timezone.utc, zoneinfo.ZoneInfo("America/New_York")
NOON = datetime.datetime(2024, 3, 9, 12)  # a naive wall time, zoned by each case
CEST = datetime.timezone(datetime.timedelta(hours=2), "CEST")


@pytest.mark.parametrize(
    ("original", "reread", "same"),
    [
        (1, 1.0, False),
        (True, 1, False),
        (-0.0, 0.0, False),
        (float("nan"), float("nan"), True),
        (Decimal("1.0"), Decimal("1.00"), False),
        (Decimal("1.0"), Decimal("1.0"), True),
        (b"a", "a", False),
        ((1, 2), [1, 2], False),
        ({1: "x"}, {"1": "x"}, False),
        ({1.0: "x"}, {1: "x"}, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False),
        ({1}, {1.0}, False),
        ({1.5, "a"}, {"a", 1.5}, True),
        (frozenset({"a"}), {"a"}, False),
        (Level.HIGH, "high", False),
        ([Level.HIGH], [Level.HIGH], True),
        (NOON.replace(tzinfo=NEW_YORK), NOON.replace(tzinfo=TzInfo(-5 * 3600)), False),
        (NOON.replace(tzinfo=NEW_YORK), NOON.replace(tzinfo=NEW_YORK), True),
        (NOON.replace(tzinfo=UTC), NOON.replace(tzinfo=TzInfo(0)), True),
        (NOON.replace(tzinfo=CEST), NOON.replace(tzinfo=TzInfo(7200)), False),
        (NOON.replace(fold=1), NOON, False),
        (NOON.replace(tzinfo=UTC), NOON, False),
        (datetime.time(9, tzinfo=UTC), datetime.time(9, tzinfo=TzInfo(0)), True),
        (point(3), point(3.0), False),
        (point(3.0, note="set by the function"), point(3.0), True),
        ({"p": [point(-0.0)]}, {"p": [point(0.0)]}, False),
        (-math.nan, math.nan, False),
        (-math.nan, -math.nan, True),
        (Note(), Note(text=""), False),
        (Note(), Note(), True),
        ([Note(text="a")], [Note.model_construct(text="a", _fields_set=set())], False),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_same_data_tells_equal_values_of_different_kinds_apart(
    original: Any, reread: Any, same: bool
) -> None:
    """Types, zones, folds, signs of zero, exponents and orders count; private attributes do not."""
    assert same_data(original, reread) is same


def test_same_data_of_deeply_nested_values_answers_without_recursing() -> None:
    """A value nested far past the recursion limit is compared, never a RecursionError."""

    def nested() -> list[Any]:
        value: list[Any] = [1.5]
        for _ in range(50_000):
            value = [value]
        return value

    assert same_data(nested(), nested()) is True
    codec: Codec[Any] = Codec(list[Any], where="test()")
    with pytest.raises(EncodeError):
        codec.encode(nested(), created=0, duration=0)


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (set[float], {1, 2}),
        (dict[float, str], {1: "a"}),
        (datetime.datetime, NOON.replace(fold=1)),
        (datetime.datetime, NOON.replace(tzinfo=CEST)),
        (datetime.time, datetime.time(9, tzinfo=NEW_YORK)),
        (Point, point(3)),
    ],
    ids=["int-in-set-of-float", "int-key", "fold", "named-offset", "zoned-time", "int-field"],
)
def test_values_that_read_back_equal_but_not_the_same_are_not_stored(
    annotation: Any, value: Any
) -> None:
    """What JSON would turn into an equal value of another kind is refused, not changed."""
    codec: Codec[Any] = Codec(annotation, where="test()")
    with pytest.raises(EncodeError, match="reads back as a different value"):
        codec.encode(value, created=0, duration=0)


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (float, -0.0),
        (datetime.datetime, NOON.replace(tzinfo=UTC)),
        (Decimal, Decimal("1.00")),
        (Point, point(2.0, note="dropped")),
    ],
    ids=["negative-zero", "utc", "decimal-exponent", "private-attribute"],
)
def test_values_that_round_trip_exactly_are_stored(annotation: Any, value: Any) -> None:
    """A negative zero, a UTC time, a decimal's exponent read back as they were: stored."""
    reread = roundtrip(annotation, value)
    assert same_data(value, reread)
    assert repr(reread) == repr(value) or isinstance(value, (BaseModel, datetime.datetime))


# --- aliases that differ between writing and reading -----------------------------------


class Person(BaseModel):
    full_name: str = Field(serialization_alias="fullName")  # camelCase in the app's API output


class CamelOnly(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=False)

    first_name: str
    last_name: str = ""


class SplitAliases(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=str.upper)
    )

    first_name: str
    nested: list[Person] = []


class Chosen(BaseModel):
    model_config = ConfigDict(validate_by_name=True)

    x: int = Field(validation_alias=AliasChoices("xx", "X"), serialization_alias="ex")
    y: int = Field(0, validation_alias=AliasPath("point", 0))
    name: str = Field(alias="userName", serialization_alias="user_name_out")
    payload: Json[dict[str, int]] = Field(serialization_alias="body")

    @computed_field(alias="labelOut")  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        return f"{self.name}:{self.x}"


ALIASED: dict[str, tuple[Any, Any]] = {
    "serialization-alias": (Person, Person(full_name="Jason Liu")),
    "alias-generator-by-alias-only": (CamelOnly, CamelOnly(firstName="Ann")),
    "split-alias-generator": (
        SplitAliases,
        SplitAliases(firstName="Ann", nested=[Person(full_name="Bo")]),
    ),
    "choices-path-json-computed": (
        Chosen,
        Chosen.model_validate({"X": 1, "point": [2], "userName": "Cy", "payload": '{"a": 1}'}),
    ),
}


@pytest.mark.parametrize(("annotation", "value"), ALIASED.values(), ids=ALIASED.keys())
def test_models_whose_aliases_differ_for_writing_and_reading_round_trip(
    annotation: Any, value: Any
) -> None:
    """Entries are written and read by field name, so no alias setting makes them unreadable."""
    reread = roundtrip(annotation, value)
    assert same_data(value, reread)
    assert type(reread) is annotation
    assert reread.model_dump(by_alias=True) == value.model_dump(by_alias=True)


def test_a_result_with_a_serialization_alias_is_paid_for_once() -> None:
    """A model with a serialization alias is stored, so the same call is not paid again."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def extract(text: str) -> Person:
        calls.append(text)
        return Person(full_name=text)

    assert [extract("Jason Liu").full_name for _ in range(3)] == ["Jason Liu"] * 3
    assert calls == ["Jason Liu"]


# --- the schema fingerprint under any hash seed ---------------------------------------

_SETS_IN_SCHEMA = """
import dataclasses, enum, json, sys
from typing import Annotated, Literal
from typing_extensions import TypedDict
from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.dataclasses import dataclass
from pydantic.json_schema import Examples
from instructor_cache._codec import Codec

WORDS = {"red", "green", "blue", "black", "white", "amber"}

class Tags(enum.Enum):
    SMALL = frozenset({"xs", "s", "m", "tiny", "wee"})

class Item(BaseModel):
    model_config = ConfigDict(json_schema_extra={"palette": set(WORDS)})
    colour: str = Field(examples=[set(WORDS), {"nested": [frozenset(WORDS)]}])
    note: str = Field("", json_schema_extra={"choices": set(WORDS)})
    tags: Tags | None = None
    kind: Literal[frozenset({"alpha", "beta", "gamma", "delta"})] | None = None
    default: set[str] = set(WORDS)
    annotated: Annotated[str, Examples([set(WORDS)])] = ""
    colours: list[Annotated[str, Field(examples=[set(WORDS)])]] = []

    @computed_field(examples=[set(WORDS)])
    @property
    def shown(self) -> str:
        return ""

@dataclass
class Checked:
    colour: str = Field("", examples=[set(WORDS)])

@dataclasses.dataclass
class Plain:
    colour: str = Field("", examples=[set(WORDS)])

class Row(TypedDict):
    colour: Annotated[str, Field(examples=[set(WORDS)])]
    shades: list[Annotated[str, Field(examples=[{"tone": set(WORDS)}])]]

kinds = {"model": list[Item], "dataclass": Checked, "std-dataclass": Plain, "typed-dict": Row}
fingerprints = {name: Codec(kind, where="t()").fingerprint for name, kind in kinds.items()}
print(json.dumps({"fingerprints": fingerprints, "order": list(WORDS)}))
"""


def _fingerprint_in_subprocess(hash_seed: str) -> dict[str, Any]:
    output: dict[str, Any] = json_under_hash_seed(_SETS_IN_SCHEMA, hash_seed)
    return output


def test_sets_in_examples_extras_enums_and_literals_fingerprint_alike_under_any_hash_seed() -> None:
    """A set pydantic writes into the schema in hash order is sorted first: one fingerprint."""
    seed_one, seed_two = _fingerprint_in_subprocess("1"), _fingerprint_in_subprocess("2")
    # The seeds must really reorder sets, or the comparison below proves nothing.
    assert seed_one["order"] != seed_two["order"]
    assert seed_one["fingerprints"] == seed_two["fingerprints"]


def test_a_return_models_validators_and_config_are_in_its_fingerprint() -> None:
    """Editing a validator or a config the JSON schema does not show makes new keys, nested too."""
    from pydantic import ConfigDict, create_model, field_validator

    def shout(cls: type, value: str) -> str:
        return value.upper()

    plain = create_model("Person", name=(str, ...))
    loud = create_model(
        "Person",
        name=(str, ...),
        __validators__={"shout": field_validator("name")(classmethod(shout))},  # type: ignore[dict-item]
    )
    lowered = create_model("Person", name=(str, ...), __config__=ConfigDict(str_to_lower=True))
    fingerprints = {Codec(cls, where="t").fingerprint for cls in (plain, loud, lowered)}
    assert len(fingerprints) == 3
    outer_plain = create_model("Team", lead=(plain, ...))
    outer_loud = create_model("Team", lead=(loud, ...))
    assert Codec(outer_plain, where="t").fingerprint != Codec(outer_loud, where="t").fingerprint
    assert Codec(list[plain], where="t").fingerprint != Codec(list[loud], where="t").fingerprint  # type: ignore[valid-type]
