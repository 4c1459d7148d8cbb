"""FixtureStore: calls recorded as readable JSON files, replayed from a hostile checkout too."""

from __future__ import annotations

import datetime
import enum
import json
import os
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from instructor_cache import FixtureStore, _memo, _misses, instructor_cache
from instructor_cache._encoding import encode
from instructor_cache.backends.fixtures import MAX_SIZE
from instructor_cache.errors import BackendError
from instructor_cache.testing import StoreContract
from tests._fakes import Clock, FakeLLM, UserDetail
from tests._subprocess import json_under_hash_seed

SECRET = "sk-live-7f3a9c1e-do-not-commit"  # noqa: S105  (a planted fake, looked for in files)


class TestFixtureStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FixtureStore:
        return FixtureStore(tmp_path / "fixtures")

    # A blocking store without async twins, bulk methods or locks: the async
    # adapter runs its sync methods on a worker thread (tested through it),
    # a bulk read is one read per key, and single-flight stays in one process.
    test_async_twins_match_the_sync_methods = None
    test_async_get_with_ttl_matches_the_sync_one = None
    test_async_bulk_twins_match_the_sync_ones = None
    test_get_many_answers_in_key_order = None
    test_set_many_stores_every_item_with_the_ttl = None
    test_lock_is_exclusive_and_released_only_by_its_holder = None
    test_lock_frees_itself_after_its_ttl = None
    test_lock_is_never_read_as_an_entry = None
    test_clear_prefix_leaves_locking_working = None
    test_async_lock_twins_match_the_sync_ones = None
    test_async_callers_lock_through_the_adapter = None


def _extract(text: str, api_key: str, client: Callable[[str], UserDetail]) -> UserDetail:
    """The function under test: the answer depends on the text alone."""
    return client(text)


async def _aextract(text: str, api_key: str, client: Callable[[str], UserDetail]) -> UserDetail:
    """The async twin of ``_extract``."""
    return client(text)


def _cached(directory: Path, fn: Callable[..., Any] = _extract) -> Any:
    return instructor_cache(FixtureStore(directory), ignore=("api_key", "client"))(fn)


def _offline(text: str) -> UserDetail:
    raise AssertionError(f"replay called the model for {text!r}")


