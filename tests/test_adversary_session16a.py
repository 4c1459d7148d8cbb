"""Adversary pass over record/replay (session 16, helper A): the plugin, fixture store and CLI.

Each test reproduces one finding, fixed since.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
from pathlib import Path

import pytest
from pydantic import BaseModel

from instructor_cache import FixtureStore, cache_control, instructor_cache
from instructor_cache._cli import main
from instructor_cache.errors import CacheMissError

pytest_plugins = ["pytester"]


class Person(BaseModel):
    name: str


FIXTURE_SUITE = '''
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from instructor_cache import instructor_cache


class User(BaseModel):
    name: str


def llm(text: str) -> User:
    """The provider: it logs each call, so a test can see whether replay reached it."""
    with Path(os.environ["CALL_LOG"]).open("a") as log:
        log.write(text + "\\n")
    return User(name=text)


@instructor_cache
def extract(text: str) -> User:
    return llm(text)


@pytest.fixture
def ann() -> User:
    return extract("Ann")


@pytest.mark.instructor_cache
def test_ann(ann: User) -> None:
    assert ann.name == "Ann"
'''


def test_the_marker_in_ci_routes_a_call_made_by_the_tests_own_fixture(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marked test's fixture calling the LLM must replay in CI, not reach the provider."""
    pytester.makepyfile(test_suite=FIXTURE_SUITE)
    log = pytester.path / "calls.log"
    monkeypatch.setenv("CALL_LOG", str(log))
    monkeypatch.delenv("INSTRUCTOR_CACHE_MODE", raising=False)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert not log.exists(), "replay in CI called the provider from the test's fixture"
    result.assert_outcomes(errors=1)


def test_a_replay_miss_never_shows_an_ignored_argument(tmp_path: Path) -> None:
    """An argument left out with ``ignore=`` (an API key) must not reach CI's log in the miss."""

    @instructor_cache(ignore=("api_key",))
    def extract(text: str, api_key: str = "") -> Person:
        return Person(name=text)

    with (
        cache_control("replay", store=FixtureStore(tmp_path)),
        pytest.raises(CacheMissError) as miss,
    ):
        extract("Ann", api_key="sk-live-do-not-print")
    assert "sk-live-do-not-print" not in str(miss.value)
    assert "extract(text='Ann')" in str(miss.value)


def recorded(directory: Path, *texts: str) -> list[Path]:
    """The fixture files of ``extract(text)`` for each text, recorded into ``directory``."""

    @instructor_cache()
    def extract(text: str) -> Person:
        return Person(name=text)

    with cache_control("normal", store=FixtureStore(directory)):
        for text in texts:
            extract(text)
    return sorted(directory.rglob("*.json"))


def test_the_cli_lists_a_planted_fixture_with_a_huge_integer_time_as_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A planted fixture whose ``created`` is a 400-digit integer is unreadable, not a crash."""

    directory = tmp_path / "fixtures"
    (path,) = recorded(directory, "Ann")
    document = json.loads(path.read_text())
    document["value"]["created"] = 10**400
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["ls", "--json", "--fixtures", str(directory)]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["key"] == document["key"]
    assert listed["readable"] is False
    assert main(["stats", "--json", "--fixtures", str(directory)]) == 0
    (row,) = json.loads(capsys.readouterr().out)["functions"]
    assert (row["entries"], row["unreadable"]) == (1, 1)


@pytest.mark.parametrize("created", [1e300, 1e18, 253402300800.0])
def test_the_cli_shows_a_planted_fixture_created_past_any_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], created: float
) -> None:
    """``show`` prints an entry "created" past the year 9999 or ``time_t`` instead of crashing."""

    directory = tmp_path / "fixtures"
    (path,) = recorded(directory, "Ann")
    document = json.loads(path.read_text())
    document["value"]["created"] = created
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["show", "--fixtures", str(directory), document["key"]]) == 0
    assert repr(created) in capsys.readouterr().out


def suite(extract_body: str, tests: str, imports: str = "") -> str:
    """A test module for pytester: ``extract(text) -> User`` decorated, then ``tests``."""
    return f"""
import pytest
from pydantic import BaseModel
{imports}
from instructor_cache import instructor_cache


class User(BaseModel):
    name: str


@instructor_cache
def extract(text: str) -> User:
    {extract_body}

{tests}"""


PARAMETRIZED_SUITE = suite(
    'raise RuntimeError("no network here")',
    """
@pytest.mark.parametrize("text", ["Ann is 25 $(touch pwned)"])
def test_extract(text: str) -> None:
    assert extract(text).name == "Ann"
