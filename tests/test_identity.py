"""Regressions: two calls share a key only if the function would see indistinguishable inputs.

Each test here is a case that once shared a key (and so returned another
call's result), or crashed, on an earlier main.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import functools
import json
import math
import os
import subprocess
import sys
import textwrap
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, HttpUrl, PrivateAttr, create_model, field_validator

from instructor_cache import DiskCache, MemoryCache, instructor_cache
from instructor_cache.errors import ConfigurationError, UnencodableArgumentError
from tests._subprocess import json_under_hash_seed
from tests.conftest import UserDetail

ROOT = Path(__file__).resolve().parent.parent


class Echo(BaseModel):
    text: str


@instructor_cache
def show(value: object) -> Echo:
    """Returns what the function sees of its argument: its repr and its iteration order."""
    order = list(value) if isinstance(value, dict) else None
    return Echo(text=repr((value, order)))


def test_ordered_dicts_in_another_order_get_distinct_keys_and_results() -> None:
    """The function sees an OrderedDict's order (and it compares by it): no shared key."""
    first = collections.OrderedDict([("a", 1), ("b", 2)])
    second = collections.OrderedDict([("b", 2), ("a", 1)])
    assert show.cache_key(first) != show.cache_key(second)
    assert show(first) != show(second)


def test_plain_dicts_in_another_order_get_distinct_keys() -> None:
    """A dict's iteration order is visible to the function too, so it is part of the key."""
    assert show({"a": 1, "b": 2}) != show({"b": 2, "a": 1})
    assert show.cache_key({"a": 1, "b": 2}) == show.cache_key(dict([("a", 1), ("b", 2)]))  # noqa: C406


def test_keyword_arguments_gathered_by_kwargs_keep_their_order() -> None:
    """``f(a=1, b=2)`` and ``f(b=2, a=1)`` pass ``**kwargs`` in another order; named ones do not."""

    @instructor_cache
    def build(text: str, **options: int) -> Echo:
        return Echo(text=f"{text}:{list(options)}")

    assert build("t", a=1, b=2) == Echo(text="t:['a', 'b']")
    assert build("t", b=2, a=1) == Echo(text="t:['b', 'a']")

    @instructor_cache
    def named(a: int, b: int) -> Echo:
        return Echo(text=f"{a}{b}")

    assert named.cache_key(a=1, b=2) == named.cache_key(b=2, a=1)


def test_naive_datetimes_differing_only_in_fold_get_distinct_keys() -> None:
    """The repeated hour at a DST change: fold=0 and fold=1 compare equal but are not the same."""
    first = datetime.datetime(2024, 11, 3, 1, 30)
    second = first.replace(fold=1)
    assert first == second
    assert show.cache_key(first) != show.cache_key(second)
    assert show.cache_key(first.time()) != show.cache_key(second.time())


def test_model_classes_made_by_create_model_with_one_name_get_distinct_results() -> None:
    """``response_model=`` classes of one name but other fields never share a key."""
    first = create_model("Result", answer=(int, ...))
    second = create_model("Result", answer=(str, ...), note=(str, ""))

    @instructor_cache
    def extract(text: str, response_model: type[BaseModel]) -> Echo:
        return Echo(text=f"{text}:{sorted(response_model.model_fields)}")

    assert extract.cache_key("t", first) != extract.cache_key("t", second)
    assert extract("t", first) == Echo(text="t:['answer']")
    assert extract("t", second) == Echo(text="t:['answer', 'note']")
    assert extract.cache_key("t", list[first]) != extract.cache_key("t", list[second])  # type: ignore[valid-type]


def test_a_class_that_its_import_path_does_not_lead_to_is_refused_naming_the_parameter() -> None:
    """Two local classes share a qualified name: without a schema, nothing tells them apart."""

    def make() -> type:
        class Local:
            pass

        return Local

    @instructor_cache
    def use(kind: type) -> Echo:
        return Echo(text=kind.__qualname__)

    with pytest.raises(UnencodableArgumentError, match="'kind'") as caught:
        use(make())
    assert caught.value.parameter == "kind"
    assert use(collections.OrderedDict) == Echo(text="OrderedDict")  # importable: keyed by path


