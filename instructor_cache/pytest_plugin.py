"""A pytest plugin: record LLM calls once, replay them in CI, with no network and no API key.

Registered by entry point and inactive unless used: ``--instructor-cache=MODE``
routes every decorated function (and every call cached by instructor's own
``cache=``), for the whole session, to a fixture directory (a
``FixtureStore``, meant to be committed), or the ``instructor_cache_fixtures``
fixture (or ``@pytest.mark.instructor_cache``) routes one test's calls there.

- ``record``: serve what is recorded, call and record what is not;
- ``replay``: serve what is recorded; a call that is not fails its test with
  the command that records it (CI: nothing reaches a provider);
- ``rewrite``: call everything again and overwrite what was recorded;
- ``off``: call everything, record nothing.

A changed prompt, model or argument is a new key (the code fingerprint and
the schema are in it), so it is a miss, never an old answer. The directory
is ``tests/instructor_cache_fixtures`` under the root directory, or
``--instructor-cache-dir`` / the ``instructor_cache_dir`` ini setting.
Without the option, a test that asks for the fixture replays when the
environment variable ``CI`` is set and records otherwise.

Recordings never expire (a decorator's ``ttl=`` would make a committed
directory a miss in CI the day after), and a test's routing is the
process's for its duration, not a block's: a call the test makes from a
worker thread is recorded and replayed like the others, never paid in CI.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from instructor_cache._control import (
    ENVIRONMENT_VARIABLE,
    DefaultState,
    Mode,
    replace_default_control,
    restore_default_control,
    watch_replay_misses,
)
from instructor_cache.backends.fixtures import FixtureStore
from instructor_cache.errors import CacheMissError

__all__ = ["instructor_cache_fixtures"]

_MODES: dict[str, Mode] = {
    "record": "normal",
    "replay": "replay",
    "rewrite": "write-only",
    "off": "off",
}
_DEFAULT_DIRECTORY = "tests/instructor_cache_fixtures"
_SESSION = pytest.StashKey[tuple[str, FixtureStore, DefaultState]]()
_EXPORTED = pytest.StashKey[str | None]()  # the variable's value before the session set it
_FOR_CHILDREN = ("replay", "off")  # what a child process, not routed, can still keep to


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("instructor_cache", "record and replay decorated LLM calls")
    group.addoption(
        "--instructor-cache",
        choices=sorted(_MODES),
        default=None,
        help="route every @instructor_cache function to the fixture directory: record (serve "
        "what is recorded, record the rest), replay (a call not recorded fails its test), "
        "rewrite (call and record everything again) or off (call everything, record nothing)",
    )
    group.addoption(
        "--instructor-cache-dir",
        default=None,
        help=f"the fixture directory (default: <rootdir>/{_DEFAULT_DIRECTORY})",
    )
    parser.addini("instructor_cache_dir", f"the fixture directory (default: {_DEFAULT_DIRECTORY})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "instructor_cache: route this test's @instructor_cache calls to the fixture directory",
    )
    option = config.getoption("instructor_cache")
    if option is None:
        return
    store = FixtureStore(_directory(config))
    previous = _route(option, store)
    config.stash[_SESSION] = (option, store, previous)
    if option in _FOR_CHILDREN:
        # The routing lives in this process: a worker process a test starts (spawn, as
        # ProcessPoolExecutor on macOS and Windows) reads the mode from the environment
        # instead, so that it raises on a miss (replay) or calls through (off), never pays
        # nor serves against the session's mode. It cannot read the fixture directory.
        config.stash[_EXPORTED] = os.environ.get(ENVIRONMENT_VARIABLE)
        os.environ[ENVIRONMENT_VARIABLE] = _MODES[option]


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        restore_default_control(session[2])
    if _EXPORTED in config.stash:
        exported = config.stash[_EXPORTED]
        if exported is None:
            os.environ.pop(ENVIRONMENT_VARIABLE, None)
        else:
            os.environ[ENVIRONMENT_VARIABLE] = exported


def _route(option: str, store: FixtureStore) -> DefaultState:
    """Route every decorated call of the process to ``store``; return the default it replaces."""
    if option == "off":
        return replace_default_control("off")
    return replace_default_control(_MODES[option], ttl=None, store=store)


def _directory(config: pytest.Config) -> Path:
    given = config.getoption("instructor_cache_dir") or config.getini("instructor_cache_dir")
    return Path(config.rootpath, given or _DEFAULT_DIRECTORY)


def _option_of(config: pytest.Config) -> str:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        return session[0]
    return "replay" if _in_ci() else "record"


def _in_ci() -> bool:
    """``CI`` set to anything but an empty, false or zero value (CI services set ``true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


@pytest.fixture
def instructor_cache_fixtures(request: pytest.FixtureRequest) -> Iterator[FixtureStore]:
    """The fixture directory this test's decorated calls are routed to (record or replay)."""
    session = request.config.stash.get(_SESSION, None)
    if session is not None:
        yield session[1]
        return
    store = FixtureStore(_directory(request.config))
    previous = _route(_option_of(request.config), store)
    try:
        yield store
    finally:
        restore_default_control(previous)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # An item without fixtures (another plugin's: a file check) has none to route by; a
        # conftest marking every item must not stop the session.
        names: list[str] | None = getattr(item, "fixturenames", None)
        if names is not None and item.get_closest_marker("instructor_cache") is not None:
            # First, so that the test's own fixtures (set up before it, torn down after) are
            # routed too: appended, a fixture's call in CI would reach the provider.
            if "instructor_cache_fixtures" in names:
                names.remove("instructor_cache_fixtures")
            names.insert(0, "instructor_cache_fixtures")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _failing_replay_misses(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _failing_replay_misses(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _failing_replay_misses(item))


def _failing_replay_misses(item: pytest.Item) -> Generator[None, Any, Any]:
    """Under replay, a call not recorded fails its test even if the test's code caught the error:
    its body's, or a fixture's (``except Exception`` around an LLM call gives a default)."""
    replaying = _option_of(item.config) == "replay" and (
        item.config.stash.get(_SESSION, None) is not None
        or "instructor_cache_fixtures" in getattr(item, "fixturenames", ())
    )
    if not replaying:
        return (yield)
    misses: list[CacheMissError] = []
    stop = watch_replay_misses(misses.append)
    try:
        result = yield
    finally:
        stop()
    if misses:
        raise misses[0]
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and excinfo.errisinstance(CacheMissError):
        report.sections.append(
            (
                "instructor_cache",
                "A call this test makes is not recorded. Record it with:\n"
                # Quoted: an id (a parametrized text) may hold spaces, brackets or $(...).
                f"    pytest --instructor-cache=record {shlex.quote(item.nodeid)}",
            )
        )
    return report