def _entry_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.json"))


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock and the call timer the decorator writes into an entry, held still."""
    frozen = types.SimpleNamespace(
        time=lambda: 1_700_000_000.0,
        perf_counter=lambda: 42.0,
        monotonic=time.monotonic,
        sleep=time.sleep,
    )
    monkeypatch.setattr(_memo, "time", frozen)
    monkeypatch.setattr(_misses, "time", frozen)


def test_recorded_calls_replay_from_a_fresh_store_without_calling(tmp_path: Path) -> None:
    """Calls recorded in a directory are all served by a new store on it, the model never called."""
    texts = ["Jason is 25", "Ann is 31", "Bo is 7"]
    llm = FakeLLM()
    record = _cached(tmp_path)
    recorded = [record(text, api_key=SECRET, client=llm) for text in texts]
    assert len(llm.calls) == len(texts)

    replay = _cached(tmp_path)
    assert [replay(text, api_key="other", client=_offline) for text in texts] == recorded
    assert replay.cache_info().hits == len(texts)
    assert replay.cache_info().misses == 0


async def test_async_calls_record_and_replay_with_their_arguments(tmp_path: Path) -> None:
    """An async function records through the worker thread, with its arguments, and replays."""
    record = _cached(tmp_path, _aextract)
    first = await record("Ann is 31", api_key=SECRET, client=FakeLLM())
    (path,) = _entry_files(tmp_path)
    assert json.loads(path.read_text("utf-8"))["arguments"] == {"text": "Ann is 31"}
    replay = _cached(tmp_path, _aextract)
    assert await replay("Ann is 31", api_key=SECRET, client=_offline) == first


def test_file_shows_the_function_its_arguments_and_the_value(tmp_path: Path) -> None:
    """A reviewer sees which function, called with what, answered what, as plain JSON."""
    record = _cached(tmp_path)
    record("Jason is 25", api_key=SECRET, client=FakeLLM())
    (path,) = _entry_files(tmp_path)
    document = json.loads(path.read_text("utf-8"))
    assert document["function"] == f"{__name__}._extract"
    assert document["arguments"] == {"text": "Jason is 25"}
    assert document["value"]["value"] == {"name": "Jason", "age": 25}  # parsed, not a string
    assert document["key"] == record.cache_key("Jason is 25", api_key=SECRET, client=FakeLLM())
    assert "created" not in document  # no TTL: nothing that changes between recordings
    assert path.parent.parent == tmp_path
    assert path.parent.name == document["function"]  # one folder per function


def test_an_ignored_argument_is_written_nowhere(tmp_path: Path) -> None:
    """A secret passed in an ignore= argument appears in no file of the directory."""
    record = _cached(tmp_path)
    for text in ("Jason is 25", "Ann is 31"):
        record(text, api_key=SECRET, client=FakeLLM())
    record.refresh("Bo is 7", api_key=SECRET, client=FakeLLM())
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) == 3
    for path in files:
        assert SECRET.encode() not in path.read_bytes()


def test_files_are_sorted_indented_and_end_in_a_newline(tmp_path: Path) -> None:
    """The format diffs read well: sorted fields, two-space indent, UTF-8 text, a final newline."""
    record = _cached(tmp_path)
    record("Zoë is 30", api_key=SECRET, client=FakeLLM())
    (path,) = _entry_files(tmp_path)
    raw = path.read_text("utf-8")
    document = json.loads(raw)
    assert list(document) == sorted(document)
    assert raw.endswith("}\n")
    assert '\n  "arguments": {\n    "text": "Zoë is 30"\n  },\n' in raw


def test_same_calls_recorded_twice_give_the_same_bytes(tmp_path: Path, frozen_time: None) -> None:
    """Recording the same calls again, in another order, writes the same files byte for byte."""
    texts = ["Jason is 25", "Ann is 31", "Bo is 7"]
    first, second = tmp_path / "first", tmp_path / "second"
    one, other = _cached(first), _cached(second)
    for text in texts:
        one(text, api_key=SECRET, client=FakeLLM())
    for text in reversed(texts):
        other(text, api_key="a-different-key", client=FakeLLM())
    names = [path.relative_to(first) for path in _entry_files(first)]
    assert len(names) == len(texts)
    assert names == [path.relative_to(second) for path in _entry_files(second)]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_an_entry_with_a_ttl_expires_on_read_but_its_file_stays(tmp_path: Path) -> None:
    """Past its TTL an entry is a miss, and the committed file is not deleted by reading it."""
    clock = Clock()
    store = FixtureStore(tmp_path, timer=clock)
    store.set("ns:f:k", "v", ttl=60.0)
    (path,) = _entry_files(tmp_path)
    assert json.loads(path.read_text("utf-8"))["ttl"] == 60.0
    clock.advance(59.0)
    assert store.get_with_ttl("ns:f:k") == ("v", 1.0)
    clock.advance(1.0)
    assert store.get("ns:f:k") is None
    assert path.exists()


def test_text_that_is_not_exact_json_is_kept_as_text(tmp_path: Path) -> None:
    """A text whose JSON would not print back the same (spaces, duplicates, NaN) is kept as is."""
    store = FixtureStore(tmp_path)
    texts = {"a": '{"x": 1}', "b": '{"x":1,"x":2}', "c": '{"x":NaN}', "d": "[1.0,1e16]", "e": "7"}
    for key, text in texts.items():
        store.set(f"ns:f:{key}", text)
    fresh = FixtureStore(tmp_path)
    assert {key: fresh.get(f"ns:f:{key}") for key in texts} == texts
    stored = {json.loads(path.read_text("utf-8"))["key"]: path for path in _entry_files(tmp_path)}
    assert "value" in json.loads(stored["ns:f:e"].read_text("utf-8"))
    assert "text" in json.loads(stored["ns:f:a"].read_text("utf-8"))


# A tampered checkout. Each case rewrites the file of a recorded entry (or its
# folder) and says whether the store itself refuses it, or hands the decorator
# a text that does not decode; either way the call is a miss and pays once.


def _link_outside(path: Path, outside: Path) -> None:
    target = outside / "planted.json"
    target.write_bytes(path.read_bytes())  # a valid entry, but not in the directory
    path.unlink()
    path.symlink_to(target)


def _fifo(path: Path, outside: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _huge(path: Path, outside: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(MAX_SIZE + 1)  # sparse: still valid JSON up front, then zeros


def _malformed(path: Path, outside: Path) -> None:
    path.write_bytes(path.read_bytes()[:-20])


def _value_of_another_type(path: Path, outside: Path) -> None:
    document = json.loads(path.read_text("utf-8"))
    document["value"]["value"] = ["not", "a", "user"]
    path.write_text(json.dumps(document), "utf-8")


def _text_not_a_string(path: Path, outside: Path) -> None:
    document = json.loads(path.read_text("utf-8"))
    document.pop("value", None)
    document["text"] = 5
    path.write_text(json.dumps(document), "utf-8")


def _another_calls_entry(path: Path, outside: Path) -> None:
    document = json.loads(path.read_text("utf-8"))
    document["key"] = document["key"][:-1] + ("0" if document["key"][-1] != "0" else "1")
    path.write_text(json.dumps(document), "utf-8")


def _folder_linked_outside(path: Path, outside: Path) -> None:
    folder = path.parent
    moved = outside / "folder"
    folder.rename(moved)
    folder.symlink_to(moved, target_is_directory=True)


TAMPERINGS: dict[str, Callable[[Path, Path], None]] = {
    "link to a valid file outside": _link_outside,
    "fifo": _fifo,
    "over the size bound": _huge,
    "malformed json": _malformed,
    "value of another type": _value_of_another_type,
    "text not a string": _text_not_a_string,
    "another call's key": _another_calls_entry,
    "folder linked outside": _folder_linked_outside,
}


def _snapshot(directory: Path) -> dict[str, tuple[float, int]]:
    return {
        str(path): (path.lstat().st_mtime, path.lstat().st_size) for path in directory.rglob("*")
    }


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_tampered_entry_is_a_miss_that_calls_the_function(
    tmp_path: Path, tamper: Callable[[Path, Path], None]
) -> None:
    """A planted or corrupt entry is a miss, never an exception, and nothing outside is touched."""
    directory, outside = tmp_path / "fixtures", tmp_path / "outside"
    outside.mkdir()
    _cached(directory)("Jason is 25", api_key=SECRET, client=FakeLLM())
    (path,) = _entry_files(directory)
    tamper(path, outside)
    before = _snapshot(outside)

    llm = FakeLLM()
    replay = _cached(directory)
    assert replay("Jason is 25", api_key=SECRET, client=llm) == UserDetail(name="Jason", age=25)
    assert llm.calls == [("Jason is 25",)]
    assert _snapshot(outside) == before


# What the decorator's codec would catch (a value of the wrong type) is not the store's to refuse.
REFUSED_BY_THE_STORE = {
    name: tamper for name, tamper in TAMPERINGS.items() if tamper is not _value_of_another_type
}


@pytest.mark.parametrize("tamper", REFUSED_BY_THE_STORE.values(), ids=REFUSED_BY_THE_STORE.keys())
def test_the_store_itself_refuses_a_planted_file(
    tmp_path: Path, tamper: Callable[[Path, Path], None]
) -> None:
    """Below the decorator, a planted or malformed file reads as absent and is counted nowhere."""
    directory, outside = tmp_path / "fixtures", tmp_path / "outside"
    outside.mkdir()
    store = FixtureStore(directory)
    store.set("ns:f:k", "v")
    (path,) = _entry_files(directory)
    tamper(path, outside)
    assert store.get("ns:f:k") is None
    assert store.get_with_ttl("ns:f:k") is None
    assert len(store) == 0
    assert store.clear_prefix("") == 0


def test_keys_with_path_syntax_stay_inside_the_directory(tmp_path: Path) -> None:
    """A key naming ``..``, slashes or an absolute path is written as a safe name inside."""
    directory = tmp_path / "fixtures"
    store = FixtureStore(directory)
    keys = ["ns:../../escape:k", "ns:/etc/passwd:k", "ns:..:k", "ns:.hidden:k", "x" * 500]
    for key in keys:
        store.set(key, key)
    assert [store.get(key) for key in keys] == keys
    assert {path.parent for path in tmp_path.rglob("*") if path.is_file()} <= {
        folder for folder in directory.iterdir() if folder.is_dir()
    }
    for path in directory.rglob("*"):
        assert not path.name.startswith("."), path
        assert len(path.name) <= 80, path


def test_files_this_store_did_not_name_are_left_alone(tmp_path: Path) -> None:
    """Planted names (``..``, hidden, other extensions) are neither read, counted nor cleared."""
    store = FixtureStore(tmp_path)
    store.set("ns:f:k", "v")
    (path,) = _entry_files(tmp_path)
    planted = [path.parent / "..evil.json", path.parent / "notes.txt", tmp_path / "x..json"]
    for other in planted:
        other.write_bytes(path.read_bytes())
    assert len(store) == 1
    assert store.clear_prefix("") == 1
    assert all(other.exists() for other in planted)


def test_purge_expired_removes_what_a_crashed_write_left_behind(tmp_path: Path) -> None:
    """A write killed between its temporary file and the rename leaves a hidden file: purged once
    it is an hour old (no write takes that long), never a fresh one a writer may still rename,
    a planted look-alike that is a link, or a file of another name."""
    store = FixtureStore(tmp_path)
    store.set("ns:f:k", "v")
    (path,) = _entry_files(tmp_path)
    leftover = path.parent / f".{path.name}.4242.139872.0a1b2c3d"
    fresh = path.parent / f".{path.name}.4243.139872.0a1b2c3e"
    other = path.parent / f".{path.name}.notes"
    target = tmp_path / "outside.txt"
    link = path.parent / f".{path.name}.4244.139872.0a1b2c3f"
    for file in (leftover, fresh, other, target):
        file.write_bytes(b"{")
    link.symlink_to(target)
    old = time.time() - 2 * 3600
    for file in (leftover, other, target):
        os.utime(file, (old, old))
    os.utime(link, (old, old), follow_symlinks=False)
    assert store.purge_expired() == 0  # no entry expired; the leftover is not an entry
    assert not leftover.exists()
    assert [fresh.exists(), other.exists(), target.exists(), link.is_symlink()] == [True] * 4
    assert store.get("ns:f:k") == "v"


def test_an_entry_too_big_to_read_back_is_refused_when_written(tmp_path: Path) -> None:
    """A write whose file would exceed max_size fails loudly rather than leave a silent miss."""
    store = FixtureStore(tmp_path, max_size=1000)
    store.set("ns:f:small", "x" * 100)
    with pytest.raises(BackendError, match="exceed 1000 bytes"):
        store.set("ns:f:big", "x" * 1000)
    assert store.get("ns:f:small") == "x" * 100
    assert len(_entry_files(tmp_path)) == 1


class Color(enum.Enum):
    RED = "red"


class Query(BaseModel):
    text: str
    tags: set[str]
    day: datetime.date


def _ask(query: Query, colors: frozenset[Color], limit: float, client: Any) -> UserDetail:
    """A function whose arguments have no plain JSON form of their own."""
    return client(query.text)


ARGUMENTS_IN_A_FRESH_PROCESS = """
import datetime, json, sys, tempfile
from pathlib import Path
from tests._fakes import FakeLLM
from tests.test_fixture_store import Color, Query, _ask
from instructor_cache import FixtureStore, instructor_cache

