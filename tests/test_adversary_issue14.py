"""Adversary for issue 14: control blocks, fixture directories and the pytest plugin, misused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from instructor_cache import MemoryCache, cache_control, instructor_cache, track_calls
from instructor_cache._cli import main
from instructor_cache.backends.fixtures import FixtureStore
from instructor_cache.errors import CacheMissError
from tests._fakes import Counting, UserDetail

pytest_plugins = ["pytester"]


def test_one_cache_control_object_entered_by_two_overlapping_tasks_does_not_crash() -> None:
    """A block object shared by two tasks (a module-level ``cache_control``) must not raise when
    the task that entered first leaves first: today it resets the other task's token, a
    ValueError ("created in a different Context") out of user code."""
    llm = Counting()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    uncached = cache_control("off")
    entered = asyncio.Event()

    async def first() -> UserDetail:
        with uncached:
            await entered.wait()  # the second task is inside its block too
            return await extract("first")

    async def second() -> UserDetail:
        with uncached:
            entered.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # the first leaves its block before this one does
            return await extract("second")

    async def both() -> list[UserDetail]:
        return list(await asyncio.gather(first(), second()))

    results = asyncio.run(both())
    assert [user.name for user in results] == ["first", "second"]
    assert sorted(llm.calls) == ["first", "second"]


def test_one_track_calls_object_entered_by_two_overlapping_tasks_does_not_crash() -> None:
    """The same for a shared ``track_calls``: leaving it in the task that entered first raises
    ValueError today, out of user code, instead of collecting both tasks' calls."""
    llm = Counting()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    async def extract(text: str) -> UserDetail:
        return llm(text)

    tracker = track_calls()
    entered = asyncio.Event()

    async def first() -> None:
        with tracker:
            await entered.wait()
            await extract("first")

    async def second() -> None:
        with tracker:
            entered.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            await extract("second")

    async def both() -> None:
        await asyncio.gather(first(), second())

    asyncio.run(both())
    assert sorted(llm.calls) == ["first", "second"]


@pytest.mark.parametrize("batch", [False, True], ids=["call", "map"])
@pytest.mark.parametrize("mode", ["replay", "read-only"])
def test_replay_and_read_only_never_delete_a_committed_fixture_file(
    tmp_path: Path, mode: str, batch: bool
) -> None:
    """An entry that no longer decodes is a miss, but in replay or read-only mode the call must
    not delete the committed file (README: "reads never delete one"); today the driver's
    clean-up of an undecodable entry removes it from the checkout."""
    llm = Counting()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    fixtures = FixtureStore(tmp_path / "fixtures")
    with cache_control("write-only", store=fixtures):
        extract("Ann")
    (path,) = (tmp_path / "fixtures").rglob("*.json")
    document = json.loads(path.read_text())
    document["value"]["value"]["age"] = "thirty"  # a hand edit that no longer validates
    path.write_text(json.dumps(document, indent=2) + "\n")
    edited = path.read_bytes()

    with cache_control(mode, store=fixtures):  # type: ignore[arg-type]
        if batch:
            extract.map(["Ann"], return_exceptions=True)
        elif mode == "replay":
            with pytest.raises(CacheMissError):
                extract("Ann")
        else:
            extract("Ann")
    assert path.exists(), f"{mode} deleted a committed fixture file"
    assert path.read_bytes() == edited


@pytest.mark.parametrize("mode", ["replay", "read-only"])
def test_a_stream_in_replay_or_read_only_never_deletes_a_committed_fixture_file(
    tmp_path: Path, mode: str
) -> None:
    """As for a call: a stream read in replay or read-only mode must leave an entry that does not
    decode where it is; today the stream's clean-up deletes the committed file."""
    llm = Counting()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def people(text: str) -> Iterator[UserDetail]:
        for part in text.split(","):
            yield llm(part)

    fixtures = FixtureStore(tmp_path / "fixtures")
    with cache_control("write-only", store=fixtures):
        list(people("Ann,Bo"))
    (path,) = (tmp_path / "fixtures").rglob("*.json")
    path.write_text(path.read_text().replace('"age": 1', '"age": "one"'))
    edited = path.read_bytes()
    with cache_control(mode, store=fixtures):  # type: ignore[arg-type]
        stream = people("Ann,Bo")
    if mode == "replay":
        with pytest.raises(CacheMissError):
            list(stream)
    else:
        assert [user.name for user in stream] == ["Ann", "Bo"]
    assert path.exists(), f"{mode} deleted a committed fixture file"
    assert path.read_bytes() == edited