def test_models_differing_only_in_a_private_attribute_get_distinct_keys() -> None:
    """A PrivateAttr is state the function can read: it joins the key, as argument and as self."""

    class Prompt(BaseModel):
        text: str
        _style: str = PrivateAttr("plain")

        @instructor_cache
        def render(self) -> Echo:
            return Echo(text=f"{self._style}:{self.text}")

    plain, fancy = Prompt(text="hi"), Prompt(text="hi")
    fancy._style = "fancy"
    assert show.cache_key(plain) != show.cache_key(fancy)
    assert plain.render() == Echo(text="plain:hi")
    assert fancy.render() == Echo(text="fancy:hi")


def test_flag_members_without_a_name_are_encoded_by_value() -> None:
    """``Flag(0)`` has no name on some Pythons: it is keyed by its value, not a bare TypeError."""

    class Shade(enum.Flag):
        LIGHT = 1
        DARK = 2

    keys = {show.cache_key(member) for member in (Shade(0), Shade.LIGHT, Shade.LIGHT | Shade.DARK)}
    assert len(keys) == 3


def test_nan_and_negative_nan_get_distinct_keys() -> None:
    """``math.copysign`` tells them apart, so the key does too."""
    assert math.copysign(1, -math.nan) != math.copysign(1, math.nan)
    assert show.cache_key(math.nan) != show.cache_key(-math.nan)
    assert show.cache_key(math.nan) == show.cache_key(float("nan"))


def test_deeply_nested_acyclic_arguments_are_keyed_and_cycles_are_named() -> None:
    """Nesting depth is no limit (10,000 levels); a structure containing itself is refused."""
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    other: list[Any] = []
    for _ in range(9_999):
        other = [other]
    assert show.cache_key(deep) != show.cache_key(other)
    shared = [1]
    assert show.cache_key([shared, shared]) == show.cache_key([shared, shared])  # not a cycle
    assert show.cache_key([shared, shared]) != show.cache_key([[1], [1]])  # aliasing shows
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(UnencodableArgumentError, match="contains itself"):
        show.cache_key(cyclic)


def test_a_closure_reads_its_captured_values_at_call_time() -> None:
    """A captured list filled after decorating changes the key: no stale result."""
    examples: list[str] = []

    @instructor_cache
    def extract(text: str) -> Echo:
        return Echo(text=f"{text}:{examples}")

    assert extract("t") == Echo(text="t:[]")
    examples.append("one example")
    assert extract("t") == Echo(text="t:['one example']")


def test_one_closures_cache_clear_leaves_its_siblings_entries() -> None:
    """Two closures from one factory on a shared backend: clearing one keeps the other's."""
    backend = MemoryCache()
    calls: list[str] = []

    def make_extractor(language: str) -> Any:
        @instructor_cache(backend, ignore=("calls",))
        def extract(text: str) -> Echo:
            calls.append(language)
            return Echo(text=f"[{language}] {text}")

        return extract

    french, german = make_extractor("French"), make_extractor("German")
    french("hi"), german("hi")
    french.cache_clear()
    assert german("hi") == Echo(text="[German] hi")
    assert french("hi") == Echo(text="[French] hi")
    assert calls == ["French", "German", "French"]


def test_a_bound_method_decorated_directly_is_keyed_by_its_instance_at_call_time() -> None:
    """``instructor_cache(obj.method)`` sees the instance as it is at each call."""

    class Extractor(BaseModel):
        prompt: str

        def extract(self, text: str) -> Echo:
            return Echo(text=f"{self.prompt}:{text}")

    extractor = Extractor(prompt="v1")
    extract = instructor_cache(extractor.extract)
    assert extract("t") == Echo(text="v1:t")
    extractor.prompt = "v2"
    assert extract("t") == Echo(text="v2:t")


def test_ignore_may_name_a_captured_variable() -> None:
    """A counter the function appends to would change the key at every call unless ignored."""
    calls: list[str] = []

    @instructor_cache(ignore=("calls",))
    def extract(text: str) -> Echo:
        calls.append(text)
        return Echo(text=text)

    extract("a"), extract("a")
    assert calls == ["a"]
    with pytest.raises(ConfigurationError, match="captures"):
        instructor_cache(ignore=("nothing",))(extract.__wrapped__)


