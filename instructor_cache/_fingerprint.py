"""Placeholder until the code fingerprint lands: the code object's own digest."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

__all__ = ["code_fingerprint"]


def code_fingerprint(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return hashlib.blake2b(repr(code and code.co_code).encode(), digest_size=32).hexdigest()