with tempfile.TemporaryDirectory() as directory:
    ask = instructor_cache(FixtureStore(directory), ignore=("client",))(_ask)
    query = Query(text="Ann is 31", tags={"b", "a", "c", "d"}, day=datetime.date(2024, 2, 29))
    ask(query, frozenset({Color.RED}), float("inf"), client=FakeLLM())
    (path,) = Path(directory).rglob("*.json")
    print(json.dumps(json.loads(path.read_text("utf-8"))["arguments"]))
"""


def test_arguments_are_readable_and_the_same_under_any_hash_seed() -> None:
    """Models, sets, dates and enums are written as plain JSON, in an order no hash seed changes."""
    first, second = (json_under_hash_seed(ARGUMENTS_IN_A_FRESH_PROCESS, seed) for seed in "12")
    assert first == second
    tags = ["a", "b", "c", "d"]
    assert first["query"] == {"text": "Ann is 31", "tags": tags, "day": "2024-02-29"}
    assert first["limit"] == encode(float("inf"))  # no JSON number: the key's own token
    assert isinstance(first["colors"], str)  # a set of enums does not sort: its token


class _BrokenDescriptions(FixtureStore):
    def describe(self, key: str, function: str, arguments: Callable[[], Any]) -> None:
        raise RuntimeError("a store of someone else's that fails to take notes")


def test_a_store_that_fails_to_describe_still_records_the_call(tmp_path: Path) -> None:
    """A describe that raises costs the file its arguments, never the call its answer or entry."""
    record = instructor_cache(_BrokenDescriptions(tmp_path), ignore=("api_key", "client"))(_extract)
    assert record("Ann is 31", api_key=SECRET, client=FakeLLM()) == UserDetail(name="Ann", age=31)
    (path,) = _entry_files(tmp_path)
    assert "arguments" not in json.loads(path.read_text("utf-8"))
    assert record("Ann is 31", api_key=SECRET, client=_offline) == UserDetail(name="Ann", age=31)


def test_readers_never_see_a_half_written_entry(tmp_path: Path) -> None:
    """While threads rewrite an entry, every read finds one whole version, never a miss."""
    store = FixtureStore(tmp_path)
    versions = ['{"v":"' + letter * 200_000 + '"}' for letter in "ab"]
    store.set("ns:f:k", versions[0])
    stop = threading.Event()

    def rewrite(version: str) -> None:
        while not stop.is_set():
            store.set("ns:f:k", version)

    writers = [threading.Thread(target=rewrite, args=(version,)) for version in versions]
    for writer in writers:
        writer.start()
    try:
        seen = [store.get("ns:f:k") for _ in range(300)]
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert set(seen) <= set(versions)
    assert not [path for path in tmp_path.rglob("*") if path.name.startswith(".")]
