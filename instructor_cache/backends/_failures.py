"""The one way built-in backends report their store's failures: as ``BackendError``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from instructor_cache.errors import BackendError

__all__ = ["as_backend_error", "backend_error"]


def backend_error(backend: object, operation: str, exc: BaseException) -> BackendError:
    """A ``BackendError`` naming the backend, the operation and the underlying error."""
    return BackendError(f"{operation} on {backend!r} failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def as_backend_error(
    backend: object, operation: str, failures: tuple[type[BaseException], ...]
) -> Iterator[None]:
    """Re-raise ``failures`` (the store's own error types) from the block as ``BackendError``."""
    try:
        yield
    except failures as exc:
        raise backend_error(backend, operation, exc) from exc