@pytest.mark.parametrize("how", ["map", "refresh", "stream"])
def test_every_way_of_recording_into_a_fixture_directory_writes_the_call_down(
    tmp_path: Path, how: str
) -> None:
    """README: each fixture file holds the function and its arguments, for review; today an
    entry recorded by ``map``, by ``refresh`` or by a stream under a ``store=`` block (as the
    plugin routes them) holds neither."""
    llm = Counting()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        return llm(text)

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def people(text: str) -> Iterator[UserDetail]:
        yield llm(text)

    with cache_control(store=FixtureStore(tmp_path)):
        if how == "map":
            extract.map(["Ann"])
        elif how == "refresh":
            extract.refresh("Ann")
        else:
            list(people("Ann"))
    (path,) = tmp_path.rglob("*.json")
    document = json.loads(path.read_text())
    assert document.get("arguments") == {"text": "Ann"}
    assert str(document.get("function", "")).endswith("extract" if how != "stream" else "people")


def test_a_call_with_a_huge_argument_is_still_recorded_without_showing_the_argument(
    tmp_path: Path,
) -> None:
    """A paid answer must not be lost because its arguments are too big to show: today the file
    with the arguments exceeds ``max_size``, the write fails (fail-open, logged) and the call is
    never recorded, so replay later misses although the answer itself was small."""
    llm = Counting()

    @instructor_cache(MemoryCache(), ignore=("llm",))
    def extract(text: str) -> UserDetail:
        llm(text)
        return UserDetail(name=text[:3], age=1)

    fixtures = FixtureStore(tmp_path, max_size=16 * 1024)
    document = "Ann " * 10_000  # 40 KB of input, a small answer
    with cache_control("write-only", store=fixtures):
        extract(document)
    with cache_control("replay", store=fixtures):
        assert extract(document).name == "Ann"
    assert len(llm.calls) == 1


def test_purge_expired_on_a_fixture_directory_removes_the_expired_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fixture directory keeps expired files (reads never delete), so ``purge-expired`` must
    remove them; today it removes nothing and claims the store expires entries by itself."""
    store = FixtureStore(tmp_path, timer=lambda: 1000.0)  # recorded long ago: the 1970s
    store.set("instructor_cache:m.f:abcd1234:01", '"short"', ttl=10)
    store.set("instructor_cache:m.f:abcd1234:02", '"long"', ttl=None)
    assert main(["purge-expired", "--fixtures", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert [json.loads(p.read_text())["key"] for p in tmp_path.rglob("*.json")] == [
        "instructor_cache:m.f:abcd1234:02"
    ]


_ENVELOPE = json.dumps({"v": 2, "created": 1.0, "duration": 0.1, "value": "\ud800\x1b[2J"})


@pytest.mark.parametrize("command", [["ls"], ["stats"], ["show", "KEY"]])
def test_the_cli_on_a_planted_key_with_a_lone_surrogate_does_not_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A fixture file from an untrusted checkout may hold a key no terminal can print (a lone
    surrogate, valid JSON); today ``ls`` and ``show`` die with a UnicodeEncodeError traceback."""
    key = "instructor_cache:m.f\ud800:abcd1234:01\ud800"
    FixtureStore(tmp_path).set(key, _ENVELOPE)
    argv = [key if word == "KEY" else word for word in command]
    assert main([*argv, "--fixtures", str(tmp_path)]) == 0
    assert "m.f" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["ls"], ["stats"], ["show", "KEY"]])
