"""The CLI (issue 14): every command on a disk directory, a real Redis and a real Cluster."""

from __future__ import annotations

import gc
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
import pytest
from pydantic import BaseModel

from instructor_cache import (
    DiskCache,
    FixtureStore,
    MemoryCache,
    RedisCache,
    instructor_cache,
    pricing,
)
from instructor_cache._cli import main
from instructor_cache._entries import read_entry
from instructor_cache.backends import ScanningStore, Store
from tests._subprocess import PROJECT_ROOT

MODEL = "gpt-4o-mini"


class User(BaseModel):
    name: str


class City(BaseModel):
    city: str


def usage_of(text: str) -> tuple[int, int]:
    """The tokens the simulated call of ``text`` reports (different for each text)."""
    return 100 + len(text), 5 + len(text) // 2


def extract_user(text: str) -> User:
    user = User(name=text)
    given, produced = usage_of(text)
    raw = {"model": MODEL, "usage": {"prompt_tokens": given, "completion_tokens": produced}}
    object.__setattr__(user, "_raw_response", raw)  # as instructor hangs it on a result
    return user


def extract_city(text: str) -> City:
    return City(city=text)


USER = "tests.test_cli.extract_user"
CITY = "tests.test_cli.extract_city"


@dataclass
class Target:
    """A store the tests write through, and the CLI options that name the same store."""

    store: Any
    options: list[str]

    def run(self, *argv: str) -> int:
        return main([argv[0], *self.options, *argv[1:]])

    def json(self, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
        capsys.readouterr()
        assert self.run(*argv, "--json") == 0
        return json.loads(capsys.readouterr().out)

    def fill(self) -> tuple[list[str], list[str]]:
        """Two entries of extract_user and one of extract_city: their keys."""
        user = instructor_cache(self.store)(extract_user)
        city = instructor_cache(self.store)(extract_city)
        for text in ("Ada", "Grace"):
            user(text)
        city("Paris")
        return [user.cache_key(t) for t in ("Ada", "Grace")], [city.cache_key("Paris")]


@pytest.fixture(params=["disk", "redis", "cluster", "fixtures"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "disk":
        store: Any = DiskCache(tmp_path / "cache")
        options = ["--disk", str(tmp_path / "cache")]
    elif request.param == "fixtures":
        (tmp_path / "fixtures").mkdir()
        store = FixtureStore(tmp_path / "fixtures")
        options = ["--fixtures", str(tmp_path / "fixtures")]
    else:
        prefix = f"cli-{uuid.uuid4().hex[:8]}:"
        cluster = request.param == "cluster"
        url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
        store = RedisCache(url, prefix=prefix, cluster=cluster)
        options = ["--redis", url, "--prefix", prefix, *(["--cluster"] if cluster else [])]
    yield Target(store, options)
    if request.param != "fixtures":  # a FixtureStore holds nothing open
        store.close()


def test_stats_reports_entries_sizes_and_recorded_savings_per_function(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats counts each function's entries, bytes and the time, tokens and cost they recorded."""
    user_keys, city_keys = target.fill()
    rows = {row["function"]: row for row in target.json(capsys, "stats")["functions"]}
    assert set(rows) == {f"instructor_cache:{USER}", f"instructor_cache:{CITY}"}
    user = rows[f"instructor_cache:{USER}"]
    texts = [target.store.get(key) for key in user_keys]
    envelopes = [json.loads(text) for text in texts]
    counts = [usage_of(text) for text in ("Ada", "Grace")]
    assert user["entries"] == 2
    assert user["unreadable"] == 0
    assert user["size"] == sum(len(text.encode()) for text in texts)
    assert user["seconds_saved_per_hit"] == pytest.approx(sum(e["duration"] for e in envelopes))
    assert user["tokens_saved_per_hit"] == sum(given + produced for given, produced in counts)
    expected_cost = sum(pricing.cost(MODEL, given, produced) for given, produced in counts)
    assert user["cost_saved_per_hit"] == pytest.approx(expected_cost)
    assert 0 <= user["newest_age"] <= user["oldest_age"] < 60
    assert rows[f"instructor_cache:{CITY}"]["entries"] == len(city_keys)
    assert rows[f"instructor_cache:{CITY}"]["tokens_saved_per_hit"] == 0


def test_stats_prints_a_table_with_one_row_per_function(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json, stats prints a header and a row naming each function."""
    target.fill()
    assert target.run("stats") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["FUNCTION", "ENTRIES", "UNREADABLE"]
    assert lines[1].split()[:2] == [f"instructor_cache:{CITY}", "1"]
    assert lines[2].split()[:2] == [f"instructor_cache:{USER}", "2"]


def test_ls_lists_every_key_with_its_function_and_filters_by_function(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls lists each entry once with its function and size; --function keeps one function's."""
    user_keys, city_keys = target.fill()
    rows = target.json(capsys, "ls")
    assert sorted(row["key"] for row in rows) == sorted(user_keys + city_keys)
    for row in rows:
        assert row["readable"] is True
        assert row["size"] == len(target.store.get(row["key"]).encode())
        assert row["function"] == f"instructor_cache:{USER if row['key'] in user_keys else CITY}"
    for name in (USER, f"instructor_cache:{USER}"):
        only = target.json(capsys, "ls", "--function", name)
        assert sorted(row["key"] for row in only) == sorted(user_keys)
    assert target.run("ls", "--function", CITY) == 0
    table = capsys.readouterr().out
    assert city_keys[0] in table
    assert not any(key in table for key in user_keys)


def test_show_prints_one_entry_pretty_with_its_fields_explained(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """show gives the envelope as JSON, or as explained lines with the value indented."""
    user_keys, _ = target.fill()
    shown = target.json(capsys, "show", user_keys[0])
    assert shown["entry"] == json.loads(target.store.get(user_keys[0]))
    assert shown["entry"]["value"] == {"name": "Ada"}
    assert target.run("show", user_keys[0]) == 0
    text = capsys.readouterr().out
    assert f"function  instructor_cache:{USER}" in text
    assert "duration" in text
    assert "what each hit saves" in text
    assert '    "name": "Ada"' in text
    given, produced = usage_of("Ada")
    assert f"{MODEL}: {given} input + {produced} output tokens" in text


def test_show_of_a_key_with_no_entry_exits_1(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key with no entry is an error naming the key, exit code 1, no traceback."""
    target.fill()
    assert target.run("show", "instructor_cache:nothing.here:00000000:00") == 1
    assert "no entry under 'instructor_cache:nothing.here:00000000:00'" in capsys.readouterr().err


def test_a_corrupt_entry_is_listed_as_unreadable_never_a_traceback(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry that is not JSON is unreadable in ls, stats and show, and every command exits 0."""
    target.fill()
    bad = "instructor_cache:tests.test_cli.broken:abcd1234:" + "f" * 64
    target.store.set(bad, '{"v": 2, "created": ')
    rows = {row["key"]: row for row in target.json(capsys, "ls")}
    assert rows[bad]["readable"] is False
    assert "not JSON" in rows[bad]["problem"]
    functions = {row["function"]: row for row in target.json(capsys, "stats")["functions"]}
    broken = functions["instructor_cache:tests.test_cli.broken"]
    assert (broken["entries"], broken["unreadable"]) == (1, 1)
    assert target.run("show", bad) == 0
    assert "UNREADABLE" in capsys.readouterr().out
    assert target.run("ls") == 0
    assert f"{bad}  UNREADABLE: not JSON" in capsys.readouterr().out


def test_a_planted_pickled_row_on_disk_is_unreadable_and_never_unpickled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row plain diskcache pickled is listed as unreadable: the CLI reads text rows only."""
    key = "instructor_cache:tests.test_cli.planted:abcd1234:" + "e" * 64
    with diskcache.Cache(str(tmp_path / "cache")) as planted:
        planted.set(key, Exploding())
    assert main(["ls", "--disk", str(tmp_path / "cache"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["key"], row["readable"]) == (key, False)
    assert "did not write" in row["problem"]


class Exploding:
    """Unpickling one fails the test: the CLI must never unpickle."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (pytest.fail, ("a pickled row was loaded",))


def test_clear_of_one_function_leaves_the_other_functions_entries(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """clear --function deletes that function's entries and no other's."""
    user_keys, city_keys = target.fill()
    result = target.json(capsys, "clear", "--function", USER, "--yes")
    assert result == {"removed": 2, "functions": [f"instructor_cache:{USER}"]}
    assert [target.store.get(key) for key in user_keys] == [None, None]
    assert target.store.get(city_keys[0]) is not None


def test_clear_of_everything_empties_the_target(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """clear --yes without --function deletes every entry under the target."""
    user_keys, city_keys = target.fill()
    assert target.json(capsys, "clear", "--yes")["removed"] == 3
    assert all(target.store.get(key) is None for key in user_keys + city_keys)
    assert target.json(capsys, "ls") == []


def test_clear_without_yes_deletes_nothing_when_it_cannot_ask(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --yes and no terminal to confirm on, clear deletes nothing and exits 1."""
    user_keys, _ = target.fill()
    assert target.run("clear") == 1
    assert "--yes" in capsys.readouterr().err
    assert all(target.store.get(key) is not None for key in user_keys)


def test_clear_of_a_function_with_no_entries_is_an_error(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --function that names nothing exits 1 saying how functions are named."""
    target.fill()
    assert target.run("clear", "--function", "extract_user", "--yes") == 1
    assert "as `stats` lists it" in capsys.readouterr().err


def test_clear_of_everything_in_redis_without_a_prefix_is_refused(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --prefix, clearing all would empty the database: refused, exit 1, keys kept."""
    other = RedisCache(redis_url)
    name = f"not-a-cache-key-{uuid.uuid4().hex}"
    other.set(name, "the app's own")
    try:
        assert main(["clear", "--redis", redis_url, "--yes"]) == 1
        assert "prefix" in capsys.readouterr().err
        assert other.get(name) == "the app's own"
    finally:
        other.delete(name)
        other.close()


def test_purge_expired_on_disk_removes_an_expired_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """purge-expired deletes a disk entry whose TTL has passed and keeps the live one."""
    store = DiskCache(tmp_path / "cache")
    store.set("instructor_cache:m.f:abcd1234:01", "short", ttl=0.2)
    store.set("instructor_cache:m.f:abcd1234:02", "long", ttl=3600)
    time.sleep(0.4)
    assert len(store) == 2  # the expired row is still there, taking its space
    assert main(["purge-expired", "--disk", str(tmp_path / "cache"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert len(store) == 1
    assert store.get("instructor_cache:m.f:abcd1234:02") == "long"
    store.close()


def test_purge_expired_on_redis_says_redis_expires_by_itself(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """On Redis, purge-expired removes nothing and says Redis expires keys on its own."""
    assert main(["purge-expired", "--redis", redis_url, "--prefix", "cli-purge:"]) == 0
    assert "Redis expires keys on its own" in capsys.readouterr().out


def test_a_directory_without_a_cache_is_an_error_and_no_cache_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --disk path exits 1 and creates nothing there."""
    assert main(["ls", "--disk", str(tmp_path / "typo")]) == 1
    assert "no cache at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_an_unreachable_redis_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Redis nobody listens on exits 1 with a message, in bounded time."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert main(["stats", "--redis", f"redis://127.0.0.1:{port}/0", "--prefix", "x:"]) == 1
    assert "instructor-cache:" in capsys.readouterr().err
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("argv", [["ls"], ["nonsense"], ["ls", "--disk", "a", "--redis", "b"]])
def test_a_usage_error_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Missing or conflicting options and unknown commands exit 2 with argparse's message."""
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "store",
    [
        pytest.param(lambda tmp, url: MemoryCache(maxsize=5000), id="memory"),
        pytest.param(lambda tmp, url: DiskCache(tmp / "scan"), id="disk"),
        pytest.param(
            lambda tmp, url: RedisCache(url, prefix=f"scan-{uuid.uuid4().hex}"), id="redis"
        ),
    ],
)
def test_scan_yields_the_keys_under_a_prefix_and_no_locks(
    store: Any, tmp_path: Path, redis_url: str
) -> None:
    """scan(prefix) yields exactly the entries' keys under the prefix, past a batch, no locks."""
    made = store(tmp_path, redis_url)
    assert isinstance(made, ScanningStore)
    assert isinstance(made, Store)
    wanted = {f"ns:fn:{i:05d}" for i in range(1500)}
    made.set_many(dict.fromkeys(wanted, "x"))
    made.set("ns:fnord:1", "x")
    made.set("other:fn:1", "x")
    if hasattr(made, "lock"):
        assert made.lock("ns:fn:00001", "token", 30)
    try:
        assert sorted(made.scan("ns:fn:")) == sorted(wanted)
        assert set(made.scan()) >= wanted | {"ns:fnord:1", "other:fn:1"}
    finally:
        made.clear_prefix("")
        if hasattr(made, "close"):
            made.close()


def test_memory_scan_leaves_out_expired_entries() -> None:
    """An expired memory entry is not listed, as get would not return it."""
    now = [0.0]
    store = MemoryCache(timer=lambda: now[0])
    store.set("a:b:1", "x", ttl=1)
    store.set("a:b:2", "x")
    now[0] = 5.0
    assert list(store.scan("a:")) == ["a:b:2"]


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "instructor_cache", *argv],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_python_m_instructor_cache_runs_a_command_in_a_fresh_process(tmp_path: Path) -> None:
    """`python -m instructor_cache ls --json` lists the entries a process wrote."""
    store = DiskCache(tmp_path / "cache")
    user = instructor_cache(store)(extract_user)
    user("Ada")
    store.close()
    result = _run("ls", "--disk", str(tmp_path / "cache"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [row["key"] for row in json.loads(result.stdout)] == [user.cache_key("Ada")]


def test_python_m_instructor_cache_without_a_command_still_runs_the_demo(tmp_path: Path) -> None:
    """README's quick start, `python -m instructor_cache`, runs the demo (here in tmp_path)."""
    result = _run("--latency", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "LLM calls: 5 of 12" in result.stdout
    assert (tmp_path / ".instructor_cache_demo").is_dir()


def test_the_demo_command_runs_the_demo_with_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`instructor-cache demo --dir D` runs the demo; the CLI then lists what it stored."""
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--latency", "0"]) == 0
    assert "LLM calls: 5 of 12" in capsys.readouterr().out
    with warnings.catch_warnings():  # the demo never closes its DiskCache, as a user's script
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    rows = Target(None, ["--disk", str(tmp_path / "demo")]).json(capsys, "ls")
    assert len(rows) == 5
    assert {row["function"] for row in rows} == {
        "instructor_cache:instructor_cache._demo.build.<locals>.extract"
    }


def test_an_entry_redis_cannot_get_is_unreadable_with_size_unknown(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key of another type (a hash) under the prefix is listed as unreadable, not a failure."""
    prefix = f"cli-{uuid.uuid4().hex[:8]}:"
    store = RedisCache(redis_url, prefix=prefix)
    key = "instructor_cache:tests.test_cli.hashed:abcd1234:" + "a" * 64
    store.client.hset(prefix + key, "field", "value")
    target = Target(store, ["--redis", redis_url, "--prefix", prefix])
    try:
        (row,) = target.json(capsys, "ls")
        assert (row["key"], row["readable"], row["size"]) == (key, False, None)
        assert "WRONGTYPE" in row["problem"]
        assert target.run("show", key) == 0
        shown = capsys.readouterr().out
        assert "UNREADABLE" in shown
        assert "expires" not in shown  # unknown, not "never"
    finally:
        store.clear_prefix("")
        store.close()


class Terminal(io.StringIO):
    """A standard input that is a terminal, where the user types the given answer."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("n\n", False), ("", False)])
def test_clear_on_a_terminal_deletes_only_when_the_user_says_yes(
    answer: str, deleted: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --yes, clear asks on a terminal: "y" deletes; "n" or end of input keeps all."""
    target = Target(DiskCache(tmp_path / "cache"), ["--disk", str(tmp_path / "cache")])
    user_keys, _ = target.fill()
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    assert target.run("clear", "--function", USER) == (0 if deleted else 1)
    assert all((target.store.get(key) is None) is deleted for key in user_keys)
    target.store.close()


def test_a_reader_that_stops_reading_gets_no_traceback(tmp_path: Path) -> None:
    """`ls | head -1`: the CLI stops quietly, with exit code 1 and nothing on stderr."""
    store = DiskCache(tmp_path / "cache")
    store.set_many({f"instructor_cache:m.f:abcd1234:{i:064x}": "x" * 100 for i in range(3000)})
    store.close()
    path = os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
    with subprocess.Popen(
        [sys.executable, "-m", "instructor_cache", "ls", "--disk", str(tmp_path / "cache")],
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline().split() == ["AGE", "SIZE", "EXPIRES", "KEY"]
        process.stdout.close()
        assert process.wait(timeout=120) == 1
        assert process.stderr.read() == ""


def make_greeter(greeting: str) -> Any:
    """A closure: its keys carry a hash of what it captures (``name~<context8>:``)."""

    def greet(text: str) -> User:
        return User(name=f"{greeting} {text}")

    return greet


def test_a_functions_closures_and_stacked_layers_are_listed_and_cleared_as_that_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--function finds keys of every closure (name~hash) and outer layer (name@2) of a function."""
    store = DiskCache(tmp_path / "cache")
    target = Target(store, ["--disk", str(tmp_path / "cache")])
    hello = instructor_cache(store)(make_greeter("hello"))
    hi = instructor_cache(store)(make_greeter("hi"))
    stacked = instructor_cache(store)(instructor_cache(store)(extract_user))
    keys = [hello.cache_key("Ada"), hi.cache_key("Ada"), stacked.cache_key("Ada")]
    hello("Ada")
    hi("Ada")
    stacked("Ada")  # an entry for each layer: extract_user's and extract_user@2's
    city = instructor_cache(store)(extract_city)
    city("Paris")
    greet = "tests.test_cli.make_greeter.<locals>.greet"
    assert "~" in keys[0]
    assert "@2" in keys[2]
    listed = {row["key"] for row in target.json(capsys, "ls", "--function", greet)}
    assert listed == {keys[0], keys[1]}
    assert len(target.json(capsys, "ls", "--function", USER)) == 2
    assert target.json(capsys, "clear", "--function", greet, "--yes")["removed"] == 2
    cleared = target.json(capsys, "clear", "--function", USER, "--yes")
    assert cleared == {
        "removed": 2,
        "functions": [f"instructor_cache:{USER}", f"instructor_cache:{USER}@2"],
    }
    assert [row["key"] for row in target.json(capsys, "ls")] == [city.cache_key("Paris")]
    store.close()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("[1, 2]", "a JSON list, not an entry", id="not-an-object"),
        pytest.param(
            '{"v": 1, "created": 1.0, "duration": 1.0, "value": 1}',
            "format version 1, not 2",
            id="older-format",
        ),
        pytest.param(
            '{"v": true, "created": 1.0, "duration": 1.0, "value": 1}',
            "format version True",
            id="version-not-an-int",
        ),
        pytest.param(
            '{"v": 2, "created": "today", "duration": 1.0, "value": 1}',
            "'created' is 'today', not a time",
            id="created-not-a-number",
        ),
        pytest.param(
            '{"v": 2, "created": 1.0, "duration": -1, "value": 1}',
            "'duration' is -1, not a time",
            id="negative-duration",
        ),
        pytest.param('{"v": 2, "created": 1.0, "duration": 1.0}', "no 'value'", id="no-value"),
    ],
)
def test_an_entry_of_the_wrong_shape_is_unreadable_with_the_reason(text: str, problem: str) -> None:
    """JSON that is not an envelope we write is unreadable, and the reason says what is wrong."""
    entry = read_entry("instructor_cache:m.f:abcd1234:00", (text, None))
    assert entry.envelope is None
    assert entry.problem is not None
    assert entry.problem.startswith(problem)


def test_show_and_ls_json_stay_strict_json_for_an_entry_holding_nan(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON has no NaN: a planted entry holding one prints null, never a token parsers refuse."""
    target.fill()
    planted = "instructor_cache:tests.test_cli.planted:abcd1234:" + "e" * 64
    target.store.set(planted, '{"v": 2, "created": 1.0, "duration": 0.5, "value": [NaN, 1.5]}')

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the output")

    for command in (["show", planted, "--json"], ["ls", "--json"]):
        assert target.run(*command) == 0
        printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
        if command[0] == "show":
            assert printed["entry"]["value"] == [None, 1.5]
