"""diskcache's value files, read, written and removed without following a link out of the directory.

diskcache keeps a value of 32 KB or more in a file ``ab/cd/<28 hex>.val``
under its directory and the file's path in the row. Whoever can write the
directory can swap that file for a FIFO (opening it blocks forever), a link
to ``/dev/zero`` (reading it never ends) or a link to a file elsewhere (read,
or on cleanup deleted, outside the directory). So every component below the
directory is opened relative to its parent with ``O_NOFOLLOW``, a value is
read only from a regular file and only up to a bound, and nothing is created
or removed through a link (the means are in ``_nofollow``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Collection

from instructor_cache.backends._nofollow import (
    REFUSED,
    Dir,
    names,
    open_for_reading,
    opened,
    root,
    subdir,
    write_new,
)
from instructor_cache.errors import CorruptEntryError

__all__ = ["MAX_SIZE", "parse", "read", "remove", "sweep", "write"]

MAX_SIZE = 64 * 2**20
"""The largest value file read or written: 64 MiB, far above any extraction result."""

_NAME = re.compile(r"([0-9a-f]{2})[/\\]([0-9a-f]{2})[/\\]([0-9a-f]{28}\.val)")
_SUBDIR = re.compile(r"[0-9a-f]{2}")
_FILE = re.compile(r"[0-9a-f]{28}\.val")

Parts = tuple[str, str, str]


def parse(filename: str | None) -> Parts | None:
    """The components of a value file's path, if it has the shape diskcache writes."""
    if filename is None:
        return None
    match = _NAME.fullmatch(filename)
    return None if match is None else (match[1], match[2], match[3])


def read(directory: str, parts: Parts, limit: int = MAX_SIZE) -> bytes:
    """The bytes of a value file, refused unless it is a regular file of at most ``limit`` bytes.

    Raises ``CorruptEntryError`` for a refused file and ``FileNotFoundError``
    for a file a concurrent delete removed (a miss, as diskcache treats it).
    """
    try:
        with subdir(directory, parts[:2]) as parent:
            fd = open_for_reading(parent, parts[2])
    except OSError as exc:
        if exc.errno in REFUSED:
            raise CorruptEntryError(f"refusing value file {os.path.join(*parts)!r}: {exc}") from exc
        raise
    with open(fd, "rb", closefd=True) as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise CorruptEntryError(
                f"refusing value file {os.path.join(*parts)!r}: not a regular file of at most "
                f"{limit} bytes (mode {stat.filemode(info.st_mode)}, {info.st_size} bytes)"
            )
        data = file.read(limit + 1)  # + 1: a file that grew since fstat is refused too
    if len(data) > limit:
        raise CorruptEntryError(f"refusing value file {os.path.join(*parts)!r}: over {limit} bytes")
    return data


def write(directory: str, data: bytes) -> str:
    """Write ``data`` to a new value file and return its path in the directory.

    A write that fails part-way (a full disk, a file size limit) removes what
    it wrote: no file is left that no row names.
    """
    hex_name = os.urandom(16).hex()
    parts = (hex_name[:2], hex_name[2:4], hex_name[4:] + ".val")
    # Another cache may remove the emptied subdirectories between our mkdir
    # and open (diskcache retries for the same reason): try a few times.
    for attempt in range(10):
        try:
            with subdir(directory, parts[:2], create=True) as parent:
                write_new(parent, parts[2], data)
        except FileNotFoundError:  # noqa: PERF203  (a retry loop)
            if attempt == 9:
                raise
        else:
            break
    return os.path.join(*parts)


def remove(directory: str, filename: str | None) -> None:
    """Remove a value file and its emptied subdirectories; anything else is left alone.

    A path of any other shape (a planted row naming ``/etc/passwd``), or one
    that runs through a link, removes nothing. Errors are suppressed, as in
    diskcache: two caches may remove the same file at once.
    """
    parts = parse(filename)
    if parts is None:
        return
    with contextlib.suppress(OSError), root(directory) as top_dir:
        with opened(top_dir, parts[0]) as top:
            with opened(top, parts[1]) as sub:
                # Whatever is there goes (a planted FIFO too); a link is removed
                # itself, never what it points to.
                os.unlink(sub.at(parts[2]), dir_fd=sub.fd)
            os.rmdir(top.at(parts[1]), dir_fd=top.fd)  # only when empty
        os.rmdir(top_dir.at(parts[0]), dir_fd=top_dir.fd)


def sweep(directory: str, referenced: Collection[str], older_than: float) -> int:
    """Remove value files no row names, last modified before ``older_than``; return how many.

    A process killed between writing a value file and committing its row
    leaves such a file behind, which no row will ever remove. The age bound
    spares files whose rows other processes are still committing.
    """
    keep = {parts for parts in map(parse, referenced) if parts is not None}
    removed = 0
    with root(directory) as top_dir:
        for first in names(top_dir, _SUBDIR, directory=True):
            with contextlib.suppress(OSError), opened(top_dir, first) as top:
                for second in names(top, _SUBDIR, directory=True):
                    with contextlib.suppress(OSError), opened(top, second) as sub:
                        for name in names(sub, _FILE, directory=False):
                            if (first, second, name) not in keep and _unlink_file(
                                sub, name, older_than
                            ):
                                removed += 1
                    with contextlib.suppress(OSError):
                        os.rmdir(top.at(second), dir_fd=top.fd)  # only when empty
            with contextlib.suppress(OSError):
                os.rmdir(top_dir.at(first), dir_fd=top_dir.fd)
    return removed


def _unlink_file(parent: Dir, name: str, older_than: float) -> bool:
    """Unlink ``name`` in ``parent`` if it is a regular file modified before ``older_than``."""
    info = os.stat(parent.at(name), dir_fd=parent.fd, follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode) or info.st_mtime >= older_than:
        return False
    os.unlink(parent.at(name), dir_fd=parent.fd)
    return True
