"""Recorded calls as one readable JSON file each, in a directory a test suite commits."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from instructor_cache._blake import blake2b
from instructor_cache._instructor_hook import InstructorCompatible
from instructor_cache._ttl import TTL, bounded, to_seconds
from instructor_cache.backends import _nofollow
from instructor_cache.backends._failures import as_backend_error

__all__ = ["FixtureStore"]

FORMAT = 1
MAX_SIZE = 64 * 2**20
"""The largest entry file read: 64 MiB, far above any extraction result."""

_FILE = re.compile(r"[0-9a-f]{32}\.json")
_FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
# The temporary file of a write (see ``set``), and how old one must be to be left over.
_LEFTOVER = re.compile(r"\.[0-9a-f]{32}\.json\.[0-9]+\.[0-9]+\.[0-9a-f]{8}")
_LEFTOVER_AGE = 3600.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_DESCRIBED = 4096  # calls remembered between building a key and storing its entry
_FIELDS = frozenset({"arguments", "created", "format", "function", "key", "text", "ttl", "value"})


class _Entry(NamedTuple):
    key: str
    text: str
    expires: float | None  # on the store's clock; None: never


class FixtureStore(InstructorCompatible):
    """One JSON file per entry, readable and diff-friendly, safe to load from any checkout.

    An entry of function ``f`` lives in ``<directory>/<f>/<hash of its key>.json``
    (the folder is the key's second field, ``namespace:function:...``, made of
    safe characters). The file holds the key, the entry's text parsed as JSON
    under ``"value"`` (or, if the text is not JSON that prints back exactly,
    the text under ``"text"``), and, when the decorator told it (the
    ``DescribesCalls`` capability), the function's name and its arguments,
    never one listed in ``ignore=``. Fields are sorted, indented by two, and
    the file ends in a newline; the same calls recorded again give the same
    bytes, unless the entry has a TTL, which adds when it was created.

    A checkout is read as data: JSON only; only files named as this store
    names them, opened without following a link; a link, a FIFO, a device, a
    file over ``max_size`` bytes, malformed JSON, or a file whose fields have
    the wrong types or hold another key reads as a miss. Nothing is deleted
    on read, an expired entry included. Writes go to a temporary file that
    replaces the entry at once, so a reader in another thread or process
    sees the old file or the new one. The clock is the wall clock (the files
    outlive the process); ``timer`` replaces it in tests.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        ttl: TTL = None,
        max_size: int = MAX_SIZE,
        timer: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self._ttl = to_seconds(ttl)
        self._max_size = max_size
        self._timer = timer
        self._calls: OrderedDict[str, tuple[str, Mapping[str, Any] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FixtureStore({str(self.directory)!r}, ttl={self._ttl})"

    @property
    def maxsize(self) -> int | None:
        return None

    def __len__(self) -> int:
        with as_backend_error(self, "len", (OSError,)):
            now = self._timer()
            return sum(1 for entry, _, _ in self._entries() if _alive(entry, now))

    def describe(
        self, key: str, function: str, arguments: Callable[[], Mapping[str, Any] | None]
    ) -> None:
        """Remember which call ``key`` stands for, to write it next to the entry."""
        with self._lock:
            if key in self._calls:
                self._calls.move_to_end(key)
                return
        call = (function, arguments())
        with self._lock:
            self._calls[key] = call
            while len(self._calls) > _DESCRIBED:
                self._calls.popitem(last=False)

    def get(self, key: str) -> str | None:
        found = self.get_with_ttl(key)
        return None if found is None else found[0]

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        """The text under ``key`` and the seconds it has left (``None``: no expiry)."""
        with as_backend_error(self, "get", (OSError,)):
            entry = self._load(key)
        if entry is None:
            return None
        if entry.expires is None:
            return entry.text, None
        remaining = entry.expires - self._timer()
        return None if remaining <= 0 else (entry.text, remaining)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        seconds = bounded(ttl, self._ttl)
        with self._lock:
            call = self._calls.get(key)
        document: dict[str, Any] = {"format": FORMAT, "key": key}
        if call is not None:
            document["function"] = call[0]
            if call[1] is not None:
                document["arguments"] = call[1]
        if seconds is not None:
            document.update(created=self._timer(), ttl=seconds)
        data = _dump(document, value)
        if len(data) > self._max_size and "arguments" in document:
            # The answer was paid for: recorded without showing its call rather than lost.
            data = _dump(_without_arguments(document), value)
        folder, name = _place(key)
        with as_backend_error(self, "set", (OSError,)):
            if len(data) > self._max_size:  # it would read back as a miss: say so instead
                raise OSError(errno.EFBIG, f"the entry file would exceed {self._max_size} bytes")
            os.makedirs(self.directory, exist_ok=True)
            with _nofollow.subdir(str(self.directory), (folder,), create=True) as parent:
                temporary = f".{name}.{os.getpid()}.{threading.get_ident()}.{os.urandom(4).hex()}"
                _nofollow.write_new(parent, temporary, data)
                try:
                    _nofollow.rename(parent, temporary, name)
                except OSError:
                    with contextlib.suppress(OSError):
                        _nofollow.unlink(parent, temporary)
                    raise

    def delete(self, key: str) -> bool:
        """Remove ``key``'s file; True if it held ``key``'s entry (expired or not)."""
        folder, name = _place(key)
        with as_backend_error(self, "delete", (OSError,)):
            try:
                with _nofollow.subdir(str(self.directory), (folder,)) as parent:
                    entry = _read(parent, name, self._max_size)
                    _nofollow.unlink(parent, name)  # a link is removed, never what it names
            except FileNotFoundError:
                return False
            except OSError as exc:
                if exc.errno in _nofollow.REFUSED:
                    return False
                raise
        return entry is not None and entry.key == key

    def clear_prefix(self, prefix: str) -> int:
        """Remove the entries whose keys start with ``prefix``; count the unexpired ones."""
        removed = 0
        with as_backend_error(self, "clear_prefix", (OSError,)):
            now = self._timer()
            for entry, parent, name in self._entries():
                if entry.key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):  # a concurrent delete
                        _nofollow.unlink(parent, name)
                        removed += _alive(entry, now)
        return removed

    def scan(self, prefix: str = "") -> Iterator[str]:
        """The keys of the unexpired entries under ``prefix``, one file read at a time."""
        with as_backend_error(self, "scan", (OSError,)):
            now = self._timer()
            for entry, _, _ in self._entries():
                if entry.key.startswith(prefix) and _alive(entry, now):
                    yield entry.key

    def purge_expired(self) -> int:
        """Remove the files of expired entries (reads never do); return how many.

        Also removes, uncounted, the temporary files of writes that died before
        their rename (a killed process) once they are ``_LEFTOVER_AGE`` old: a
        younger one may belong to a write still running.
        """
        removed = 0
        with as_backend_error(self, "purge_expired", (OSError,)):
            now = self._timer()
            for entry, parent, name in self._entries():
                if not _alive(entry, now):
                    with contextlib.suppress(FileNotFoundError):  # a concurrent delete
                        _nofollow.unlink(parent, name)
                        removed += 1
            self._remove_leftovers(time.time() - _LEFTOVER_AGE)  # file times are wall-clock
        return removed

    def _remove_leftovers(self, older_than: float) -> None:
        for parent in self._folders():
            for name in _nofollow.names(parent, _LEFTOVER, directory=False):
                with contextlib.suppress(FileNotFoundError):  # renamed or removed meanwhile
                    if _nofollow.modified(parent, name) < older_than:
                        _nofollow.unlink(parent, name)

    def clear(self) -> None:
        """Remove every entry; files this store did not write are left alone."""
        self.clear_prefix("")

    def _load(self, key: str) -> _Entry | None:
        folder, name = _place(key)
        try:
            with _nofollow.subdir(str(self.directory), (folder,)) as parent:
                entry = _read(parent, name, self._max_size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in _nofollow.REFUSED:  # a link, or through one: planted
                return None
            raise
        return entry if entry is not None and entry.key == key else None

    def _entries(self) -> Iterator[tuple[_Entry, _nofollow.Dir, str]]:
        """Every entry file where ``get`` would look for its key, with its folder and name."""
        for parent in self._folders():
            folder = os.path.basename(parent.path)
            for name in _nofollow.names(parent, _FILE, directory=False):
                entry = _read_quietly(parent, name, self._max_size)
                if entry is not None and _place(entry.key) == (folder, name):
                    yield entry, parent, name

    def _folders(self) -> Iterator[_nofollow.Dir]:
        """Each folder entries may be in, opened without following a link; none if no directory."""
        with contextlib.ExitStack() as stack:
            try:
                top = stack.enter_context(_nofollow.root(str(self.directory)))
            except FileNotFoundError:
                return
            for folder in _nofollow.names(top, _FOLDER, directory=True):
                with (
                    contextlib.suppress(FileNotFoundError),
                    _nofollow.opened(top, folder) as parent,
                ):
                    yield parent


def _place(key: str) -> tuple[str, str]:
    """The folder and file name of ``key``'s entry: safe characters only, bounded length."""
    fields = key.split(":")
    folder = _UNSAFE.sub("_", fields[1] if len(fields) >= 3 else "")[:80]
    if not folder or folder[0] in ".-":
        folder = ("_" + folder)[:80]
    digest = blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return folder, digest + ".json"


def _alive(entry: _Entry, now: float) -> bool:
    return entry.expires is None or entry.expires > now


def _read_quietly(parent: _nofollow.Dir, name: str, limit: int) -> _Entry | None:
    try:
        return _read(parent, name, limit)
    except OSError:
        return None


def _read(parent: _nofollow.Dir, name: str, limit: int) -> _Entry | None:
    """The entry in ``parent/name``, or ``None`` for anything but a well-formed entry file."""
    data = _nofollow.read_bounded(_nofollow.open_for_reading(parent, name), limit)
    if data is None:
        return None
    try:
        return _parse(data)
    except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def _parse(data: bytes) -> _Entry | None:
    document = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    if (
        not isinstance(document, dict)
        or document.get("format") != FORMAT
        or not isinstance(document.get("key"), str)
        or not document.keys() <= _FIELDS
        or ("value" in document) == ("text" in document)
    ):
        return None
    text = document["text"] if "text" in document else _compact(document["value"])
    if not isinstance(text, str):
        return None
    if "created" not in document and "ttl" not in document:
        return _Entry(document["key"], text, None)
    created, ttl = _number(document.get("created")), _number(document.get("ttl"))
    if created is None or ttl is None or ttl <= 0:
        return None
    return _Entry(document["key"], text, created + ttl)


def _dump(document: dict[str, Any], text: str) -> bytes:
    """The file for ``document`` holding ``text``: as JSON if that reads back as ``text`` exactly.

    What is written is read back here, so that a file that would not give
    ``text`` (or whose arguments do not serialize) is never written as is:
    the arguments go first, then the parsed value.
    """
    key = document["key"]
    choices = [{**document, "value": value} for value in _parsed(text)]
    choices += [{**without, "text": text} for without in (document, _without_arguments(document))]
    for choice in choices:
        try:
            data = _serialize(choice)
            entry = _parse(data)
        except (ValueError, TypeError, RecursionError):
            continue
        if entry is not None and entry.key == key and entry.text == text:
            return data
    raise ValueError("unreachable: a text field always reads back")  # pragma: no cover


def _parsed(text: str) -> list[Any]:
    try:
        return [json.loads(text, parse_constant=_reject_constant)]
    except (ValueError, RecursionError):
        return []


def _without_arguments(document: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != "arguments"}


def _serialize(document: dict[str, Any]) -> bytes:
    # The top-level fields sorted; the value keeps its own order, which its text has.
    ordered = {name: document[name] for name in sorted(document)}
    try:
        text = json.dumps(ordered, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped, so that the file stays UTF-8
        return (json.dumps(ordered, indent=2, allow_nan=False) + "\n").encode("ascii")


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _number(value: object) -> float | None:
    """``value`` if it is a finite JSON number (not a bool), else ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
