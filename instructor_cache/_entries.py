"""Stored entries as a person looking inside a cache sees them: whose, how old, what they saved.

The CLI reads entries without knowing the functions that wrote them, so it
cannot validate a value against its return type as a hit does: it reads the
envelope as plain JSON (never pickle) and checks its shape. An entry that is
not one we could have written (corrupt, planted, an older format) is an
``Entry`` with a ``problem``, listed as unreadable, never an exception.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from instructor_cache._codec import FORMAT_VERSION
from instructor_cache._usage import Usage, read_usage
from instructor_cache.backends._contract import BulkReadsWithTTL, ReadsWithTTL, Store
from instructor_cache.errors import BackendError

__all__ = ["Entry", "FunctionStats", "function_of", "matches", "read_entries", "read_entry"]

_BATCH = 500
"""Keys read per round trip where the store reads many at once."""

Found = tuple[str, float | None]


def function_of(key: str) -> str | None:
    """``namespace:module.qualname`` of a key made by ``_keys`` (closure hash left out), else None.

    Keys read ``<namespace>:<name>[~<context8>]:<schema8>:[<version>:]<digest>``;
    neither a namespace nor a name may hold a ``:``.
    """
    parts = key.split(":")
    if len(parts) < 4 or not parts[0] or not parts[1]:
        return None
    return f"{parts[0]}:{parts[1].split('~', 1)[0]}"


def matches(function: str | None, name: str) -> bool:
    """Whether ``name`` (with or without namespace, with or without a layer's ``@n``) names it."""
    if function is None:
        return False
    bare = function.split(":", 1)[1]
    return name in (function, bare, function.split("@", 1)[0], bare.split("@", 1)[0])


@dataclass(frozen=True)
class Entry:
    """One stored entry: its envelope if it reads as one, else why not (``problem``)."""

    key: str
    size: int
    ttl: float | None
    envelope: dict[str, Any] | None = None
    problem: str | None = None
    text: str = field(default="", repr=False)
    found: bool = True
    """False when the store refused to read it: its size, TTL and text are unknown."""

    @property
    def function(self) -> str | None:
        return function_of(self.key)

    @property
    def created(self) -> float | None:
        return None if self.envelope is None else float(self.envelope["created"])

    @property
    def duration(self) -> float:
        return 0.0 if self.envelope is None else float(self.envelope["duration"])

    @property
    def usage(self) -> Usage | None:
        return None if self.envelope is None else read_usage(self.envelope.get("usage"))


def read_entry(key: str, found: Found) -> Entry:
    """The entry stored as ``found`` (its text and seconds left) under ``key``."""
    text, ttl = found
    size = len(text.encode("utf-8", "surrogatepass"))
    try:
        envelope = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Entry(key, size, ttl, problem=f"not JSON ({exc})", text=text)
    problem = _envelope_problem(envelope)
    if problem is not None:
        return Entry(key, size, ttl, problem=problem, text=text)
    return Entry(key, size, ttl, envelope=envelope, text=text)


def _envelope_problem(envelope: Any) -> str | None:
    if not isinstance(envelope, dict):
        return f"a JSON {type(envelope).__name__}, not an entry"
    version = envelope.get("v")
    if type(version) is not int or version != FORMAT_VERSION:
        return f"format version {version!r}, not {FORMAT_VERSION} (a miss: no reader takes it)"
    for name in ("created", "duration"):
        number: Any = envelope.get(name)
        if not _is_time(number):
            return f"{name!r} is {_short(number)}, not a time"
    if "value" not in envelope:
        return "no 'value'"
    return None


def _is_time(number: Any) -> bool:
    """A JSON number a float holds, finite and not negative: a planted 400-digit integer is
    not one (``float`` of it overflows, and every reader of the entry converts it)."""
    if type(number) not in (int, float):
        return False
    try:
        return math.isfinite(float(number)) and number >= 0
    except OverflowError:
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def read_entries(store: Store, keys: Iterable[str]) -> Iterator[Entry]:
    """The entries under ``keys``, read a batch at a time; one gone meanwhile is skipped.

    A store that refuses an entry (a planted pickled row raises
    ``CorruptEntryError``, a planted value file fails to read) makes that
    entry unreadable, not the listing.
    """
    iterator = iter(keys)
    while batch := list(itertools.islice(iterator, _BATCH)):
        if isinstance(store, BulkReadsWithTTL):
            try:
                founds = store.get_many_with_ttl(batch)
            except BackendError:
                founds = None  # one bad entry spoils a batch: read them one by one
            if founds is not None:
                for key, found in zip(batch, founds, strict=True):
                    if found is not None:
                        yield read_entry(key, found)
                continue
        for key in batch:
            entry = read_one(store, key)
            if entry is not None:
                yield entry


def read_one(store: Store, key: str) -> Entry | None:
    """The entry under ``key``, ``None`` if there is none; unreadable if the store refuses it."""
    try:
        found: Found | None
        if isinstance(store, ReadsWithTTL):
            found = store.get_with_ttl(key)
        else:
            text = store.get(key)
            found = None if text is None else (text, None)
    except BackendError as exc:  # a refused row, an unreadable value file: this entry only
        return Entry(key, 0, None, problem=str(exc), found=False)
    return None if found is None else read_entry(key, found)


@dataclass
class FunctionStats:
    """What ``stats`` reports for one function: its entries and what they recorded."""

    function: str
    entries: int = 0
    unreadable: int = 0
    size: int = 0
    oldest: float | None = None
    newest: float | None = None
    seconds: float = 0.0
    tokens: int = 0
    cost: float = 0.0

    def add(self, entry: Entry) -> None:
        self.entries += 1
        self.size += entry.size
        created = entry.created
        if created is None:
            self.unreadable += 1
            return
        self.oldest = created if self.oldest is None else min(self.oldest, created)
        self.newest = created if self.newest is None else max(self.newest, created)
        self.seconds += entry.duration
        usage = entry.usage
        if usage is not None:
            self.tokens += usage.tokens
            self.cost += usage.cost()

    @property
    def mean_size(self) -> float:
        return self.size / self.entries if self.entries else 0.0
