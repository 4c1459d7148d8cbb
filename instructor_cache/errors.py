"""Exceptions raised by instructor_cache.

Each leaf also subclasses the builtin a caller would naturally catch, so code
written against ``TypeError`` or ``ValueError`` keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "CacheMissError",
    "ConfigurationError",
    "CorruptEntryError",
    "InstructorCacheError",
    "UncacheableFunctionError",
    "UnencodableArgumentError",
]


class InstructorCacheError(Exception):
    """Base class of every error this library raises."""


class ConfigurationError(InstructorCacheError, ValueError):
    """An option passed to a decorator or backend cannot work."""


class UncacheableFunctionError(InstructorCacheError, TypeError):
    """The function's return annotation is missing or cannot round-trip through JSON."""


class UnencodableArgumentError(InstructorCacheError, TypeError):
    """An argument has no stable encoding, so it cannot be part of a key."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class BackendError(InstructorCacheError):
    """A backend failed; raised by the explicit backend API, never by a decorated call."""


class CorruptEntryError(BackendError):
    """A stored row is not text this library wrote (for example a pickled row)."""


class CacheMissError(InstructorCacheError, LookupError):
    """A call made in ``replay`` mode found no entry; the function was not called."""

    def __init__(self, message: str, *, function: str, key: str) -> None:
        super().__init__(message)
        self.function = function
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt with its keyword fields: a replay miss in a worker process reaches its
        test as itself, not as the TypeError unpickling its bare message would raise."""
        return _rebuilt, (type(self), str(self), {"function": self.function, "key": self.key})


def _rebuilt(kind: type[Exception], message: str, fields: dict[str, Any]) -> Exception:
    return kind(message, **fields)
