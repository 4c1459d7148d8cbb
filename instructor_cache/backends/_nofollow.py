"""Files under a store's directory, reached without following a link out of it.

Whoever can write a store's directory (a shared cache, a checkout from a pull
request) can plant a FIFO (opening it blocks forever), a link to
``/dev/zero`` (reading it never ends) or a link to a file elsewhere (read,
or on cleanup deleted, outside the directory). So every component below the
directory is opened relative to its parent with ``O_NOFOLLOW``, a file is
read only if it is a regular file and only up to a bound, and nothing is
created or removed through a link. Where the platform lacks ``dir_fd``
(Windows) the same checks run on paths, with ``lstat`` in place of the
descriptors. ``_valuefiles`` (diskcache's value files) and the fixture store
both go through here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator

__all__ = [
    "REFUSED",
    "Dir",
    "names",
    "open_for_reading",
    "opened",
    "read_bounded",
    "rename",
    "root",
    "subdir",
    "unlink",
    "write_new",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW | _CLOEXEC | _BINARY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
_AT = {os.open, os.mkdir, os.rmdir, os.unlink, os.stat, os.rename} <= os.supports_dir_fd
REFUSED = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR, errno.ENXIO})
"""What opening a path that is a link, runs through one, or is a socket raises."""


class Dir:
    """A directory at or below a store's directory, reached without following a link below it.

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
def opened(parent: Dir, name: str, *, create: bool = False) -> Iterator[Dir]:
    """The directory ``name`` in ``parent`` (made first if ``create``), never through a link."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(parent.at(name), dir_fd=parent.fd)
    path = os.path.join(parent.path, name)
    if not _AT:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise OSError(errno.ENOTDIR, "not a directory (or a link to one)", path)
        yield Dir(path, None)
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
    try:
        yield Dir(path, fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def root(directory: str) -> Iterator[Dir]:
    """The store's directory itself, which may be a link: its user chose it."""
    if not _AT:
        yield Dir(directory, None)
        return
    fd = os.open(directory, _DIR_FLAGS & ~_NOFOLLOW)
    try:
        yield Dir(directory, fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def subdir(directory: str, parts: tuple[str, ...], *, create: bool = False) -> Iterator[Dir]:
    """``directory/parts...``, each part a real directory (made first if ``create``)."""
    with contextlib.ExitStack() as stack:
        current = stack.enter_context(root(directory))
        for name in parts:
            current = stack.enter_context(opened(current, name, create=create))
        yield current


def open_for_reading(parent: Dir, name: str) -> int:
    """A descriptor for ``name``, opened without following a link or blocking on a FIFO."""
    if parent.fd is None and not stat.S_ISREG(os.lstat(parent.at(name)).st_mode):
        raise OSError(errno.ELOOP, "not a regular file", name)
    return os.open(parent.at(name), _READ_FLAGS, dir_fd=parent.fd)


def read_bounded(fd: int, limit: int) -> bytes | None:
    """The bytes behind ``fd`` (closed here), or ``None`` unless it is a regular file of at most
    ``limit`` bytes (one that grew past it since ``fstat`` too)."""
    with open(fd, "rb", closefd=True) as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        data = file.read(limit + 1)
    return None if len(data) > limit else data


def write_new(parent: Dir, name: str, data: bytes) -> None:
    """Write ``data`` to the new file ``name``; a write that fails part-way removes it."""
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


def rename(parent: Dir, source: str, target: str) -> None:
    """Move ``source`` over ``target`` in ``parent``, atomically: a reader sees one or the other."""
    if parent.fd is None:
        os.replace(parent.at(source), parent.at(target))
    else:  # rename(2) replaces the target on POSIX; os.replace does not list dir_fd support
        os.rename(source, target, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)


def unlink(parent: Dir, name: str) -> None:
    """Remove ``name`` in ``parent``: a link is removed itself, never what it points to."""
    os.unlink(parent.at(name), dir_fd=parent.fd)


def modified(parent: Dir, name: str) -> float:
    """When ``name`` itself (a link too, never what it names) was last written."""
    return os.stat(parent.at(name), dir_fd=parent.fd, follow_symlinks=False).st_mtime


def names(parent: Dir, pattern: re.Pattern[str], *, directory: bool) -> list[str]:
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
