"""diskcache's value files, read, written and removed without following a link out of the directory.

diskcache keeps a value of 32 KB or more in a file ``ab/cd/<28 hex>.val``
under its directory and the file's path in the row. Whoever can write the
directory can swap that file for a FIFO (opening it blocks forever), a link
to ``/dev/zero`` (reading it never ends) or a link to a file elsewhere (read,
or on cleanup deleted, outside the directory). So every component below the
directory is opened relative to its parent with ``O_NOFOLLOW``, a value is
read only from a regular file and only up to a bound, and nothing is created
or removed through a link. Where the platform lacks ``dir_fd`` (Windows) the
same checks run on paths, with ``lstat`` in place of the descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Collection, Iterator

from instructor_cache.errors import CorruptEntryError

__all__ = ["MAX_SIZE", "parse", "read", "remove", "sweep", "write"]

MAX_SIZE = 64 * 2**20
"""The largest value file read or written: 64 MiB, far above any extraction result."""

_NAME = re.compile(r"([0-9a-f]{2})[/\\]([0-9a-f]{2})[/\\]([0-9a-f]{28}\.val)")
_SUBDIR = re.compile(r"[0-9a-f]{2}")
_FILE = re.compile(r"[0-9a-f]{28}\.val")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW | _CLOEXEC | _BINARY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
_AT = {os.open, os.mkdir, os.rmdir, os.unlink, os.stat} <= os.supports_dir_fd
# What opening a path that is a link, runs through one, or is a socket raises.
_REFUSED = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR, errno.ENXIO})

Parts = tuple[str, str, str]


def parse(filename: str | None) -> Parts | None:
    """The components of a value file's path, if it has the shape diskcache writes."""
    if filename is None:
        return None
    match = _NAME.fullmatch(filename)
    return None if match is None else (match[1], match[2], match[3])


class _Dir:
    """A directory at or below the cache directory, reached without following a link below it.

    ``fd`` is an open descriptor where the platform supports ``dir_fd``;
    elsewhere it is ``None`` and ``path`` was checked with ``lstat``.
    """

    __slots__ = ("fd", "path")

    def __init__(self, path: str, fd: int | None) -> None:
        self.path = path
        self.fd = fd

    def at(self, name: str) -> str:
        """What to pass, with ``dir_fd=self.fd``, to name ``name`` in this directory."""
        return name if self.fd is not None else os.path.join(self.path, name)


