"""The pytest plugin, run on a small test suite with pytester: record once, replay with no LLM."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITE = '''
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from instructor_cache import instructor_cache


class User(BaseModel):
    name: str
    age: int


def llm(text: str) -> User:
    """The provider: down when LLM_DOWN is set (CI has no network), else it logs each call."""
    if os.environ.get("LLM_DOWN"):
        raise RuntimeError("no network here")
    with Path(os.environ["CALL_LOG"]).open("a") as log:
        log.write(text + "\\n")
    return User(name=text.split()[0], age=len(text))


@instructor_cache
def extract(text: str, api_key: str = "") -> User:
    return llm(text)


def test_ann() -> None:
    assert extract("Ann is here", api_key="sk-secret-123").name == "Ann"


def test_bo() -> None:
    assert extract("BO_TEXT").name == "Bo"
'''


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with two tests calling a cached extraction, and a log of the provider's calls."""
    pytester.makepyfile(test_suite=SUITE.replace("BO_TEXT", "Bo is there"))
    monkeypatch.setenv("CALL_LOG", str(pytester.path / "calls.log"))
    monkeypatch.delenv("LLM_DOWN", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("INSTRUCTOR_CACHE_MODE", raising=False)
    return pytester


def calls(pytester: pytest.Pytester) -> list[str]:
    log = pytester.path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def recorded(pytester: pytest.Pytester) -> list[Path]:
    return sorted((pytester.path / "tests" / "instructor_cache_fixtures").rglob("*.json"))


def test_recorded_calls_replay_with_the_provider_down(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """record writes one file per call; replay passes every test with the provider raising."""
    suite.runpytest_subprocess("--instructor-cache=record").assert_outcomes(passed=2)
    assert calls(suite) == ["Ann is here", "Bo is there"]
    files = recorded(suite)
    assert len(files) == 2
    assert all("extract" in path.parent.name for path in files)
    monkeypatch.setenv("LLM_DOWN", "1")
    suite.runpytest_subprocess("--instructor-cache=replay").assert_outcomes(passed=2)
    assert len(calls(suite)) == 2


def test_a_recorded_file_shows_the_call_and_never_an_ignored_secret(
    suite: pytest.Pytester,
) -> None:
    """A reviewer sees the function and its arguments next to the answer; api_key is not written."""
    suite.makepyfile(
        test_suite=SUITE.replace("BO_TEXT", "Bo is there").replace(
            "@instructor_cache\n", '@instructor_cache(ignore=("api_key",))\n'
        )
    )
    suite.runpytest_subprocess("--instructor-cache=record").assert_outcomes(passed=2)
    texts = [path.read_text() for path in recorded(suite)]
    assert any("Ann is here" in text and '"Ann"' in text for text in texts)
    assert not any("sk-secret-123" in text for text in texts)


def test_replay_of_a_changed_argument_fails_with_the_command_that_records_it(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed input is a miss, never an old answer: the test fails and says how to record."""
    suite.runpytest_subprocess("--instructor-cache=record").assert_outcomes(passed=2)
    suite.makepyfile(test_suite=SUITE.replace("BO_TEXT", "Bo is elsewhere"))
    monkeypatch.setenv("LLM_DOWN", "1")
    result = suite.runpytest_subprocess("--instructor-cache=replay")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*CacheMissError*", "*pytest --instructor-cache=record test_suite.py::test_bo*"]
    )
    assert calls(suite) == ["Ann is here", "Bo is there"]


def test_rewrite_calls_everything_again(suite: pytest.Pytester) -> None:
    """rewrite pays for every call again and overwrites what was recorded."""
    suite.runpytest_subprocess("--instructor-cache=record").assert_outcomes(passed=2)
    suite.runpytest_subprocess("--instructor-cache=rewrite").assert_outcomes(passed=2)
    assert calls(suite) == ["Ann is here", "Bo is there"] * 2
    assert len(recorded(suite)) == 2


def test_off_calls_through_and_records_nothing(suite: pytest.Pytester) -> None:
    """off: every call reaches the provider, nothing is read or written."""
    suite.runpytest_subprocess("--instructor-cache=off").assert_outcomes(passed=2)
    suite.runpytest_subprocess("--instructor-cache=off").assert_outcomes(passed=2)
    assert len(calls(suite)) == 4
    assert recorded(suite) == []


def test_without_the_option_the_plugin_does_nothing(suite: pytest.Pytester) -> None:
    """Installed is not active: no directory, the functions' own caches as usual."""
    suite.runpytest_subprocess().assert_outcomes(passed=2)
    assert recorded(suite) == []
    assert not (suite.path / "tests" / "instructor_cache_fixtures").exists()


def test_the_marker_records_locally_and_replays_in_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """@pytest.mark.instructor_cache without the option: record here, replay where CI is set."""
    suite.makepyfile(
        test_suite=SUITE.replace("BO_TEXT", "Bo is there").replace(
            "def test_ann", "@pytest.mark.instructor_cache\ndef test_ann"
        )
    )
    suite.runpytest_subprocess().assert_outcomes(passed=2)
    assert len(recorded(suite)) == 1  # test_bo is not routed
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("LLM_DOWN", "1")
    suite.runpytest_subprocess("-k", "test_ann").assert_outcomes(passed=1)


def test_ci_set_to_false_records_rather_than_replays(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI=false is not CI: a marked test records its call instead of failing on the miss."""
    suite.makepyfile(
        test_suite=SUITE.replace("BO_TEXT", "Bo is there").replace(
            "def test_ann", "@pytest.mark.instructor_cache\ndef test_ann"
        )
    )
    monkeypatch.setenv("CI", "false")
    suite.runpytest_subprocess("-k", "test_ann").assert_outcomes(passed=1)
    assert len(recorded(suite)) == 1
