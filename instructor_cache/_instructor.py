"""instructor's ``cache=`` on our stores: what its load and store helpers do with them.

instructor catches nothing its cache raises, and raises on an entry that
does not validate; a cache must never break the app. So its calls go
through the same guard as a decorated function's (``backends._compose``):
a failing store is counted, logged (rate-limited) and skipped by its
circuit breaker, shared with the functions decorated over it, and the call
goes to the provider. What instructor stores is kept under a prefix of its
own (never a decorated function's key) in a small envelope carrying a
checksum of its text: a truncated, planted or foreign entry reads as a
miss, and is deleted; so is one that no longer validates. The entry also
names how its model validates (``_model_behaviour``): instructor's key has
the JSON schema only, so a model of that schema with another validator or
config reads another's entry as a miss, as a decorated function would.

A result is stored only if its JSON validates back to the same model, as
the decorator's write check has it (a value that would not come back
exactly is not stored). ``cache_ttl=``
(seconds, from instructor) is the entry's TTL, never longer than the
store's own nor than ``_LONGEST``; a TTL that is not a positive number of
seconds stores nothing.

instructor calls the sync helpers even from its async client: a store
answers on the event loop (memory at once; disk and Redis within their
timeouts). A ``RedisCache`` given an asyncio client only has no sync
client, so instructor's calls skip it (counted, warned once) rather than
fail each time and open the breaker its async functions share.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import types
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from instructor_cache._blake import blake2b
from instructor_cache._control import UNSET, Control, mode_of
from instructor_cache._instructor_control import controlled, replay_miss, target, unwrapped
from instructor_cache._instructor_hook import InstructorCompatible
from instructor_cache._log import RateLimitedLog, warning
from instructor_cache._raw import RAW_ATTRIBUTE, attach_raw
from instructor_cache._stats import CacheInfo, Stats
from instructor_cache._ttl import to_seconds
from instructor_cache.backends._compose import GuardedStore, compose
from instructor_cache.backends._tiers import Tiers
from instructor_cache.errors import ConfigurationError

__all__ = ["PREFIX", "cache_info", "load", "store", "unwrap", "wrap"]

PREFIX = "instructor.cache:"
"""Where instructor's entries live in a store: no decorated function's key starts so."""

_LONGEST = 10.0**12
"""The longest ``cache_ttl`` kept as asked (some 31,700 years): a longer one ("forever",
``2**63 - 1``) is past the range of Redis's clock, which would refuse every write."""
_TAG = "icx1:"
_DIGEST = 32  # hex characters of a 16-byte BLAKE2b
_NAME = "instructor's cache="


def wrap(text: str) -> str:
    """``text`` in the envelope that ``unwrap`` checks."""
    return f"{_TAG}{_digest(text)}:{text}"


def unwrap(entry: str) -> str | None:
    """The text ``wrap`` was given, or ``None`` for anything else (truncated, planted, foreign)."""
    start = len(_TAG) + _DIGEST + 1
    if not entry.startswith(_TAG) or entry[start - 1 : start] != ":":
        return None
    text = entry[start:]
    return text if entry[len(_TAG) : start - 1] == _digest(text) else None


def _digest(text: str) -> str:
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=_DIGEST // 2).hexdigest()


class _View:
    """One store as instructor's calls use it: guarded, counted, and whether it can serve them."""

    def __init__(self, store: InstructorCompatible) -> None:
        self.stats = Stats()
        self.log = RateLimitedLog()
        self.usable = store.serves_sync_calls
        self.guarded: GuardedStore = compose(store, self.stats, _NAME)  # type: ignore[arg-type]  # every built-in store keeps the Store contract
        if not self.usable:
            warning(
                "instructor_cache: %r has an asyncio client only, and instructor calls its cache "
                "synchronously: its calls skip this store. Give RedisCache a URL to cache them",
                store,
            )

    def corrupt(self, key: str, why: str, *, keep: bool = False) -> None:
        """Count and log an entry that cannot be used, and delete it unless ``keep``."""
        self.stats.error()
        self.log.warning("instructor_cache: %s for %s; it is a miss", why, _NAME)
        if not keep:
            self.guarded.delete(key)

    def info(self) -> CacheInfo:
        guarded = self.guarded
        tiers = guarded.tier_infos() if isinstance(guarded, Tiers) else ()
        return self.stats.info(None, None, tiers)


_VIEW = "_instructor_cache_view"
_making = threading.Lock()