@contextlib.contextmanager
def _opened(parent: _Dir, name: str, *, create: bool = False) -> Iterator[_Dir]:
    """The directory ``name`` in ``parent`` (made first if ``create``), never through a link."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(parent.at(name), dir_fd=parent.fd)
    path = os.path.join(parent.path, name)
    if not _AT:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise OSError(errno.ENOTDIR, "not a directory (or a link to one)", path)
        yield _Dir(path, None)
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
    try:
        yield _Dir(path, fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _root(directory: str) -> Iterator[_Dir]:
    """The cache directory itself, which may be a link: its user chose it."""
    if not _AT:
        yield _Dir(directory, None)
        return
    fd = os.open(directory, _DIR_FLAGS & ~_NOFOLLOW)
    try:
        yield _Dir(directory, fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _subdir(directory: str, names: tuple[str, ...], *, create: bool = False) -> Iterator[_Dir]:
    """``directory/names...``, each name a real directory (made first if ``create``)."""
    with contextlib.ExitStack() as stack:
        current = stack.enter_context(_root(directory))
        for name in names:
            current = stack.enter_context(_opened(current, name, create=create))
        yield current


def read(directory: str, parts: Parts, limit: int = MAX_SIZE) -> bytes:
    """The bytes of a value file, refused unless it is a regular file of at most ``limit`` bytes.

    Raises ``CorruptEntryError`` for a refused file and ``FileNotFoundError``
    for a file a concurrent delete removed (a miss, as diskcache treats it).
    """
    try:
        with _subdir(directory, parts[:2]) as parent:
            fd = _open_for_reading(parent, parts[2])
    except OSError as exc:
        if exc.errno in _REFUSED:
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


def _open_for_reading(parent: _Dir, name: str) -> int:
    """A descriptor for ``name``, opened without following a link or blocking on a FIFO."""
    if parent.fd is None and not stat.S_ISREG(os.lstat(parent.at(name)).st_mode):
        raise OSError(errno.ELOOP, "not a regular file", name)
    return os.open(parent.at(name), _READ_FLAGS, dir_fd=parent.fd)


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
            with _subdir(directory, parts[:2], create=True) as parent:
                _write_new(parent, parts[2], data)
        except FileNotFoundError:  # noqa: PERF203  (a retry loop)
            if attempt == 9:
                raise
        else:
            break
    return os.path.join(*parts)


def _write_new(parent: _Dir, name: str, data: bytes) -> None:
    fd = os.open(parent.at(name), _CREATE_FLAGS, 0o666, dir_fd=parent.fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)  # may report a failed write itself (NFS)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(parent.at(name), dir_fd=parent.fd)
        raise


def remove(directory: str, filename: str | None) -> None:
    """Remove a value file and its emptied subdirectories; anything else is left alone.

    A path of any other shape (a planted row naming ``/etc/passwd``), or one
    that runs through a link, removes nothing. Errors are suppressed, as in
    diskcache: two caches may remove the same file at once.
    """
    parts = parse(filename)
    if parts is None:
        return
    with contextlib.suppress(OSError), _root(directory) as root:
        with _opened(root, parts[0]) as top:
            with _opened(top, parts[1]) as sub:
                # Whatever is there goes (a planted FIFO too); a link is removed
                # itself, never what it points to.
                os.unlink(sub.at(parts[2]), dir_fd=sub.fd)
            os.rmdir(top.at(parts[1]), dir_fd=top.fd)  # only when empty
        os.rmdir(root.at(parts[0]), dir_fd=root.fd)


def sweep(directory: str, referenced: Collection[str], older_than: float) -> int:
    """Remove value files no row names, last modified before ``older_than``; return how many.

    A process killed between writing a value file and committing its row
    leaves such a file behind, which no row will ever remove. The age bound
    spares files whose rows other processes are still committing.
    """
    keep = {parts for parts in map(parse, referenced) if parts is not None}
    removed = 0
    with _root(directory) as root:
        for first in _names(root, _SUBDIR, directory=True):
            with contextlib.suppress(OSError), _opened(root, first) as top:
                for second in _names(top, _SUBDIR, directory=True):
                    with contextlib.suppress(OSError), _opened(top, second) as sub:
                        for name in _names(sub, _FILE, directory=False):
                            if (first, second, name) not in keep and _unlink_file(
                                sub, name, older_than
                            ):
                                removed += 1
                    with contextlib.suppress(OSError):
                        os.rmdir(top.at(second), dir_fd=top.fd)  # only when empty
            with contextlib.suppress(OSError):
                os.rmdir(root.at(first), dir_fd=root.fd)
    return removed


def _unlink_file(parent: _Dir, name: str, older_than: float) -> bool:
    """Unlink ``name`` in ``parent`` if it is a regular file modified before ``older_than``."""
    info = os.stat(parent.at(name), dir_fd=parent.fd, follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode) or info.st_mtime >= older_than:
        return False
    os.unlink(parent.at(name), dir_fd=parent.fd)
    return True


def _names(parent: _Dir, pattern: re.Pattern[str], *, directory: bool) -> list[str]:
    """Names in ``parent`` matching ``pattern`` that are real directories, or regular files."""
    try:
        with os.scandir(parent.fd if parent.fd is not None else parent.path) as entries:
            return [
                entry.name
                for entry in entries
                if pattern.fullmatch(entry.name)
                and (entry.is_dir if directory else entry.is_file)(follow_symlinks=False)
            ]
    except OSError:
        return []
