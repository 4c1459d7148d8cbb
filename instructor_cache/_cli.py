"""``instructor-cache`` or ``python -m instructor_cache``: look inside a cache, clear it.

A target is a store opened from the command line (``--disk DIR``, ``--redis
URL``); each command reads it through the store contract plus ``scan``
(``ScanningStore``), so a new kind of target is one entry in ``_TARGETS``.
Exit codes: 0 done, 1 an error (the target fails, no such entry, a clear not
confirmed, the output's reader went away), 2 a usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

import diskcache

from instructor_cache import _cli_output as output
from instructor_cache._entries import FunctionStats, function_of, matches, read_entries, read_one
from instructor_cache.backends._contract import ClosableStore, ScanningStore, Store
from instructor_cache.errors import InstructorCacheError

__all__ = ["main"]

_DEMO_FLAGS = frozenset({"--dir", "--latency", "--reset"})


class CommandError(Exception):
    """A command that cannot be done as asked; its message says what to do instead (exit 1)."""


@runtime_checkable
class PurgesExpired(Protocol):
    """A store whose expired entries stay until removed (diskcache's rows)."""

    def purge_expired(self) -> int: ...


class TargetStore(Store, ScanningStore, Protocol):
    """What the commands need of a target: the store contract and a scan."""


def _open_disk(args: argparse.Namespace) -> TargetStore:
    from instructor_cache.backends.disk import DiskCache  # noqa: PLC0415  (loaded on demand)

    directory = Path(args.disk)
    if not (directory / diskcache.core.DBNAME).is_file():
        # DiskCache would make an empty cache there: a typo must not create one.
        raise CommandError(f"no cache at {directory}: it has no {diskcache.core.DBNAME}")
    return DiskCache(directory, timeout=args.timeout)


def _open_redis(args: argparse.Namespace) -> TargetStore:
    from instructor_cache.backends.redis import RedisCache  # noqa: PLC0415  (loaded on demand)

    return RedisCache(args.redis, prefix=args.prefix, cluster=args.cluster, timeout=args.timeout)


def _open_fixtures(args: argparse.Namespace) -> TargetStore:
    from instructor_cache.backends.fixtures import FixtureStore  # noqa: PLC0415

    directory = Path(args.fixtures)
    if not directory.is_dir():  # FixtureStore would start one there: a typo must not
        raise CommandError(f"no fixture directory at {directory}")
    return FixtureStore(directory)


# (flag, metavar, help, opener): the target options, mutually exclusive, one required.
_TARGETS: tuple[tuple[str, str, str, Callable[[argparse.Namespace], TargetStore]], ...] = (
    ("disk", "DIR", "a disk cache's directory (DiskCache)", _open_disk),
    ("redis", "URL", "a Redis URL (RedisCache); see --prefix and --cluster", _open_redis),
    ("fixtures", "DIR", "a recorded fixture directory (FixtureStore)", _open_fixtures),
)


@contextlib.contextmanager
def _opened(args: argparse.Namespace) -> Iterator[TargetStore]:
    opener = next(open_ for flag, _, _, open_ in _TARGETS if getattr(args, flag) is not None)
    store = opener(args)
    try:
        yield store
    finally:
        if isinstance(store, ClosableStore):
            store.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instructor-cache",
        description="Look inside an instructor_cache store, clear it, or run the demo "
        "(the default: python -m instructor_cache with no command).",
    )
    common = argparse.ArgumentParser(add_help=False)
    targets = common.add_argument_group("target (one of)").add_mutually_exclusive_group(
        required=True
    )
    for flag, metavar, help_, _ in _TARGETS:
        targets.add_argument(f"--{flag}", metavar=metavar, help=help_)
    common.add_argument("--prefix", default="", help="the RedisCache's prefix (e.g. 'myapp:')")
    common.add_argument("--cluster", action="store_true", help="the Redis URL is a Cluster's")
    common.add_argument("--timeout", type=float, default=2.0, help="seconds per store operation")
    common.add_argument("--json", action="store_true", help="print JSON, for scripts")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "stats", parents=[common], help="entries, sizes, ages, savings per function"
    )
    listing = commands.add_parser("ls", parents=[common], help="keys with function, age and size")
    listing.add_argument("--function", metavar="NAME", help="only this function's entries")
    show = commands.add_parser("show", parents=[common], help="one entry, explained")
    show.add_argument("key")
    clear = commands.add_parser("clear", parents=[common], help="delete entries")
    clear.add_argument("--function", metavar="NAME", help="only this function's entries")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    commands.add_parser("purge-expired", parents=[common], help="remove expired entries now")
    commands.add_parser("demo", help="the simulated extraction batch (see its --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command: ``instructor-cache COMMAND --disk DIR | --redis URL [options]``."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if not arguments or arguments[0] == "demo" or arguments[0].split("=")[0] in _DEMO_FLAGS:
        from instructor_cache import _demo  # noqa: PLC0415  (pydantic models, built on demand)

        return _demo.main(arguments[1:] if arguments[:1] == ["demo"] else arguments)
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as exit_:  # --help (0) or a usage error (2): a code, not an exit
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        with _opened(args) as store:
            return _COMMANDS[args.command](store, args, sys.stdout)
    except (CommandError, InstructorCacheError) as exc:
        print(f"instructor-cache: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader stopped reading (`ls | head`). As Python's documentation
        # advises: the rest goes nowhere, so that the flush at exit does not
        # raise again, and the exit code says the output was cut short.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _stats(store: TargetStore, args: argparse.Namespace, out: TextIO) -> int:
    table: dict[str, FunctionStats] = {}
    for entry in read_entries(store, store.scan()):
        function = entry.function or "(not a cache key)"
        table.setdefault(function, FunctionStats(function)).add(entry)
    rows = sorted(table.values(), key=lambda row: row.function)
    (output.stats_json if args.json else output.stats_table)(rows, out)
    return 0


def _ls(store: TargetStore, args: argparse.Namespace, out: TextIO) -> int:
    keys = _keys_of(store, args.function)
    (output.entries_json if args.json else output.entries_table)(read_entries(store, keys), out)
    return 0


def _show(store: TargetStore, args: argparse.Namespace, out: TextIO) -> int:
    entry = read_one(store, args.key)
    if entry is None:
        raise CommandError(f"no entry under {args.key!r} (see `instructor-cache ls`)")
    (output.entry_json if args.json else output.entry_text)(entry, out)
    return 0


def _clear(store: TargetStore, args: argparse.Namespace, out: TextIO) -> int:
    name: str | None = args.function
    what = "every entry" if name is None else f"the entries of {name}"
    if not args.yes and not _confirmed(f"Delete {what} in {store!r}? [y/N] "):
        raise CommandError(f"nothing deleted: confirm with --yes to delete {what}")
    if name is None:
        removed = store.clear_prefix("")
        functions: list[str] = []
    else:
        # A function's keys start "<namespace>:<name>:" or, for closures,
        # "<namespace>:<name>~": one clear_prefix each, never a key at a time.
        functions = sorted({f for f in map(function_of, _keys_of(store, name)) if f})
        if not functions:
            raise CommandError(
                f"no entries of a function named {name!r}: name it as `stats` lists it, "
                "<namespace>:<module>.<qualname> or <module>.<qualname>"
            )
        removed = sum(store.clear_prefix(f + sep) for f in functions for sep in ":~")
    output.cleared(removed, functions, args.json, out)
    return 0


def _purge_expired(store: TargetStore, args: argparse.Namespace, out: TextIO) -> int:
    if isinstance(store, PurgesExpired):
        output.purged(store.purge_expired(), None, args.json, out)
    else:
        why = f"{store!r} removes expired entries by itself (Redis expires keys on its own)"
        output.purged(0, why, args.json, out)
    return 0


def _keys_of(store: TargetStore, name: str | None) -> Iterator[str]:
    """The keys of ``name``'s entries (every key if ``None``), scanning by prefix where it can."""
    if name is None:
        yield from store.scan()
        return
    prefix = name.split("@", 1)[0] if ":" in name else ""
    for key in store.scan(prefix):
        if matches(function_of(key), name):
            yield key


def _confirmed(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


_COMMANDS: dict[str, Callable[[TargetStore, argparse.Namespace, TextIO], int]] = {
    "stats": _stats,
    "ls": _ls,
    "show": _show,
    "clear": _clear,
    "purge-expired": _purge_expired,
}

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