def test_the_cli_never_prints_a_planted_keys_terminal_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A planted key is shown, not obeyed: today its escape sequences (retitle the window, clear
    the screen, or worse) reach the terminal raw through the ``ls``/``stats``/``show`` tables."""
    key = "instructor_cache:m.f\x1b[2J:abcd1234:\x1b]0;pwned\x07\x1b[2J"
    FixtureStore(tmp_path).set(key, _ENVELOPE)
    argv = [key if word == "KEY" else word for word in command]
    assert main([*argv, "--fixtures", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "m.f" in out
    assert "\x1b" not in out
    assert "\x07" not in out


SUITE = '''
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import BaseModel

from instructor_cache import MemoryCache, instructor_cache


class User(BaseModel):
    name: str


def llm(text: str) -> User:
    """The provider: it logs each call, so a test can see whether replay reached it."""
    with Path(os.environ["CALL_LOG"]).open("a") as log:
        log.write(text + "\\n")
    return User(name=text)


@instructor_cache(MemoryCache(), ttl=TTL)
def extract(text: str) -> User:
    return llm(text)


BODY
'''

THREADED = """
@pytest.mark.instructor_cache
def test_in_a_worker_thread() -> None:
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(extract, "never recorded").result().name == "never recorded"
"""

PLAIN = """
def test_ann() -> None:
    assert extract("Ann").name == "Ann"
"""


def _suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, body: str, ttl: str) -> Path:
    pytester.makepyfile(test_suite=SUITE.replace("TTL", ttl).replace("BODY", body))
    log = pytester.path / "calls.log"
    monkeypatch.setenv("CALL_LOG", str(log))
    for name in ("CI", "INSTRUCTOR_CACHE_MODE"):
        monkeypatch.delenv(name, raising=False)
    return log


def test_the_marker_in_ci_fails_a_call_made_in_a_worker_thread_instead_of_paying_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``@pytest.mark.instructor_cache`` and CI set, a call never recorded must fail its test;
    today a call made from a worker thread skips the test's control block, reaches the
    provider and the test passes (and locally it is never recorded)."""
    log = _suite(pytester, monkeypatch, THREADED, "None")
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    calls = log.read_text().splitlines() if log.exists() else []
    assert calls == [], "replay in CI called the provider"
    result.assert_outcomes(failed=1)


def test_a_recording_of_a_function_with_a_ttl_still_replays_the_next_day(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A committed recording must replay in CI whenever it runs; today the decorator's ``ttl=``
    is written into the fixture file, so a recording made yesterday of an
    ``@instructor_cache(ttl=3600)`` function is a miss and CI fails."""
    log = _suite(pytester, monkeypatch, PLAIN, "3600")
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--instructor-cache=record")
    assert log.read_text().splitlines() == ["Ann"]
    (path,) = (pytester.path / "tests" / "instructor_cache_fixtures").rglob("*.json")
    document = json.loads(path.read_text())
    if "created" in document:  # the checkout is replayed a day after it was recorded
        document["created"] -= 86400
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--instructor-cache=replay")
    result.assert_outcomes(passed=1)
    assert log.read_text().splitlines() == ["Ann"]


SWALLOWED = """
def test_falls_back_when_the_provider_fails() -> None:
    try:
        user = extract("never recorded")
    except Exception:  # the application degrades gracefully on a provider error
        user = None
    assert user is None or user.name == "never recorded"
"""


def test_replay_fails_a_test_whose_code_swallowed_the_replay_miss(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: under replay "a call not recorded fails its test"; today code that catches the
    provider's errors (``except Exception``, common around LLM calls) also swallows the
    ``CacheMissError``, and the test passes against a fallback nobody recorded."""
    log = _suite(pytester, monkeypatch, SWALLOWED, "None")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--instructor-cache=replay")
    assert not log.exists()
    result.assert_outcomes(failed=1)
