"""What the CLI prints: tables for a terminal, JSON for scripts, the same facts in both.

Listings are written as they are read, a row (or a JSON array item) at a
time, so a cache of a million entries is never held in memory.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TextIO

from instructor_cache._entries import Entry, FunctionStats

__all__ = [
    "cleared",
    "entries_json",
    "entries_table",
    "entry_json",
    "entry_text",
    "purged",
    "stats_json",
    "stats_table",
]

_TEXT_SHOWN = 2000
"""Characters of an unreadable entry's text that ``show`` prints."""


def _shown(text: str | None) -> str:
    """``text`` safe to print: a key read from a store (a planted one) may hold terminal escape
    sequences, or a lone surrogate no terminal encoding takes; those are shown escaped."""
    if text is None:
        return ""
    return text if text.isprintable() else repr(text)[1:-1]


def duration(seconds: float | None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: an age or a time left, at a glance."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def size(count: float) -> str:
    for unit, bound in (("MB", 2**20), ("KB", 2**10)):
        if count >= bound:
            return f"{count / bound:.1f} {unit}"
    return f"{count:.0f} B"


def _age(created: float | None) -> float | None:
    return None if created is None else max(0.0, time.time() - created)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)


def stats_table(rows: list[FunctionStats], out: TextIO) -> None:
    if not rows:
        print("No entries.", file=out)
        return
    header = (
        "FUNCTION",
        "ENTRIES",
        "UNREADABLE",
        "SIZE",
        "MEAN",
        "OLDEST",
        "NEWEST",
        "SAVED",
        "TOKENS",
        "COST",
    )
    _table(
        header,
        [
            (
                _shown(row.function),
                str(row.entries),
                str(row.unreadable),
                size(row.size),
                size(row.mean_size),
                duration(_age(row.oldest)),
                duration(_age(row.newest)),
                f"{row.seconds:.2f}s",
                str(row.tokens),
                f"${row.cost:.6f}",
            )
            for row in rows
        ],
        out,
    )
    print(
        "\nSAVED, TOKENS and COST: what one more hit on every entry saves (the calls' recorded "
        "time, tokens, and their cost at today's prices in instructor_cache.pricing).",
        file=out,
    )


def stats_json(rows: list[FunctionStats], out: TextIO) -> None:
    functions = [
        {
            "function": row.function,
            "entries": row.entries,
            "unreadable": row.unreadable,
            "size": row.size,
            "mean_size": row.mean_size,
            "oldest_age": _age(row.oldest),
            "newest_age": _age(row.newest),
            # Planted durations may add up past a float: JSON has no Infinity, so null.
            "seconds_saved_per_hit": row.seconds if math.isfinite(row.seconds) else None,
            "tokens_saved_per_hit": row.tokens,
            "cost_saved_per_hit": row.cost,
        }
        for row in rows
    ]
    json.dump({"functions": functions}, out, indent=2)
    print(file=out)


def _row(entry: Entry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "function": entry.function,
        "age": _age(entry.created),
        "size": entry.size if entry.found else None,
        "ttl": entry.ttl,
        "readable": entry.problem is None,
        "problem": entry.problem,
    }


def entries_table(entries: Iterable[Entry], out: TextIO) -> None:
    print(f"{'AGE':>5} {'SIZE':>9} {'EXPIRES':>7}  KEY", file=out)
    count = 0
    for count, entry in enumerate(entries, 1):  # noqa: B007  (the count is read after the loop)
        expires = "?" if not entry.found else "never" if entry.ttl is None else duration(entry.ttl)
        note = "" if entry.problem is None else f"  UNREADABLE: {_shown(entry.problem)}"
        age, bytes_ = duration(_age(entry.created)), size(entry.size) if entry.found else "?"
        print(f"{age:>5} {bytes_:>9} {expires:>7}  {_shown(entry.key)}{note}", file=out)
    print(f"{count} entries", file=out)


def entries_json(entries: Iterable[Entry], out: TextIO) -> None:
    out.write("[")
    for i, entry in enumerate(entries):
        out.write(
            ("\n  " if i == 0 else ",\n  ") + json.dumps(_strict(_row(entry)), allow_nan=False)
        )
    out.write("\n]\n")


def entry_json(entry: Entry, out: TextIO) -> None:
    json.dump(_strict({**_row(entry), "entry": entry.envelope}), out, indent=2, allow_nan=False)
    print(file=out)


def _strict(item: Any) -> Any:
    """``item`` with ``null`` for each NaN or infinity, which strict JSON parsers refuse (a
    planted entry may hold them)."""
    if isinstance(item, float):
        return item if math.isfinite(item) else None
    if isinstance(item, dict):
        return {key: _strict(value) for key, value in item.items()}
    if isinstance(item, list):
        return [_strict(value) for value in item]
    return item


def entry_text(entry: Entry, out: TextIO) -> None:
    def line(label: str, text: str) -> None:
        print(f"{label:<9} {text}", file=out)

    line("key", _shown(entry.key))
    line("function", _shown(entry.function) or "(not a cache key: <namespace>:<function>:...)")
    if entry.found:
        line("size", f"{entry.size} bytes")
        expires = "never" if entry.ttl is None else f"in {duration(entry.ttl)} ({entry.ttl:.1f} s)"
        line("expires", expires)
    envelope = entry.envelope
    if envelope is None:
        line("UNREADABLE", f"{_shown(entry.problem)} (a miss: the next call replaces it)")
        if not entry.found:
            return
        shown = entry.text[:_TEXT_SHOWN]
        line("text", repr(shown) + (" ..." if len(entry.text) > _TEXT_SHOWN else ""))
        return
    created = float(envelope["created"])
    when = _when(created)
    line("format", f"v{envelope['v']} (the entry format's version)")
    line("created", f"{when} ({duration(_age(created))} ago: when the call that made it returned)")
    line("duration", f"{entry.duration:.3f} s (how long the call took: what each hit saves)")
    usage = entry.usage
    if usage is not None:
        line(
            "usage",
            f"{_shown(usage.model) or 'unknown model'}: {usage.input} input + {usage.output} "
            "output tokens "
            f"(${usage.cost():.6f} per hit at today's price)",
        )
    print("value     (the function's result, as stored)", file=out)
    print(_indented(envelope["value"]), file=out)
    if "raw" in envelope:
        print("raw       (the provider's completion that came with the result)", file=out)
        print(_indented(envelope["raw"]), file=out)


def _when(created: float) -> str:
    """``created`` as a UTC date, or as the number it is where no date holds it (a planted
    entry "created" in the year 10000 or past the platform's ``time_t``)."""
    try:
        return datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{created!r} s after 1970, past any date"


def _indented(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if not all(line.isprintable() for line in text.splitlines()):  # a lone surrogate, a U+2028
        text = json.dumps(value, indent=2)
    return "\n".join("  " + line for line in text.splitlines())


def cleared(removed: int, functions: list[str], as_json: bool, out: TextIO) -> None:
    if as_json:
        json.dump({"removed": removed, "functions": functions}, out)
        print(file=out)
    else:
        of = f" of {', '.join(map(_shown, functions))}" if functions else ""
        print(f"Removed {removed} entries{of}.", file=out)


def purged(removed: int, why_none: str | None, as_json: bool, out: TextIO) -> None:
    if as_json:
        json.dump({"removed": removed, "note": why_none}, out)
        print(file=out)
    elif why_none is not None:
        print(f"Nothing to do: {why_none}.", file=out)
    else:
        print(f"Removed {removed} expired entries.", file=out)
