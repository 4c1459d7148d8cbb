"""The I/O-free core that the sync and async wrappers share.

A ``Memo`` knows, for one decorated function, how to build a key, how to turn
a stored text into a result (and count the hit, miss or error), and how to
turn a fresh result into text worth storing. It never waits on I/O and never
sees a store: the drivers in ``_drivers`` do all of that, through the
guarded store ``backends._compose`` made.
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import time
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from instructor_cache._codec import Codec, DecodeError, EncodeError
from instructor_cache._events import Watch
from instructor_cache._identity import function_name
from instructor_cache._keys import KeyBuilder
from instructor_cache._log import RateLimitedLog
from instructor_cache._options import Options
from instructor_cache._raw import attach_raw, items_raw_text, raw_of, raw_text
from instructor_cache._stats import CacheInfo, Stats
from instructor_cache._stream_types import stored_type, stream_shape
from instructor_cache._usage import Usage, read_usage, usage_in
from instructor_cache.errors import UncacheableFunctionError

__all__ = ["MISS", "SERVED", "Memo", "Miss", "Served", "annotations_of", "codec_and_keys"]

R = TypeVar("R")


class Miss(enum.Enum):
    """The type of ``MISS``, so that ``None`` stays available as a cached value."""

    MISS = "MISS"


MISS: Literal[Miss.MISS] = Miss.MISS

Served = tuple[float, Usage | None]
"""The original call's duration and usage, behind a hit."""

SERVED: contextvars.ContextVar[Served | None] = contextvars.ContextVar(
    "instructor_cache_served", default=None
)
"""What the original call behind a hit of a layer with another cached layer stacked on it spent.

The layer above reads it after calling the one below (in the same thread or
task), and stores that duration and usage instead of the microseconds the
hit took and whatever usage its result shows (a list's hit has no raw
completion left to read it from).
"""


class Memo(Generic[R]):
    """Key, codec, statistics and policy for one decorated function."""

    __slots__ = (
        "_cache_if",
        "_codec",
        "_count_hit",
        "_decode_log",
        "_drift_log",
        "_moved_log",
        "_read_envelope",
        "_unstorable_log",
        "key",
        "name",
        "over_layer",
        "single_flight",
        "stats",
        "ttl",
        "under_layer",
        "watch",
    )

    def __init__(self, fn: Callable[..., Any], options: Options) -> None:
        self._codec, self.key = codec_and_keys(fn, options)
        self.name = self.key.name
        self._read_envelope = self._codec.read_envelope
        self.ttl = options.ttl
        self.single_flight = options.single_flight
        self.stats = Stats()
        hooks = () if options.on_event is None else (options.on_event,)
        self.watch = Watch(self.name, hooks, self.key.build)
        # Bound once: decode() is the hit path.
        self._count_hit: Callable[[float, Usage | None], None] = self.stats.hit
        self.over_layer = False  # stacked on another cached layer (see report_hits_above)
        self.under_layer = False  # another cached layer is stacked on this one (the same)
        self._cache_if = options.cache_if
        self._decode_log = RateLimitedLog()
        self._unstorable_log = RateLimitedLog(interval=float("inf"))  # once per function
        self._drift_log = RateLimitedLog(interval=float("inf"))
        self._moved_log = RateLimitedLog()

    def decode(self, text: str) -> R | Literal[Miss.MISS]:
        """Return the cached result in ``text`` and count a hit, or return ``MISS``.

        Text that does not decode (corrupt, an older format, a model that has
        changed since) is counted as an error; the caller deletes it, and
        counts the miss when it pays for the call (``missed``). This is the
        hit path, so it validates through the codec's ``read_envelope``
        directly rather than through ``Codec.decode``'s extra frame; an entry
        without optional fields costs one ``len`` more.
        """
        try:
            envelope = self._read_envelope(text)
        except Exception as exc:  # noqa: BLE001  (a validator may raise anything)
            self.stats.error()
            self._decode_log.warning(
                "instructor_cache: a stored entry of %s does not decode, calling the function "
                "instead: %s",
                self.name,
                DecodeError(f"{type(exc).__name__}: {exc}"),
            )
            return MISS
        if len(envelope) == 4:  # v, created, duration, value: no optional field to read
            self._count_hit(envelope["duration"], None)
            return envelope["value"]  # type: ignore[no-any-return]
        return self._with_extras(envelope)

    def _with_extras(self, envelope: dict[str, Any]) -> R:
        """A hit whose entry recorded the call's usage or its raw completion, or both."""
        usage = envelope.get("usage")
        self._count_hit(envelope["duration"], None if usage is None else read_usage(usage))
        value = envelope["value"]
        if "raw" in envelope:
            attach_raw(value, envelope["raw"])
        return value  # type: ignore[no-any-return]

    def encode(self, value: R, duration: float, usage: Usage | None = None) -> str | None:
        """Return the text to store for a fresh result, or ``None`` to store nothing.

        ``usage``: the original call's, when a cached layer below served this
        one; else it is read from the result. Nothing here may raise: the
        caller has paid for ``value`` and gets it.
        """
        try:
            if self._cache_if is not None and not self._cache_if(value):
                return None
            raw = raw_of(value)
            if usage is None:
                usage = usage_in(value, raw)
            usage_text = None if usage is None else usage.json()
            raw_json = None if raw is None else raw_text(raw)
            if raw is None and isinstance(value, list):  # models of calls of their own
                raw_json = items_raw_text(value)
            created = time.time()
            if raw_json is not None:
                try:
                    return self._codec.encode(
                        value, created=created, duration=duration, usage=usage_text, raw=raw_json
                    )
                except EncodeError:  # the raw completion must not cost the value its entry
                    pass
            return self._codec.encode(value, created=created, duration=duration, usage=usage_text)
        except Exception as exc:  # noqa: BLE001  (EncodeError, or a cache_if that raised)
            self._unstorable_log.warning(
                "instructor_cache: not caching a result of %s: %s. Results are still returned; "
                "make the return type round-trip through JSON to cache them.",
                self.name,
                exc,
            )
            return None

    def not_stored(self, reason: str) -> None:
        """Say (once per function) why a result is returned but not cached."""
        self._unstorable_log.warning(
            "instructor_cache: not caching a result of %s: %s. Results are still returned.",
            self.name,
            reason,
        )

    def usage_of(self, value: R) -> Usage | None:
        """The usage ``value``'s raw completion (or a completion beside it) reports; ``None``
        if none, or if reading it raised: the caller has paid for ``value`` and gets it."""
        try:
            return usage_in(value, raw_of(value))
        except Exception:  # noqa: BLE001  (a provider object's property may raise anything)
            return None

    def shared_hit(self, duration: float, usage: Usage | None) -> None:
        """Count a waiter's copy of a result its leader shared without storing it: a hit
        that saved the leader's call (and tells a layer above it so, as any hit does)."""
        self._count_hit(duration, usage)

    def accepts(self, value: R) -> bool:
        """Whether ``cache_if`` lets ``value`` be cached, and so shared with waiting calls.

        A ``cache_if`` that raises refuses: the caller still gets its value.
        """
        try:
            return self._cache_if is None or bool(self._cache_if(value))
        except Exception:  # noqa: BLE001  (encode logs it, when the value is stored)
            return False

    def check_context(self, key: str) -> None:
        """Warn once if the call changed what the function captures (a call counter).

        Its next identical call then has another key and is paid again: the
        variable belongs in ``ignore=``.
        """
        if self.key.context_moved(key):
            self._drift_log.warning(
                "instructor_cache: %s changed a variable it captures while running, so its calls "
                "never share a key and every call is paid; if that variable does not change the "
                "answer (a call counter), leave it out with ignore=(name,)",
                self.name,
            )

    def arguments_moved(self) -> None:
        """Warn (rate-limited) that a stream's arguments changed while it ran: not stored."""
        self._moved_log.warning(
            "instructor_cache: the arguments of a %s stream changed while it was consumed (a "
            "list appended to between items), so its answer is not stored under the arguments "
            "it began with",
            self.name,
        )

    def report_hits_above(self) -> None:
        """Another cached layer is stacked on this function: tell it, on each hit, how long the
        original call took and what it used, so that it stores those and not this hit's (its
        savings then count the call the entry stands for). Only such a layer's hits pay for it."""
        self.under_layer = True
        count = self.stats.hit

        def hit_and_report(duration: float, usage: Usage | None) -> None:
            count(duration, usage)
            SERVED.set((duration, usage))

        self._count_hit = hit_and_report

    def missed(self) -> None:
        """Count a call that ran the function: nothing stored, nor computed alongside, served it."""
        self.stats.miss()

    def cache_info(
        self, size: tuple[int | None, int | None], tiers: tuple[CacheInfo, ...]
    ) -> CacheInfo:
        """The statistics, with the size and per-tier figures the driver read from the store."""
        return self.stats.info(*size, tiers)


