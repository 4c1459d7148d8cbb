"""The decorator's options: named and typed once, checked in one place, when decorating.

``KeyOptions`` (what goes into a key) and ``CacheOptions`` (those and what a
call does with the store) are the one spelling of the options' names and
types: the decorator, the shortcut factories and ``make_cache_key`` take
them as ``**options``. ``Options`` is their parsed form, each value checked
and normalised by its own function in ``_CHECKS`` (a TTL becomes float
seconds here, once, so that stores only ever see ``float | None``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from typing import Any, Literal

from typing_extensions import TypedDict

from instructor_cache._breaker import CircuitBreaker
from instructor_cache._events import CacheEvent, check_hook, is_async_callable
from instructor_cache._ttl import TTL, to_seconds
from instructor_cache.errors import ConfigurationError

__all__ = [
    "SINGLE_FLIGHT_SECONDS",
    "CacheOptions",
    "KeyFunction",
    "KeyOptions",
    "Options",
    "StreamMode",
    "parse_options",
]

StreamMode = Literal["all", "final"]
"""What a stream function's entry keeps: every item, or only the last (a partial stream's)."""

KeyFunction = Callable[[dict[str, Any]], Any]
"""Receives the call's arguments by parameter name, defaults applied; returns an encodable value."""


class KeyOptions(TypedDict, total=False):
    """The options that decide a call's key; ``make_cache_key`` takes these."""

    key: KeyFunction | None
    ignore: Collection[str]
    namespace: str
    version: str | None
    name: str | None
    code_fingerprint: bool
    stream: StreamMode | None


class CacheOptions(KeyOptions, total=False):
    """The keyword options every decorator factory takes."""

    ttl: TTL
    cache_if: Callable[[Any], bool] | None
    circuit_breaker: CircuitBreaker | None
    single_flight: bool | float
    on_event: Callable[[CacheEvent], object] | None


SINGLE_FLIGHT_SECONDS = 60.0
"""How long ``single_flight=True`` lets a call wait for the same call elsewhere.

It is also how long the store's lock lives if its holder dies."""


@dataclass(frozen=True)
class Options:
    """``CacheOptions`` checked and normalised; the defaults are the options' defaults."""

    key: KeyFunction | None = None
    ignore: tuple[str, ...] = ()
    namespace: str = "instructor_cache"
    version: str | None = None
    name: str | None = None
    code_fingerprint: bool = True
    stream: StreamMode | None = None
    """``None``: "all" for a stream function; given for any other, an error (``_stream_types``)."""
    ttl: float | None = None
    cache_if: Callable[[Any], bool] | None = None
    circuit_breaker: CircuitBreaker | None = None
    single_flight: float | None = SINGLE_FLIGHT_SECONDS
    """Seconds a call waits for the same call elsewhere before paying itself; ``None``: off."""
    on_event: Callable[[CacheEvent], object] | None = None


def parse_options(options: dict[str, Any]) -> Options:
    """Check every option given, by name, and return them parsed; raise on the first wrong one."""
    unknown = sorted(set(options) - set(_CHECKS))
    if unknown:
        raise ConfigurationError(f"unknown option(s) {unknown}; the options are {sorted(_CHECKS)}")
    return Options(**{name: _CHECKS[name](value) for name, value in options.items()})


def _callable(option: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and not callable(value):
            raise ConfigurationError(f"{option} must be a callable, got {value!r}")
        if option == "cache_if" and is_async_callable(value):
            raise ConfigurationError(
                "cache_if must be a plain function: an async one returns a coroutine, which "
                "is always true and never awaited"
            )
        return value

    return check


def _on_event(value: Any) -> Any:
    if value is not None:
        check_hook(value, "on_event")
    return value


def _ignore(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError(f"ignore takes a collection of names: ignore=({value!r},)")
    return tuple(value)


def _namespace(value: Any) -> str:
    if not isinstance(value, str) or not value or ":" in value:
        raise ConfigurationError(
            f"namespace must be a non-empty string without ':', got {value!r}: a ':' "
            "would let one namespace's cache_clear() reach into another's keys"
        )
    return value


def _version(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"version must be a string, got {value!r}")
    return value


def _name(value: Any) -> str | None:
    if value is not None and (
        not isinstance(value, str) or not value or any(c in value for c in ":~@ \t\n")
    ):
        raise ConfigurationError(
            f"name must be a non-empty string without ':', '~', '@' or spaces, got {value!r}; "
            "e.g. name='extract_user' or name='myapp.extract_user'"
        )
    return value


def _flag(option: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigurationError(f"{option} must be True or False, got {value!r}")
        return value

    return check


def _stream(value: Any) -> StreamMode | None:
    if value not in (None, "all", "final"):
        raise ConfigurationError(
            f"stream must be 'all' (a hit replays every item) or 'final' (only the last item, "
            f"for partial streams), got {value!r}"
        )
    return value  # type: ignore[no-any-return]  # one of the three checked above


def _breaker(value: Any) -> CircuitBreaker | None:
    if value is not None and not isinstance(value, CircuitBreaker):
        raise ConfigurationError(
            f"circuit_breaker must be a CircuitBreaker, e.g. CircuitBreaker(failures=3, "
            f"cooldown=5.0), got {value!r}"
        )
    return value


def _single_flight(value: Any) -> float | None:
    if value is True:
        return SINGLE_FLIGHT_SECONDS
    if value is False:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf"):
        return float(value)
    raise ConfigurationError(
        "single_flight must be True, False or the seconds a call may wait for the same call "
        f"running elsewhere (a positive number, e.g. single_flight=120), got {value!r}"
    )


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "key": _callable("key"),
    "ignore": _ignore,
    "namespace": _namespace,
    "version": _version,
    "name": _name,
    "code_fingerprint": _flag("code_fingerprint"),
    "stream": _stream,
    "ttl": to_seconds,
    "cache_if": _callable("cache_if"),
    "circuit_breaker": _breaker,
    "single_flight": _single_flight,
    "on_event": _on_event,
}

# One spelling: the typed options, their parsed form and their checks name the same things.
if not (
    set(CacheOptions.__annotations__) == {f.name for f in fields(Options)} == set(_CHECKS)
):  # pragma: no cover  (a development error, caught by importing the package at all)
    raise RuntimeError("CacheOptions, Options and _CHECKS disagree on the options' names")
