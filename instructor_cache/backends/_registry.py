"""One value per live object, found by identity: a store's breaker, a store's worker thread.

Keyed by ``id`` rather than in a ``WeakKeyDictionary``, whose keys are
compared with ``==``: two stores that compare equal (a user's dataclass
store, two clients of different servers with one name) must not share a
breaker, or one dead server would turn the other's hits away. An entry goes
when its object is collected; an object that cannot be weakly referenced
is kept, with its value, for the life of the process (so its ``id`` is
never reused by another): such stores are few and long-lived.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["PerObject"]

V = TypeVar("V")


class PerObject(Generic[V]):
    """``get(obj, make)`` returns the value made for ``obj``, making it on first use."""

    def __init__(self, *, forget_in_child: bool = False) -> None:
        self._values: dict[int, V] = {}
        self._kept: list[object] = []  # objects that cannot be weakly referenced
        self._lock = threading.Lock()
        if forget_in_child:
            # A forked child inherits the values but not the threads behind them
            # (an executor whose idle worker is gone would queue work forever).
            os.register_at_fork(after_in_child=self._forget)

    def get(self, obj: object, make: Callable[[], V]) -> V:
        key = id(obj)
        value = self._values.get(key)
        if value is not None:
            return value
        with self._lock:
            value = self._values.get(key)
            if value is None:
                try:
                    weakref.finalize(obj, self._values.pop, key, None)
                except TypeError:  # not weakly referenceable: kept alive, so its id stays its own
                    self._kept.append(obj)
                value = self._values[key] = make()
        return value

    def _forget(self) -> None:
        self._values = {}
        self._lock = threading.Lock()