def test_name_pins_the_identity_in_the_key() -> None:
    """Functions of other names given one ``name=`` (and the same code) share entries."""
    backend = MemoryCache()

    def first(text: str) -> Echo:
        return Echo(text=text)

    def second(text: str) -> Echo:
        return Echo(text=text)

    old = instructor_cache(backend, name="app.extract")(first)
    new = instructor_cache(backend, name="app.extract")(second)
    assert old.cache_key("t") == new.cache_key("t")
    assert old.cache_key("t").startswith("instructor_cache:app.extract:")
    assert instructor_cache(backend)(first).cache_key("t") != old.cache_key("t")


@pytest.mark.parametrize("name", ["", "a:b", "a b", "a~b", "x@2", 3])
def test_a_name_that_would_break_the_key_layout_is_refused(name: object) -> None:
    """A name is one readable segment of the key: no separators, no spaces, not empty."""
    with pytest.raises(ConfigurationError, match="name"):
        instructor_cache(name=name)  # type: ignore[call-overload]


SCRIPT = """
import json, sys
from pydantic import BaseModel
from instructor_cache import DiskCache, instructor_cache

class Out(BaseModel):
    text: str

@instructor_cache(DiskCache(sys.argv[1]))
def run(text: str) -> Out:
    return Out(text=text + " from " + {origin!r})

if __name__ == "__main__":
    print(json.dumps([run("x").text, run.cache_key("x")]))
"""