def _view(store: InstructorCompatible) -> _View:
    """The store's view, made once and kept on the store itself.

    So it goes when the store goes: a registry by ``id`` would keep both
    alive for good, since the view's guard holds its store.
    """
    view: _View | None = getattr(store, _VIEW, None)
    if view is None:
        with _making:
            view = getattr(store, _VIEW, None)
            if view is None:
                view = _View(store)
                object.__setattr__(store, _VIEW, view)
    return view


def cache_info(store: InstructorCompatible) -> CacheInfo:
    """Hits, misses and errors of instructor's calls on ``store`` (errors include its tiers')."""
    return _view(store).info()


class _Reader:
    """Hands instructor's loader the checked text of one entry, noting that it did.

    An entry written for a model that validates differently (instructor's key
    has its JSON schema only, which shows no validator or config) is a miss:
    this call's answer replaces it. ``keep``: replay and read-only leave the
    store as it is, as decorated calls do (it may be a committed fixture
    directory): an entry they cannot use is a miss, not deleted.
    """

    def __init__(self, view: _View, model: type, *, keep: bool = False) -> None:
        self.view = view
        self.model = model
        self.keep = keep
        self.read = False

    def get(self, key: str) -> str | None:
        self.read = True
        view = self.view
        if not view.usable:
            view.stats.error()
            return None
        entry = view.guarded.get(PREFIX + key)
        if entry is None:
            return None
        text = unwrap(entry)
        written = _written_for(text)
        if text is None or written is None:
            view.corrupt(
                PREFIX + key, "an entry instructor_cache did not write was found", keep=self.keep
            )
            return None
        return text if written == _model_behaviour(self.model) else None


def _written_for(text: str | None) -> str | None:
    """The behaviour digest of the model an entry was written for, if it has one."""
    payload = None if text is None else json.loads(text)
    written = payload.get(_BEHAVIOUR) if isinstance(payload, dict) else None
    return written if isinstance(written, str) else None


_BEHAVIOUR = "behaviour"


def _model_behaviour(model: type) -> str:
    """A digest of how ``model`` validates: its schemas and the code and config of its models.

    instructor makes a subclass of the caller's model on each call
    (``functools.wraps`` marks it ``__wrapped__``): the digest is the
    caller's class's, computed once for it, never for each call's subclass.
    """
    return _class_behaviour(unwrapped(model))


@functools.lru_cache(maxsize=1024)
def _class_behaviour(model: type) -> str:
    """``_model_behaviour``, once per class; held strongly, so a class made at a collected one's
    address is never taken for it."""
    from pydantic import TypeAdapter  # noqa: PLC0415  (only once instructor runs)

    from instructor_cache._schema import return_type_fingerprint  # noqa: PLC0415  (heavy)

    return return_type_fingerprint(model, TypeAdapter(model))


_ASKED: ContextVar[tuple[str, Any, Any, Control | None] | None] = ContextVar(
    "instructor_cache_asked", default=None
)
"""The key, ``context``, ``strict`` and control of this task's last miss, for its write.

instructor passes ``context`` and ``strict`` to its loader but not to its
storer, which it calls next for the same key in the same thread or task.
The control is the one the call began under: its answer is written where
it was read, even if a block or the default changed while the provider
answered (as a decorated call keeps the store it was routed to).
"""


def load(
    original: Callable[..., Any], cache: InstructorCompatible, key: str, *args: Any, **kwargs: Any
) -> Any:
    """instructor's ``load_cached_response`` on our store: a miss for any entry it cannot use.

    An error raised before the entry is read (instructor rejecting an async
    validator) is the caller's and propagates; one raised while decoding the
    entry makes it a miss.
    """
    control = controlled()
    mode = "normal" if control is None else mode_of(control)
    view = _view(target(cache, control))
    model = args[0] if args else kwargs["response_model"]
    result = None
    if mode not in ("off", "write-only"):  # neither reads: the provider answers
        reader = _Reader(view, model, keep=mode != "normal")
        try:
            result = original(reader, key, *args, **kwargs)
        except Exception as exc:
            if not reader.read:
                raise
            why = f"an entry did not validate ({type(exc).__name__})"
            view.corrupt(PREFIX + key, why, keep=reader.keep)
            result = None
    if result is None:
        view.stats.miss()
        if mode == "replay":  # no write follows: nothing kept for it (a routed store)
            raise replay_miss(_NAME, PREFIX + key, model)
        _ASKED.set((key, kwargs.get("context"), kwargs.get("strict", True), control))
    else:
        view.stats.hit(0.0)
        _as_raw_response(result)
    return result