def codec_and_keys(fn: Callable[..., Any], options: Options) -> tuple[Codec[Any], KeyBuilder]:
    """What decorating ``fn`` decides once: how to store its results, how to key its calls."""
    hints, where = annotations_of(fn), f"{function_name(fn)}()"
    shape = stream_shape(fn, hints["return"], options.stream, where)
    codec: Codec[Any] = Codec(stored_type(shape, hints["return"]), where=where)
    return codec, KeyBuilder(fn, options, schema_fingerprint=codec.fingerprint, hints=hints)


def annotations_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``fn``, read through any ``__wrapped__`` layers.

    Only the return annotation is required (the cache needs it to read stored
    results back), and only it must resolve now: a parameter annotated with
    the class being defined (``def compare(self, other: Document)`` under
    ``from __future__ import annotations``) does not, and costs only the
    decoration-time check of that parameter.
    """
    original = inspect.unwrap(fn)
    where = f"{function_name(fn)}()"
    try:
        return _with_return(typing.get_type_hints(original, include_extras=True), where)
    except NameError:
        pass
    except TypeError:
        return _with_return({}, where)  # not a plain function (a functools.partial)
    raw = getattr(original, "__annotations__", {})
    shim = types.SimpleNamespace(
        __annotations__={"return": raw.get("return")} if "return" in raw else {},
        __globals__=getattr(original, "__globals__", {}),
    )
    try:
        return _with_return(typing.get_type_hints(shim, include_extras=True), where)
    except NameError as exc:
        raise UncacheableFunctionError(
            f"cannot resolve the return annotation of {where}: {exc}. Define the model "
            "before the decorated function."
        ) from exc


def _with_return(hints: dict[str, Any], where: str) -> dict[str, Any]:
    if "return" not in hints:
        raise UncacheableFunctionError(
            f"{where} has no return annotation. The cache needs it to read stored "
            "results back: annotate the model it returns, e.g. -> UserDetail."
        )
    return hints