def _run(*args: str, cwd: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_two_scripts_defining_run_never_read_each_others_results(tmp_path: Path) -> None:
    """``python a.py`` and ``python b.py`` are not both ``__main__.run`` on one disk cache."""
    cache = str(tmp_path / "cache")
    for origin in ("a", "b"):
        (tmp_path / f"{origin}.py").write_text(SCRIPT.format(origin=origin))
    first_text, first_key = _run("a.py", cache, cwd=tmp_path)
    second_text, second_key = _run("b.py", cache, cwd=tmp_path)
    assert (first_text, second_text) == ("x from a", "x from b")
    assert first_key.startswith("instructor_cache:a.run:")
    assert second_key.startswith("instructor_cache:b.run:")


def test_a_script_and_an_import_of_it_share_keys(tmp_path: Path) -> None:
    """A cache warmed by ``python tool.py`` is read when the tests import ``tool``."""
    cache = str(tmp_path / "cache")
    (tmp_path / "tool.py").write_text(SCRIPT.format(origin="tool"))
    _, script_key = _run("tool.py", cache, cwd=tmp_path)
    importer = textwrap.dedent(
        """
        import json, sys
        import tool
        print(json.dumps([tool.run("x").text, tool.run.cache_key("x"),
                          tool.run.cache_info().hits]))
        """
    )
    text, imported_key, hits = _run("-c", importer, cache, cwd=tmp_path)
    assert imported_key == script_key
    assert (text, hits) == ("x from 'tool'".replace("'", ""), 1)


def test_a_package_module_run_as_a_script_is_named_by_its_package(tmp_path: Path) -> None:
    """``python pkg/tool.py`` and ``python -m pkg.tool`` name the function ``pkg.tool.run``."""
    cache = str(tmp_path / "cache")
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tool.py").write_text(SCRIPT.format(origin="tool"))
    _, by_path = _run(str(package / "tool.py"), cache, cwd=tmp_path)
    _, by_module = _run("-m", "pkg.tool", cache, cwd=tmp_path)
    assert by_path == by_module
    assert by_path.startswith("instructor_cache:pkg.tool.run:")


def test_disk_entries_of_a_function_survive_only_under_the_same_identity(tmp_path: Path) -> None:
    """The same function through two DiskCaches on one directory shares its entries."""
    calls: list[str] = []

    def extract(text: str) -> UserDetail:
        calls.append(text)
        return UserDetail(name=text, age=1)

    first, second = DiskCache(tmp_path), DiskCache(tmp_path)
    one = instructor_cache(first, ignore=("calls",))(extract)
    two = instructor_cache(second, ignore=("calls",))(extract)
    one("a"), two("a")
    first.close(), second.close()
    assert calls == ["a"]


PROMPT_MODULE = """
from pydantic import BaseModel
from instructor_cache import instructor_cache


class Out(BaseModel):
    text: str


@instructor_cache
def extract(text: str) -> Out:
    return Out(text=SYSTEM_PROMPT + text)


SYSTEM_PROMPT = {prompt!r}  # defined after the function: read at the first call
"""


def _import_prompt_module(tmp_path: Path, name: str, prompt: str) -> Any:
    return _import_source(tmp_path, name, PROMPT_MODULE.format(prompt=prompt))


def _import_source(tmp_path: Path, name: str, source: str) -> Any:
    import importlib.util

    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_an_edited_prompt_constant_defined_after_the_function_changes_the_key(
    tmp_path: Path,
) -> None:
    """The code fingerprint is taken at the first call, so a later constant is part of it."""
    first = _import_prompt_module(tmp_path / "one", "prompts_v", "Answer briefly: ")
    keys = [first.extract.cache_key("x")]
    del sys.modules["prompts_v"]
    second = _import_prompt_module(tmp_path / "two", "prompts_v", "Answer at length: ")
    keys.append(second.extract.cache_key("x"))
    del sys.modules["prompts_v"]
    assert keys[0] != keys[1]
    assert keys[0].split(":")[:3] == keys[1].split(":")[:3]  # same function, schema: other code


def test_the_code_fingerprint_is_computed_once_and_never_on_the_hit_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thousands of calls, hits and misses, fingerprint the function exactly once."""
    from instructor_cache import _fingerprint, _keys

    taken: list[object] = []

    def counting(fn: Any) -> str:
        taken.append(fn)
        return _fingerprint.code_fingerprint(fn)

    monkeypatch.setattr(_keys, "code_fingerprint", counting)

    @instructor_cache
    def extract(text: str, model: str = "m") -> Echo:
        return Echo(text=text + model)

    assert taken == []  # not at decoration
    for i in range(2000):
        extract(str(i % 50))
        extract(text=str(i % 50), model="n")
    assert len(taken) == 1


def test_a_function_that_changes_what_it_captures_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A captured call counter changes every key: the user is told to ignore it, once."""
    calls: list[str] = []

    @instructor_cache
    def extract(text: str) -> Echo:
        calls.append(text)
        return Echo(text=text)

    with caplog.at_level("WARNING", logger="instructor_cache"):
        extract("a"), extract("a"), extract("a")
    assert calls == ["a", "a", "a"]  # never a stale hit: the function sees another list each time
    warnings = [r.getMessage() for r in caplog.records if "changed a variable" in r.getMessage()]
    assert len(warnings) == 1
    assert "ignore=" in warnings[0]


def test_a_captured_object_with_no_stable_encoding_is_refused_at_decoration() -> None:
    """A captured client could change the answer (its base URL): refused, naming it."""

    class Client:
        def __init__(self, base_url: str) -> None:
            self.base_url = base_url

    def make(client: Client) -> Any:
        def extract(text: str) -> Echo:
            return Echo(text=f"{client.base_url}/{text}")

        return extract

    with pytest.raises(UnencodableArgumentError, match="captures 'client'") as caught:
        instructor_cache(make(Client("https://a")))
    assert caught.value.parameter == "client"
    shared = instructor_cache(ignore=("client",))(make(Client("https://a")))
    assert shared("t") == Echo(text="https://a/t")


def test_closures_over_helper_closures_are_keyed_by_what_the_helpers_capture() -> None:
    """A prompt built by a captured helper closure (over the language) joins the key."""
    backend = MemoryCache()

    def make(language: str) -> Any:
        def build_prompt(text: str) -> str:
            return f"[{language}] {text}"

        @instructor_cache(backend)
        def extract(text: str) -> Echo:
            return Echo(text=build_prompt(text))

        return extract

    assert make("French")("hi") == Echo(text="[French] hi")
    assert make("German")("hi") == Echo(text="[German] hi")
    first, second = make("French"), make("French")
    assert first.cache_key("hi") == second.cache_key("hi")


def test_captured_lambdas_of_one_factory_are_told_apart_by_their_code() -> None:
    """Two lambdas share a qualified name; their code decides the key."""
    backend = MemoryCache()

    def make(post: Any) -> Any:
        @instructor_cache(backend)
        def extract(text: str) -> Echo:
            return Echo(text=post(text))

        return extract

    assert make(lambda t: t.upper())("hi") == Echo(text="HI")
    assert make(lambda t: t.lower())("HI") == Echo(text="hi")
    assert make(lambda t: t.upper())("x") != make(lambda t: t.lower())("x")


def _french_by_default(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(text: str, lang: str = "fr") -> Echo:
        return fn(text, lang)  # type: ignore[no-any-return]

    return wrapper


def _inject_client(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(text: str) -> Echo:
        return fn("the-client", text)  # type: ignore[no-any-return]

    return wrapper


def _pass_through_adding_a_default(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Echo:
        kwargs.setdefault("lang", "fr")
        return fn(*args, **kwargs)  # type: ignore[no-any-return]

    return wrapper


def test_calls_are_bound_to_the_signature_of_the_wrapper_the_caller_meets() -> None:
    """A functools.wraps decorator with its own defaults: its defaults decide, not the inner's."""

    @instructor_cache
    @_french_by_default
    def summarize(text: str, lang: str = "en") -> Echo:
        return Echo(text=f"{text} in {lang}")

    assert summarize("hi", "en") == Echo(text="hi in en")
    assert summarize("hi") == Echo(text="hi in fr")


def test_a_wrapper_that_takes_other_parameters_than_the_function_does_not_break_calls() -> None:
    """A wrapper injecting a client: calls it accepts are cached, not refused by the inner."""

    @instructor_cache
    @_inject_client
    def extract(client: str, text: str) -> Echo:
        return Echo(text=f"{client}: {text}")

    assert extract("hi") == Echo(text="the-client: hi")
    assert extract("hi") == Echo(text="the-client: hi")
    assert extract.cache_info().hits == 1


def test_a_pass_through_wrapper_does_not_get_the_inner_defaults_applied() -> None:
    """``(*args, **kwargs)`` may default arguments itself: omitted ones are not filled in."""

    @instructor_cache
    @_pass_through_adding_a_default
    def summarize(text: str, lang: str = "en") -> Echo:
        return Echo(text=f"{text} in {lang}")

    assert summarize("hi", lang="en") == Echo(text="hi in en")
    assert summarize("hi") == Echo(text="hi in fr")
    assert summarize(text="hi") == Echo(text="hi in fr")
    assert summarize.cache_key("hi") == summarize.cache_key(text="hi")  # still bound by name


SPAWN_SCRIPT = """
import json, multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
from pydantic import BaseModel
from instructor_cache import instructor_cache


class Query(BaseModel):
    text: str


@instructor_cache
def extract(query: Query) -> Query:
    return query


def key(text: str) -> str:
    return extract.cache_key(Query(text=text))


if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        worker = pool.submit(key, "hello").result(timeout=60)
    print(json.dumps([key("hello"), worker]))
"""


def test_a_spawned_worker_keys_a_scripts_functions_and_classes_as_the_script_does(
    tmp_path: Path,
) -> None:
    """Under spawn a script runs as ``__mp_main__``: its functions and classes keep their names."""
    (tmp_path / "tool.py").write_text(SPAWN_SCRIPT)
    parent, worker = _run("tool.py", cwd=tmp_path)
    assert parent == worker
    assert parent.startswith("instructor_cache:tool.extract:")


def test_values_pydantic_parses_can_be_arguments() -> None:
    """A datetime parsed from JSON (pydantic's TzInfo), URLs and IP addresses are keyed by value."""

    class Event(BaseModel):
        when: datetime.datetime
        url: HttpUrl
        host: IPv4Address

    def parse(offset: str, url: str) -> Event:
        return Event.model_validate_json(
            json.dumps(
                {
                    "when": f"2024-01-01T12:00:00{offset}",
                    "url": url,
                    "host": "10.0.0.1",
                }
            )
        )

    events = [parse("+02:00", "https://a.example"), parse("+03:00", "https://a.example")]
    events.append(parse("+02:00", "https://b.example"))
    assert len({show.cache_key(event) for event in events}) == 3
    assert show.cache_key(events[0]) == show.cache_key(parse("+02:00", "https://a.example"))


def test_a_builtin_subclass_is_keyed_by_its_data_not_by_what_it_overrides() -> None:
    """A ``str`` subclass masking ``__str__``, and slot attributes, still tell values apart."""

    class Masked(str):
        def __str__(self) -> str:
            return "masked"

    class Tagged(list):  # type: ignore[type-arg]
        __slots__ = ("tag",)

    assert show.cache_key(Masked("a")) != show.cache_key(Masked("b"))
    first, second = Tagged([1]), Tagged([1])
    first.tag, second.tag = "x", "y"  # type: ignore[attr-defined]
    assert show.cache_key(first) != show.cache_key(second)


def test_a_value_shared_many_times_over_is_encoded_once() -> None:
    """``x = [x, x]`` forty times is 2**40 leaves as a tree, but forty distinct lists."""
    shared: list[Any] = ["leaf"]
    for _ in range(40):
        shared = [shared, shared]
    assert show.cache_key(shared) != show.cache_key([shared])


def test_a_namespace_with_a_colon_is_refused() -> None:
    """``:`` separates the key's parts: one namespace's cache_clear() could reach another's."""
    with pytest.raises(ConfigurationError, match="namespace"):
        instructor_cache(namespace="app:v2")


def test_sibling_models_are_never_mistaken_for_one_another() -> None:
    """Temporaries made while encoding one model are not taken for another's (no id reuse)."""

    class Item(BaseModel):
        n: int

    values = [[Item(n=i) for i in range(size)] for size in range(1, 6)]
    changed = [[*items[:-1], Item(n=99)] for items in values]
    keys = {show.cache_key(items) for items in values + changed}
    assert len(keys) == 10


def test_model_classes_of_one_schema_but_other_validation_get_distinct_keys() -> None:
    """A validator or a config the JSON schema does not show still tells two classes apart."""

    def upper(cls: type, value: str) -> str:
        return value.upper()

    plain = create_model("Result", name=(str, ...))
    shouting = create_model(
        "Result",
        name=(str, ...),
        __validators__={"up": field_validator("name")(classmethod(upper))},  # type: ignore[dict-item]
    )
    lowered = create_model("Result", name=(str, ...), __config__=ConfigDict(str_to_lower=True))
    assert plain.model_json_schema() == shouting.model_json_schema() == lowered.model_json_schema()
    keys = {show.cache_key(cls) for cls in (plain, shouting, lowered)}
    keys |= {show.cache_key(cls(name="Ann")) for cls in (plain, shouting, lowered)}
    assert len(keys) == 6
    again = create_model("Result", name=(str, ...))
    assert show.cache_key(again) == show.cache_key(plain)  # the same class, made again


def test_instances_of_local_classes_differing_in_a_class_attribute_get_distinct_keys() -> None:
    """Two dataclasses (or models) made by one factory with another ClassVar prompt."""

    def make(prompt: str) -> tuple[type, type]:
        @dataclasses.dataclass
        class Task:
            text: str
            PROMPT: ClassVar[str] = prompt

        class Query(BaseModel):
            text: str
            PROMPT: ClassVar[str] = prompt

        return Task, Query

    (french_task, french_query), (german_task, german_query) = make("French"), make("German")
    assert show.cache_key(french_task("hi")) != show.cache_key(german_task("hi"))
    assert show.cache_key(french_query(text="hi")) != show.cache_key(german_query(text="hi"))
    assert show.cache_key(french_task("hi")) == show.cache_key(make("French")[0]("hi"))


def test_sharing_of_small_immutable_values_does_not_change_the_key() -> None:
    """Whether two empty tuples are one object depends on the Python: they key alike."""
    empty_built = tuple(x for x in [])  # a fresh object on some versions, the singleton on others
    assert show.cache_key([(), ()]) == show.cache_key([(), empty_built])
    pair = (1, "a")
    assert show.cache_key([pair, pair]) == show.cache_key([(1, "a"), tuple(iter([1, "a"]))])
    nested: tuple[Any, ...] = ("leaf",)
    for _ in range(40):  # a shared immutable structure still costs forty tokens, not 2**40
        nested = (nested, nested)
    assert show.cache_key(nested) != show.cache_key((nested,))


# --- found by the second adversary pass ---------------------------------------------------


def test_positional_calls_passing_one_object_twice_never_share_a_key_with_copies() -> None:
    """``merge(x, x)`` and ``merge(y, z)`` with ``y == z``: the fast path numbers them alike."""

    @instructor_cache
    def merge(first: list[int], second: list[int]) -> Echo:
        first.append(1)
        return Echo(text=str(len(second)))

    shared = [0]
    assert merge(shared, shared) == Echo(text="2")  # appending to first also grew second
    assert merge([0], [0]) == Echo(text="1")
    assert merge.cache_key([[1]], [[1]]) == merge.cache_key(first=[[1]], second=[[1]])


def test_classes_digested_by_many_threads_at_once_are_told_apart() -> None:
    """The in-progress guard is per thread: a race never yields a shared placeholder digest."""
    import concurrent.futures

    def make(suffix: str) -> type[BaseModel]:
        class Tagged(BaseModel):
            name: str
            SUFFIX: ClassVar[str] = suffix

            def tag(self) -> str:
                return self.name + self.SUFFIX

        return Tagged

    classes = [make(str(i)) for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(show.cache_key, classes))
    assert len(set(keys)) == 16


def test_validators_made_by_one_factory_differ_by_what_they_capture() -> None:
    """Two classes whose validators differ only in a captured suffix never share a key."""

    def make(suffix: str) -> type[BaseModel]:
        def add(cls: type, value: str) -> str:
            return value + suffix

        return create_model(
            "Shout",
            name=(str, ...),
            __validators__={"add": field_validator("name")(classmethod(add))},  # type: ignore[dict-item]
        )

    assert show.cache_key(make("!")) != show.cache_key(make("."))
    assert show.cache_key(make("!")) == show.cache_key(make("!"))


def test_a_recursive_local_cached_function_and_one_capturing_a_sibling_or_module_work() -> None:
    """Captured cached functions and modules are keyed by what they are, not refused."""
    import json as json_module

    def factory() -> Any:
        @instructor_cache
        def countdown(n: int) -> Echo:
            return Echo(text="0" if n == 0 else countdown(n - 1).text + str(n))

        @instructor_cache
        def dumped(n: int) -> Echo:
            return Echo(text=json_module.dumps(countdown(n).text))

        return countdown, dumped

    countdown, dumped = factory()
    assert countdown(3) == Echo(text="0123")
    assert dumped(2) == Echo(text='"012"')


def test_a_model_with_a_computed_field_keys_alike_in_every_process() -> None:
    """No object address in a class's digest: a persistent cache hits after a restart."""
    code = (
        "import json\n"
        "from pydantic import BaseModel, computed_field\n"
        "from instructor_cache._schema import model_class_fingerprint\n"
        "class Person(BaseModel):\n"
        "    first: str\n"
        "    @computed_field\n"
        "    @property\n"
        "    def shout(self) -> str:\n"
        "        return self.first.upper()\n"
        "print(json.dumps(model_class_fingerprint(Person)))\n"
    )
    assert json_under_hash_seed(code, "1") == json_under_hash_seed(code, "2")


def test_helpers_that_call_one_another_are_fingerprinted_in_linear_time(tmp_path: Path) -> None:
    """Helpers each calling the next two, the last back to the first: linear, not 1.6**n."""
    import time

    count = 26
    source = ""
    for i in range(count):
        calls = [f"h{j}(n - 1)" for j in (i + 1, i + 2) if j < count]
        if i >= count - 2:
            calls.append("h0(n - 1)")
        source += f"def h{i}(n):\n    return 0 if n <= 0 else {' + '.join(calls)}\n\n"
    module = _import_source(tmp_path, "helpers_ring", source)
    from instructor_cache._fingerprint import code_fingerprint

    started = time.monotonic()
    code_fingerprint(module.h0)
    assert time.monotonic() - started < 10


def test_a_layer_stacked_over_a_cached_function_leaves_out_what_it_leaves_out() -> None:
    """The inner layer's ignore= (a call counter, a client) holds for the layers above it."""
    calls: list[str] = []

    @instructor_cache
    @instructor_cache(ignore=("calls",))
    def extract(text: str) -> Echo:
        calls.append(text)
        return Echo(text=text)

    for _ in range(3):
        extract("a")
    assert calls == ["a"]
    assert extract.cache_info().hits == 2
