"""A stream's recording: the items handed so far, and whether they may still be stored.

A miss keeps a copy of each item as it is handed (the caller may change
it before the stream ends); only a stream that completes, is not outdated
by an invalidation meanwhile, and whose items could all be copied is
stored. Over a cached layer, the recording also reads what the layer's hit
below said the original call spent (``SERVED``), in the step that got the
first item.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from instructor_cache._memo import SERVED, Memo, Served
from instructor_cache._raw import raw_of
from instructor_cache._usage import usage_of_calls

__all__ = ["Recording", "Recordings"]


class Recording:
    """The items a stream has handed its caller so far, copied as they were handed."""

    __slots__ = (
        "below",
        "copied",
        "final",
        "items",
        "key",
        "outdated",
        "raws",
        "served",
        "started",
        "store",
        "under",
    )

    def __init__(
        self, key: str, final: bool, over_layer: bool, under_layer: bool, store: object
    ) -> None:
        self.key, self.final = key, final
        self.store = store  # where it is stored: only a write to that store outdates it
        self.items: list[Any] = []
        # The raw completions of the items as handed, each once: an item's copy has its own
        # copy of its completion, so the same call handed twice would count twice.
        self.raws: dict[int, Any] = {}
        self.copied = True  # False once an item refused to be copied: then nothing is stored
        self.outdated = False  # an invalidate, refresh or cache_clear began meanwhile
        self.started = time.perf_counter()
        # Over a cached layer, its hit tells how long the call it replays took (see answered).
        self.served = SERVED.set(None) if over_layer else None
        self.under = under_layer
        self.below: Served | None = None

    def answered(self) -> None:
        """The layer below has handed its first item, or ended: note what its hit said it saved.

        This runs in the step that asked it for that first item, where its
        hit set ``SERVED``: one step runs in one context. Without it, this
        layer would store its replay's microseconds, and its own hits would
        count nothing saved (a non-stream layer does the same in ``took``).
        """
        if self.served is None:
            return
        original = SERVED.get()
        SERVED.reset(self.served)
        self.served = None
        if original is not None:
            self.below = original
            if self.under:  # a middle layer: the one above reads it next
                SERVED.set(original)

    def add(self, item: Any) -> None:
        self.answered()
        if not self.final:
            raw = raw_of(item)
            if raw is not None:
                self.raws.setdefault(id(raw), raw)
        try:
            kept = copy.deepcopy(item)
        except Exception:  # noqa: BLE001  (an object may refuse to be copied in any way)
            self.copied = False
            return
        if self.final:
            self.items = [kept]
        else:
            self.items.append(kept)

    def text(self, memo: Memo[Any]) -> str | None:
        """The entry to store for a stream that completed; ``None``: store nothing."""
        if not self.copied:
            memo.not_stored("an item it yielded cannot be copied (copy.deepcopy raised)")
            return None
        if self.outdated or (self.final and not self.items):
            return None
        value = self.items[0] if self.final else self.items
        if self.below is None:
            usage = None if self.final else usage_of_calls(self.raws.values())
            return memo.encode(value, time.perf_counter() - self.started, usage)
        return memo.encode(value, *self.below)


class Recordings:
    """The streams of one function being recorded now, so an invalidation can outdate them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[Recording] = set()

    def start(self, key: str, final: bool, memo: Memo[Any], store: object) -> Recording:
        recording = Recording(key, final, memo.over_layer, memo.under_layer, store)
        with self._lock:
            self._live.add(recording)
        return recording

    def stop(self, recording: Recording) -> None:
        recording.answered()  # a stream that ended (or failed) before its first item
        with self._lock:
            self._live.discard(recording)

    def outdate(self, key: str | None, store: object) -> None:
        """``key``'s streams into ``store`` (all its streams for ``None``) began before it was
        invalidated there; those recording into another store (a ``cache_control`` route) did
        not, and their answer is still to be stored."""
        with self._lock:
            for recording in self._live:
                if recording.store is store and (key is None or recording.key == key):
                    recording.outdated = True
