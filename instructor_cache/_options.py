"""The decorator's options, checked once when the decorator is made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from instructor_cache.backends._ttl import to_seconds
from instructor_cache.errors import ConfigurationError

__all__ = ["KeyFunction", "Options"]

KeyFunction = Callable[[dict[str, Any]], Any]
"""Receives the call's arguments by parameter name, defaults applied; returns an encodable value."""


@dataclass(frozen=True)
class Options:
    """The decorator's options, checked when the decorator is made, before any function."""

    ttl: float | None = None
    key: KeyFunction | None = None
    ignore: tuple[str, ...] = ()
    namespace: str = "instructor_cache"
    version: str | None = None
    cache_if: Callable[[Any], bool] | None = None

    @classmethod
    def parse(cls, options: dict[str, Any]) -> Options:
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ConfigurationError(f"unknown option(s) {unknown}; the options are {names}")
        ignore = options.get("ignore", ())
        if isinstance(ignore, str):
            raise ConfigurationError(f"ignore takes a collection of names: ignore=({ignore!r},)")
        for name in ("key", "cache_if"):
            if options.get(name) is not None and not callable(options[name]):
                raise ConfigurationError(f"{name} must be a callable, got {options[name]!r}")
        namespace = options.get("namespace", cls.namespace)
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(f"namespace must be a non-empty string, got {namespace!r}")
        version = options.get("version")
        if version is not None and not isinstance(version, str):
            raise ConfigurationError(f"version must be a string, got {version!r}")
        return cls(
            ttl=to_seconds(options.get("ttl")),
            key=options.get("key"),
            ignore=tuple(ignore),
            namespace=namespace,
            version=version,
            cache_if=options.get("cache_if"),
        )
