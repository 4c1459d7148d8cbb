"""instructor's ``cache=`` under ``cache_control``: which mode and store a call follows.

instructor's calls follow the controls as decorated calls do (a block, the
environment variable, a test session's default): ``off`` neither reads nor
writes, ``read-only`` reads, ``write-only`` writes, ``replay`` reads and
raises on a miss before the provider is called; ``store=`` reads and writes
that store (one of ours: another has no guarded view, and the call keeps
its ``cache=``) and ``ttl=`` replaces ``cache_ttl``. ``_instructor`` applies
them; this module tells what they are.
"""

from __future__ import annotations

from typing import Any

from instructor_cache._control import SWITCH, Control, replay_missed, steer
from instructor_cache._instructor_hook import InstructorCompatible
from instructor_cache.errors import CacheMissError

__all__ = ["controlled", "never_stored", "replay_miss", "target", "unwrapped"]


def controlled() -> Control | None:
    """The control in force for this call, or ``None`` when it runs as if there were none."""
    return steer() if SWITCH.on else None


def target(cache: InstructorCompatible, control: Control | None) -> InstructorCompatible:
    """The store the call reads and writes: the one a control routes to, if it is one of ours."""
    routed = None if control is None else control.store
    return routed if isinstance(routed, InstructorCompatible) else cache


def replay_miss(cache_name: str, key: str, model: Any) -> CacheMissError:
    """The error of a ``replay`` call that found nothing, told to the watchers of replay misses."""
    name = getattr(unwrapped(model), "__qualname__", repr(model))
    kind = never_stored(model)
    if kind is not None:
        why = (
            f"{cache_name} never stores a {kind} answer (instructor stores one model only), so "
            f"this {name} call cannot be replayed and the provider was not called: cache the "
            "function making it with @instructor_cache, which stores such answers"
        )
    else:
        why = (
            f"{cache_name} has no entry for this {name} call (key {key}), and the cache is "
            "in replay mode, so the provider was not called. Record it first: run this call "
            "with the cache in normal or write-only mode (and a cache_namespace=, or the next "
            "client object keys it apart)"
        )
    error = CacheMissError(why, function=cache_name, key=key)
    return replay_missed(error)  # seen by a test runner even if the caller's code catches it


# The bases of the models instructor answers through but never stores: what it returns
# is not the model (a list, a partial stream, parallel calls, a str or int).
_UNSTORED = {
    "IterableBase": "list or Iterable",
    "PartialBase": "partial (streamed)",
    "ParallelBase": "parallel tool calls",
    "AdapterBase": "simple-type (str, int, Literal...)",
}


def never_stored(model: Any) -> str | None:
    """What kind of answer ``model`` stands for, if instructor never stores such answers."""
    for base in getattr(model, "__mro__", ()):
        kind = _UNSTORED.get(base.__name__)
        if kind is not None:
            return kind
    return None


def unwrapped(model: Any) -> Any:
    """The caller's class under the subclasses instructor makes of it (``__wrapped__``)."""
    if not isinstance(model, type):
        return model
    wrapped = vars(model).get("__wrapped__")
    while isinstance(wrapped, type) and issubclass(model, wrapped):
        model, wrapped = wrapped, vars(wrapped).get("__wrapped__")
    return model