def _as_raw_response(result: Any) -> None:
    """instructor restores a hit's raw completion as nested ``SimpleNamespace``s, which have
    no ``model_dump()``: code that dumps the completion would fail on hits only. Our
    ``RawResponse`` reads the same by attribute and dumps like the provider's object."""
    raw = getattr(result, RAW_ATTRIBUTE, None)
    if isinstance(raw, types.SimpleNamespace):
        attach_raw(result, _plain(raw))


def _plain(item: Any) -> Any:
    if isinstance(item, types.SimpleNamespace):
        return {name: _plain(value) for name, value in vars(item).items()}
    if isinstance(item, list):
        return [_plain(value) for value in item]
    return item


class _Capture:
    """Takes the text instructor's ``store_cached_response`` would store, and its TTL."""

    text: str | None = None
    ttl: Any = None

    def set(self, key: str, value: Any, ttl: Any = None) -> None:
        self.text, self.ttl = value, ttl


def store(
    original: Callable[..., Any], cache: InstructorCompatible, key: str, *args: Any, **kwargs: Any
) -> None:
    """instructor's ``store_cached_response`` on our store: only what comes back equal."""
    asked = _ASKED.get()
    _ASKED.set(None)
    if asked is not None and asked[0] == key:
        context, strict, control = asked[1:]
    else:
        context, strict, control = None, True, controlled()
    if control is not None and mode_of(control) in ("off", "read-only", "replay"):
        return
    view = _view(target(cache, control))
    if not view.usable:
        view.stats.error()
        return
    capture = _Capture()
    text: str | None = None
    seconds: float | None = None
    try:
        original(capture, key, *args, **kwargs)
        model = args[0] if args else kwargs["model"]
        seconds = to_seconds(capture.ttl, what="cache_ttl")
        if control is not None and control.ttl is not UNSET:
            seconds = control.ttl
        seconds = None if seconds is None else min(seconds, _LONGEST)
        text = _returning(model, capture.text, context, strict)
        if text is None:
            view.log.warning(
                "instructor_cache: a %s does not come back equal from its JSON, so %s does not "
                "store it",
                type(model).__name__,
                _NAME,
            )
    except ConfigurationError as exc:
        view.log.warning("instructor_cache: not stored for %s: %s", _NAME, exc)
    except Exception as exc:  # noqa: BLE001  (the result is paid for: serializing it must not lose it)
        view.stats.error()
        view.log.warning(
            "instructor_cache: %s could not serialize a result: %s: %s",
            _NAME,
            type(exc).__name__,
            exc,
        )
    if text is not None:
        view.guarded.set(PREFIX + key, wrap(text), seconds)
    elif control is not None and mode_of(control) == "write-only":
        # A refresh that stores nothing must not leave the answer it replaced to be served.
        view.guarded.delete(PREFIX + key)


def _returning(model: Any, text: Any, context: Any, strict: Any) -> str | None:
    """instructor's entry for ``model`` in a form that validates back to the same model, if any.

    "The same" as the decorator's write check has it (``same_data``: types,
    zones and fields set, not ``==``), validated with the ``context`` and
    ``strict`` of the call, as its hit will be: checked without them, a
    validator that acts on the context passes and acts again on every hit.
    instructor dumps a model by field name and with every field, so a model
    with aliases would fail on every hit and one with unset defaults would
    come back with them set; dumped by alias and without the unset fields,
    they come back. ``None`` when no form does (a validator that is not
    idempotent, a value whose JSON reads back as another).
    """
    from instructor_cache._sameness import same_data  # noqa: PLC0415  (only once instructor runs)

    payload = json.loads(text)
    forms: tuple[Callable[[], str], ...] = (
        lambda: payload["model"],
        lambda: model.model_dump_json(by_alias=True, exclude_unset=True),
        lambda: model.model_dump_json(exclude_unset=True),
    )
    for form in forms:
        try:
            dumped = form()
            restored = type(model).model_validate_json(
                dumped, strict=strict, context=_own_copy(context)
            )
        except Exception:  # noqa: BLE001, S112  (any failure: try the next form, or store nothing)
            continue
        if same_data(model, restored):
            payload["model"] = dumped
            payload[_BEHAVIOUR] = _model_behaviour(model.__class__)
            return json.dumps(payload)
    return None


def _own_copy(context: Any) -> Any:
    """The call's context for one more validation, so a validator that records into it does not
    record twice into the caller's (a deep copy, else a shallow one of a dict)."""
    try:
        return copy.deepcopy(context)
    except Exception:  # noqa: BLE001  (a context holding a client or a lock)
        return dict(context) if isinstance(context, dict) else context
