"""The decorator's options, checked once when the decorator is made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from instructor_cache._ttl import to_seconds
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
    name: str | None = None
    code_fingerprint: bool = True

    @classmethod
    def parse(cls, options: dict[str, Any]) -> Options:
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ConfigurationError(f"unknown option(s) {unknown}; the options are {names}")
        ignore = options.get("ignore", ())
        if isinstance(ignore, str):
            raise ConfigurationError(f"ignore takes a collection of names: ignore=({ignore!r},)")
        for option in ("key", "cache_if"):
            if options.get(option) is not None and not callable(options[option]):
                raise ConfigurationError(f"{option} must be a callable, got {options[option]!r}")
        namespace = options.get("namespace", cls.namespace)
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise ConfigurationError(
                f"namespace must be a non-empty string without ':', got {namespace!r}: a ':' "
                "would let one namespace's cache_clear() reach into another's keys"
            )
        version = options.get("version")
        if version is not None and not isinstance(version, str):
            raise ConfigurationError(f"version must be a string, got {version!r}")
        name: str | None = options.get("name")
        if name is not None and (
            not isinstance(name, str) or not name or any(c in name for c in ":~@ \t\n")
        ):
            raise ConfigurationError(
                f"name must be a non-empty string without ':', '~', '@' or spaces, got {name!r}; "
                "e.g. name='extract_user' or name='myapp.extract_user'"
            )
        code_fingerprint = options.get("code_fingerprint", True)
        if not isinstance(code_fingerprint, bool):
            raise ConfigurationError(
                f"code_fingerprint must be True or False, got {code_fingerprint!r}"
            )
        return cls(
            ttl=to_seconds(options.get("ttl")),
            key=options.get("key"),
            ignore=tuple(ignore),
            namespace=namespace,
            version=version,
            cache_if=options.get("cache_if"),
            name=name,
            code_fingerprint=code_fingerprint,
        )