""",
)


def test_the_record_command_a_replay_miss_prints_runs_that_test_when_pasted_into_a_shell(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The printed command quotes the test id: spaces or ``$(...)`` in it stay one argument."""
    pytester.makepyfile(test_suite=PARAMETRIZED_SUITE)
    monkeypatch.delenv("INSTRUCTOR_CACHE_MODE", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--instructor-cache=replay")
    result.assert_outcomes(failed=1)
    (line,) = [line for line in result.outlines if "--instructor-cache=record" in line]
    assert shlex.split(line) == [
        "pytest",
        "--instructor-cache=record",
        "test_suite.py::test_extract[Ann is 25 $(touch pwned)]",
    ]


SWALLOWING_FIXTURE_SUITE = suite(
    'raise RuntimeError("no network here")',
    """
@pytest.fixture
def user() -> User:
    try:
        return extract("Ann")
    except Exception:
        return User(name="nobody")


def test_user(user: User) -> None:
    assert user.name
""",
)


def test_replay_fails_a_test_whose_fixture_swallowed_the_replay_miss(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A miss caught by a fixture's own ``except Exception`` still fails the test under replay."""
    pytester.makepyfile(test_suite=SWALLOWING_FIXTURE_SUITE)
    monkeypatch.delenv("INSTRUCTOR_CACHE_MODE", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--instructor-cache=replay")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == 0
    result.stdout.fnmatch_lines(["*pytest --instructor-cache=record test_suite.py::test_user*"])


PROCESS_SUITE = """
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pydantic import BaseModel

from instructor_cache import instructor_cache


class User(BaseModel):
    name: str


@instructor_cache
def extract(text: str) -> User:
    with Path(os.environ["CALL_LOG"]).open("a") as log:
        log.write(text + "\\\\n")
    return User(name=text)


def test_in_a_worker_process() -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        assert pool.submit(extract, "never recorded").result().name == "never recorded"
"""


def test_replay_never_pays_a_call_made_in_a_worker_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``--instructor-cache=replay`` a call from a spawned worker process must not be paid."""
    pytester.makepyfile(test_suite=PROCESS_SUITE)
    log = pytester.path / "calls.log"
    monkeypatch.setenv("CALL_LOG", str(log))
    monkeypatch.delenv("INSTRUCTOR_CACHE_MODE", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--instructor-cache=replay")
    assert not log.exists(), "replay called the provider from a worker process"
    result.assert_outcomes(failed=1)


MARKING_CONFTEST = """
import pytest


class CheckItem(pytest.Item):
    def runtest(self) -> None:
        pass


class CheckFile(pytest.File):
    def collect(self):
        yield CheckItem.from_parent(self, name="check")


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".txt":
        return CheckFile.from_parent(parent, path=file_path)


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.instructor_cache)
"""


def test_a_conftest_marking_an_item_without_fixtures_does_not_stop_the_session(
    pytester: pytest.Pytester,
) -> None:
    """The marker on another plugin's item (one with no fixtures) is no internal error."""
    pytester.makeconftest(MARKING_CONFTEST)
    pytester.makefile(".txt", data="checked")
    pytester.makepyfile(test_plain="def test_plain() -> None:\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


BAD_ENVIRONMENT_SUITE = suite(
    "return User(name=text)",
    """
@pytest.mark.instructor_cache
def test_a_marked_one() -> None:
    assert extract("Ann").name == "Ann"


def test_b_after_it() -> None:
    with pytest.raises(ConfigurationError, match="INSTRUCTOR_CACHE_MODE"):
        extract("Bob")
""",
    imports="\nfrom instructor_cache.errors import ConfigurationError",
)


def test_a_marked_test_leaves_a_nonsense_mode_variable_failing_the_calls_after_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a marked test, ``INSTRUCTOR_CACHE_MODE=nonsense`` still makes every call raise."""
    pytester.makepyfile(test_suite=BAD_ENVIRONMENT_SUITE)
    monkeypatch.setenv("INSTRUCTOR_CACHE_MODE", "nonsense")
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_stats_json_stays_json_when_planted_durations_add_up_past_a_float(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two fixtures each claiming 1.7e308 s give ``stats --json`` that a strict parser reads."""

    directory = tmp_path / "fixtures"
    for path in recorded(directory, "Ann", "Bob"):
        document = json.loads(path.read_text())
        document["value"]["duration"] = 1.7e308
        path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["stats", "--json", "--fixtures", str(directory)]) == 0
    (row,) = json.loads(capsys.readouterr().out, parse_constant=_no_constant)["functions"]
    assert row["entries"] == 2


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_a_replay_miss_crosses_a_process_boundary_intact() -> None:
    """A worker process's replay miss reaches its test as itself (pickled by the pool), with
    its fields, not as the TypeError that unpickling a bare message would raise."""
    error = CacheMissError("m.f('x') is not cached", function="m.f", key="ns:m.f:k")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301  (our own bytes, as a process pool sends)
    assert type(copy) is type(error)
    assert (str(copy), vars(copy)) == (str(error), vars(error))


def test_a_replay_session_tells_worker_processes_its_mode_and_puts_the_variable_back(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under --instructor-cache=replay the variable says replay while the session runs (for
    spawned workers), and is as it was after it."""
    monkeypatch.setenv("INSTRUCTOR_CACHE_MODE", "normal")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_env="""
import os

def test_sees_replay():
    assert os.environ["INSTRUCTOR_CACHE_MODE"] == "replay"
"""
    )
    pytester.runpytest("-p", "no:cacheprovider", "--instructor-cache=replay").assert_outcomes(
        passed=1
    )
    assert os.environ["INSTRUCTOR_CACHE_MODE"] == "normal"
