"""BLAKE2b without importing ``hashlib``, whose OpenSSL module costs more than a key ever will.

``hashlib.blake2b`` is this very class: CPython always builds its own
BLAKE2, whatever OpenSSL offers, so digests are the same byte for byte.
"""

from __future__ import annotations

try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover  (an interpreter built without it)
    from hashlib import blake2b

__all__ = ["blake2b"]
