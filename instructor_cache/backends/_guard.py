"""The guard: where a store's failures become misses and skipped writes, and nowhere else.

A cache is an optimisation: when the disk is full or Redis is down, the
caller must still get the function's result. Every operation a decorated
call makes goes through a ``Guard``, which counts the failure, logs it
(rate-limited, naming the operation, so a dead store does not flood the
log) and answers as if the entry were absent. The guard is also the one
owner of the circuit breaker: a store that keeps failing is skipped for a
cooldown instead of costing its timeout on every call. Stores only raise.

On a store with native async bulk reads (Redis), the async single reads made
while one is in flight are coalesced into one bulk read (see ``_coalesce``),
guarded here as one read: a failure is counted, logged and fed to the
breaker once for the batch.

The explicit operations a user asks for (``invalidate``, ``cache_clear``)
are the exception: they raise ``BackendError``, since a caller who removes
an entry relies on it being gone.

``Exception`` is caught on purpose: a user's store may raise anything, and
none of it may reach the caller. ``BaseException`` (``KeyboardInterrupt``,
``asyncio.CancelledError``) still propagates. The sync and async halves are
written side by side and changed together.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from instructor_cache._breaker import CircuitBreaker
from instructor_cache._events import note_bypass, note_error
from instructor_cache._log import RateLimitedLog
from instructor_cache._stats import CacheInfo, Stats
from instructor_cache.backends._async import Entry, Turned, adapt
from instructor_cache.backends._coalesce import Coalescer, coalesces
from instructor_cache.backends._contract import AsyncBulkReadsWithTTL, Store
from instructor_cache.backends._registry import PerObject
from instructor_cache.errors import BackendError, ConfigurationError, CorruptEntryError

__all__ = ["Guard", "breaker_for"]

T = TypeVar("T")
A = TypeVar("A")

_breakers: PerObject[CircuitBreaker] = PerObject()


def breaker_for(store: object) -> CircuitBreaker:
    """The circuit breaker of ``store``, shared by every function decorated over it.

    A dead Redis is dead for all of them: the second function need not pay
    three timeouts of its own to find out.
    """
    return _breakers.get(store, CircuitBreaker)


class Guard:
    """One store as one decorated function (or one tier of it) uses it: failing open."""

    __slots__ = (
        "__weakref__",
        "_aget",
        "_failures",
        "_get",
        "_log",
        "_name",
        "_ops",
        "_reads",
        "_reads_with_ttl",
        "_stats",
        "_unsure",
        "breaker",
        "locks",
        "store",
    )

    def __init__(self, store: Store, stats: Stats, name: str, breaker: CircuitBreaker) -> None:
        self._ops = ops = adapt(store, watch=breaker.watch)
        self._get, self._aget = ops.get, ops.aget  # the hit path: one attribute, not two
        self.store = ops.store
        self._stats = stats
        self._name = name
        self.breaker = breaker
        self._log = RateLimitedLog()
        self.locks = ops.lock is not None
        """Whether the store offers a lock shared between processes (``LockingStore``)."""
        self._unsure: dict[str, str] = {}
        """Key -> token of each lock whose taking failed here, which the store may still have
        taken (a stalled Redis runs the command once it resumes): let go before the key's next
        lock, else every call of the key, in every process, would wait for it to expire."""
        # Decided once: only a store whose async single reads are round trips
        # has them coalesced; the others keep their path (memory inline, disk
        # on its worker thread).
        self._reads: Coalescer[str | None] | None = None
        self._reads_with_ttl: Coalescer[Entry | None] | None = None
        self._failures = 0
        """Failures so far: a coalesced read, answered in another task, compares it (``aget``)."""
        if coalesces(self.store):
            self._reads = Coalescer(self._aget_one, self._aget_batch, None)
            if isinstance(self.store, AsyncBulkReadsWithTTL):
                self._reads_with_ttl = Coalescer(
                    self._aget_with_ttl_one, self._aget_with_ttl_batch, None
                )

    @property
    def reads_ttl(self) -> bool:
        """Whether a read can tell how long its entry has left (for tiers' backfill)."""
        return self._ops.get_with_ttl is not None

    # -- bookkeeping -------------------------------------------------------------

    def failed(self, operation: str, exc: BaseException, *, unhealthy: bool = True) -> None:
        """Count and log one failure; ``unhealthy`` ones also count towards the breaker.

        A call torn down with its event loop (a task left on a loop closed by
        ``loop.close()``, finalised later) says nothing of the store's
        health: it must not open the breaker for every healthy caller.
        """
        if unhealthy and not isinstance(exc, Turned) and not _torn_down_with_its_loop(exc):
            self.breaker.failed()
        self._failures += 1
        self._stats.error()
        self._log.warning(
            "instructor_cache: %s on %r failed for %s, %s: %s: %s",
            operation,
            self.store,
            self._name,
            _WHAT_FOLLOWS.get(operation, "calling the function instead"),
            type(exc).__name__,
            exc,
        )

    @property
    def gate(self) -> CircuitBreaker:
        """What the drivers test before each call: ``gate.open_until`` is 0.0 unless skipping."""
        return self.breaker

    def bypassing(self) -> bool:
        """Whether the breaker is open now; if so, count this call as a skipped one.

        The drivers ask (when ``gate.open_until`` is set) before building a
        key, so that a call on a dead store does not even do that.
        """
        breaker = self.breaker
        if breaker.open_until and breaker.is_open and not self._joins_a_batch(self._reads):
            self._skipped_while_open("call")
            return True
        return False

    @staticmethod
    def _joins_a_batch(reads: Coalescer[A] | None) -> bool:
        """Whether an async read may join the batch its loop has open (see ``open_here``)."""
        return reads is not None and reads.open_here()

    def _skipped(self, operation: str) -> bool:
        """Whether the breaker turns this operation away; a skipped operation is an error."""
        if self.breaker.allow():
            return False
        self._skipped_while_open(operation)
        return True

    def _skipped_while_open(self, operation: str) -> None:
        note_bypass()
        self._stats.error()
        self._log.warning(
            "instructor_cache: skipping %s on %r for %s: the store keeps failing, so it is "
            "left alone for %.1f s (%r)",
            operation,
            self.store,
            self._name,
            self.breaker.cooldown,
            self.breaker,
        )

    def _succeeded(self) -> None:
        breaker = self.breaker
        if breaker.consecutive:
            breaker.succeeded()

    def _write_failed(self, operation: str, exc: Exception) -> None:
        # A misconfiguration says nothing about the store's health: no breaker.
        self.failed(operation, exc, unhealthy=not isinstance(exc, ConfigurationError))

    def _read_failed(self, exc: Exception) -> bool:
        """Record a failed read; ``True`` when the entry itself is bad and should go."""
        corrupt = isinstance(exc, CorruptEntryError)  # bad data, not a failing store
        self.failed("get", exc, unhealthy=not corrupt)
        return corrupt

    def _unreachable(self, operation: str, exc: Exception) -> BackendError:
        if not isinstance(exc, (ConfigurationError, Turned)):
            self.breaker.failed()
        self._stats.error()
        return BackendError(
            f"{operation} on {self.store!r} failed for {self._name}, so the entries may "
            f"still be there: {type(exc).__name__}: {exc}"
        )

    # -- reads: the hit path, so the breaker costs one attribute test when closed --

    def get(self, key: str) -> str | None:
        breaker = self.breaker
        if breaker.open_until and self._skipped("get"):
            return None
        try:
            text = self._get(key)
        except Exception as exc:  # noqa: BLE001  (see the module docstring)
            if self._read_failed(exc):
                self.delete(key)
            return None
        if breaker.consecutive:
            breaker.succeeded()
        return text

    async def aget(self, key: str) -> str | None:
        breaker, reads = self.breaker, self._reads
        if breaker.open_until and not self._joins_a_batch(reads) and self._skipped("get"):
            return None
        if reads is not None:
            failures = self._failures
            text = await reads.read(key)
            if text is None and self._failures != failures:
                # Read in another task, whose failure was counted there: this
                # call's event must still say the store failed to answer it
                # (during a concurrent failure, a true miss may be told so too).
                note_error()
            return text
        try:
            text = await self._aget(key)
        except Exception as exc:  # noqa: BLE001
            if self._read_failed(exc):
                await self.adelete(key)
            return None
        if breaker.consecutive:
            breaker.succeeded()
        return text

    def get_with_ttl(self, key: str) -> Entry | None:
        """The entry and its remaining TTL, for a store that ``reads_ttl`` (tiers ask once)."""
        read = self._ops.get_with_ttl
        if read is None or self._skipped("get"):
            return None
        try:
            entry = _checked_entry(read(key))
        except Exception as exc:  # noqa: BLE001
            if self._read_failed(exc):
                self.delete(key)
            return None
        self._succeeded()
        return entry

    async def aget_with_ttl(self, key: str) -> Entry | None:
        read, reads = self._ops.aget_with_ttl, self._reads_with_ttl
        if read is None or (not self._joins_a_batch(reads) and self._skipped("get")):
            return None
        if reads is not None:
            return await reads.read(key)
        return await self._aget_with_ttl_one(key)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys or self._skipped("get_many"):
            return [None] * len(keys)
        try:
            texts = _checked_texts(self._ops.get_many(keys), keys)
        except Exception as exc:  # noqa: BLE001
            self.failed("get_many", exc, unhealthy=not isinstance(exc, CorruptEntryError))
            return [None] * len(keys)
        self._succeeded()
        return texts

    async def aget_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys or self._skipped("get_many"):
            return [None] * len(keys)
        try:
            texts = _checked_texts(await self._ops.aget_many(keys), keys)
        except Exception as exc:  # noqa: BLE001
            self.failed("get_many", exc, unhealthy=not isinstance(exc, CorruptEntryError))
            return [None] * len(keys)
        self._succeeded()
        return texts

    # -- coalesced reads: single reads made while one is in flight, as one bulk read --

    async def _aget_batch(self, keys: Sequence[str]) -> list[str | None]:
        return await self._read_batch(self._ops.aget_many, _checked_texts, self._aget_one, keys)

    async def _aget_with_ttl_batch(self, keys: Sequence[str]) -> list[Entry | None]:
        read_many = self.store.aget_many_with_ttl  # type: ignore[attr-defined]  # see __init__
        return await self._read_batch(read_many, _checked_entries, self._aget_with_ttl_one, keys)

    async def _read_batch(
        self,
        read_many: Callable[[Sequence[str]], Awaitable[object]],
        checked: Callable[[object, Sequence[str]], list[A | None]],
        read_one: Callable[[str], Awaitable[A | None]],
        keys: Sequence[str],
    ) -> list[A | None]:
        """One bulk read, guarded as one read: a failure is one failure, and all miss.

        A bulk read that finds a corrupt entry cannot say whose it is: then
        each key is read on its own, as it would have been, and a corrupt
        entry is deleted.

        A bulk read may fail where single reads would not: its whole reply is
        due within one read's timeout (a thousand large entries are not), and
        on a Cluster one stalled node fails it for every node. So a failed
        bulk read of several keys is followed by a few single reads, quietly:
        if one answers, the store is up, and each key is read on its own (a
        failure then is its key's); if none does, the store is down and all
        miss, at the cost of one more timeout.
        """
        import asyncio  # noqa: PLC0415  (loaded by now: this runs on a loop)

        if self.breaker.open_until and self._skipped("get"):  # its probe, just before, failed
            return [None] * len(keys)
        try:
            answers = checked(await read_many(keys), keys)
        except CorruptEntryError:
            return list(await asyncio.gather(*(read_one(key) for key in keys)))
        except Exception as exc:  # noqa: BLE001  (see the module docstring)
            self.failed("get", exc)
            if len(keys) > 1 and not self.breaker.is_open and await self._answers(keys):
                return list(await asyncio.gather(*(read_one(key) for key in keys)))
            return [None] * len(keys)
        self._succeeded()
        return answers

    async def _answers(self, keys: Sequence[str]) -> bool:
        """Whether the store answers a single read of any of a few of ``keys`` (see above)."""
        import asyncio  # noqa: PLC0415  (loaded by now: this runs on a loop)

        async def answers(key: str) -> bool:
            try:
                await self._aget(key)
            except Exception:  # noqa: BLE001  (a probe: the bulk read's failure was counted)
                return False
            return True

        step = max(1, len(keys) // _PROBES)  # spread out: on a Cluster, over several nodes
        return any(await asyncio.gather(*(answers(key) for key in keys[::step][:_PROBES])))

    async def _aget_one(self, key: str) -> str | None:
        # aget's own body, which keeps it inline: it is the hit path of every store.
        try:
            text = await self._aget(key)
        except Exception as exc:  # noqa: BLE001
            if self._read_failed(exc):
                await self.adelete(key)
            return None
        self._succeeded()
        return text

    async def _aget_with_ttl_one(self, key: str) -> Entry | None:
        read = self._ops.aget_with_ttl
        try:
            entry = _checked_entry(await read(key)) if read is not None else None
        except Exception as exc:  # noqa: BLE001
            if self._read_failed(exc):
                await self.adelete(key)
            return None
        self._succeeded()
        return entry

    # -- writes ------------------------------------------------------------------
    # ``explicit``: a write the user asked for (refresh), which goes to the
    # store even while the breaker is open, paying its timeout at most.

    def _wrote(self) -> None:
        """A write begins: a coalesced read sent before it must not answer a call made after."""
        for reads in (self._reads, self._reads_with_ttl):
            if reads is not None:
                reads.wrote()

    def set(self, key: str, value: str, ttl: float | None, *, explicit: bool = False) -> None:
        self._wrote()
        if explicit or not self._skipped("set"):
            try:
                self._ops.set(key, value, ttl)
            except Exception as exc:  # noqa: BLE001
                self._write_failed("set", exc)
            else:
                self._succeeded()

    async def aset(
        self, key: str, value: str, ttl: float | None, *, explicit: bool = False
    ) -> None:
        self._wrote()
        if explicit or not self._skipped("set"):
            try:
                await (self._ops.aset_explicit if explicit else self._ops.aset)(key, value, ttl)
            except Exception as exc:  # noqa: BLE001
                self._write_failed("set", exc)
            else:
                self._succeeded()

    def set_many(self, items: Mapping[str, str], ttl: float | None) -> None:
        self._wrote()
        if items and not self._skipped("set_many"):
            try:
                self._ops.set_many(items, ttl)
            except Exception as exc:  # noqa: BLE001
                self._write_failed("set_many", exc)
            else:
                self._succeeded()

    async def aset_many(self, items: Mapping[str, str], ttl: float | None) -> None:
        self._wrote()
        if items and not self._skipped("set_many"):
            try:
                await self._ops.aset_many(items, ttl)
            except Exception as exc:  # noqa: BLE001
                self._write_failed("set_many", exc)
            else:
                self._succeeded()

    def delete(self, key: str, *, explicit: bool = False) -> bool:
        self._wrote()
        if explicit or not self._skipped("delete"):
            try:
                deleted = bool(self._ops.delete(key))
            except Exception as exc:  # noqa: BLE001
                self._write_failed("delete", exc)
            else:
                self._succeeded()
                return deleted
        return False

    async def adelete(self, key: str, *, explicit: bool = False) -> bool:
        self._wrote()
        if explicit or not self._skipped("delete"):
            try:
                delete = self._ops.adelete_explicit if explicit else self._ops.adelete
                deleted = bool(await delete(key))
            except Exception as exc:  # noqa: BLE001
                self._write_failed("delete", exc)
            else:
                self._succeeded()
                return deleted
        return False

    # -- the lock under which one process computes an entry ------------------------
    # ``None``: no lock to be had (the store has none, the breaker is open, or
    # the store failed), so the caller computes without waiting. Never raises.

    def recheck(self, key: str) -> str | None:
        """The entry, read again by a caller waiting on (or just given) the store's lock."""
        return self.get(key)

    async def arecheck(self, key: str) -> str | None:
        # Not coalesced: a read of the key begun before another process stored
        # it (and let its lock go) would answer this recheck with a stale miss.
        if self.breaker.open_until and self._skipped("get"):
            return None
        return await self._aget_one(key)

    def _failing(self) -> bool:
        """No lock is asked of a store whose last operation failed, or whose breaker is open.

        The call goes on without one (it computes), and a store that is down
        costs it no second timeout: the lock is an optimisation, never a cost.
        """
        breaker = self.breaker
        return bool(breaker.open_until or breaker.consecutive)

    def lock(self, key: str, token: str, ttl: float) -> bool | None:
        take, release = self._ops.lock, self._ops.unlock
        if take is None or release is None or self._failing():
            return None
        try:
            unsure = self._unsure.pop(key, None)
            if unsure is not None:
                _checked_answer("unlock", release(key, unsure))
            held = _checked_answer("lock", take(key, token, ttl))
        except Exception as exc:  # noqa: BLE001
            self._remember_unsure(key, token)
            self.failed("lock", exc)
            return None
        self._succeeded()
        return held

    async def alock(self, key: str, token: str, ttl: float) -> bool | None:
        take, release = self._ops.alock, self._ops.aunlock
        if take is None or release is None or self._failing():
            return None
        try:
            unsure = self._unsure.pop(key, None)
            if unsure is not None:
                _checked_answer("unlock", await release(key, unsure))
            held = _checked_answer("lock", await take(key, token, ttl))
        except Exception as exc:  # noqa: BLE001
            self._remember_unsure(key, token)
            self.failed("lock", exc)
            return None
        self._succeeded()
        return held

    def _remember_unsure(self, key: str, token: str) -> None:
        # The latest token of a key: its earlier one, if any, was let go or failed the same way
        # (and then expires with its TTL). Bounded: a store down for long forgets the oldest.
        self._unsure.pop(key, None)
        self._unsure[key] = token
        if len(self._unsure) > _UNSURE_REMEMBERED:
            # Another thread may change it meanwhile: then this one drops nothing.
            with contextlib.suppress(RuntimeError, StopIteration):
                self._unsure.pop(next(iter(self._unsure)), None)

    def unlock(self, key: str, token: str) -> None:
        release = self._ops.unlock
        if release is not None and not self._skipped("unlock"):
            try:
                _checked_answer("unlock", release(key, token))
            except Exception as exc:  # noqa: BLE001
                self.failed("unlock", exc)
            else:
                self._succeeded()

    async def aunlock(self, key: str, token: str) -> None:
        release = self._ops.aunlock
        if release is not None and not self._skipped("unlock"):
            try:
                _checked_answer("unlock", await release(key, token))
            except Exception as exc:  # noqa: BLE001
                self.failed("unlock", exc)
            else:
                self._succeeded()

    # -- explicit operations: whatever the breaker says, and they raise ------------

    def invalidate(self, key: str) -> bool:
        """Delete ``key``; raise ``BackendError`` if that failed (a silent ``False`` would lie)."""
        return bool(self._explicitly("invalidate", self._ops.delete, key))

    async def ainvalidate(self, key: str) -> bool:
        return bool(await self._aexplicitly("invalidate", self._ops.adelete_explicit, key))

    def clear_prefix(self, prefix: str) -> int:
        """Remove the keys under ``prefix``; raise ``BackendError`` if the store failed."""
        return int(self._explicitly("cache_clear", self._ops.clear_prefix, prefix))

    async def aclear_prefix(self, prefix: str) -> int:
        clear = self._ops.aclear_prefix_explicit
        return int(await self._aexplicitly("cache_clear", clear, prefix))

    # A ConfigurationError (a RedisCache asked to clear a database it cannot
    # tell its keys in) is raised as it is: its message says what to change.
    def _explicitly(self, operation: str, call: Callable[[str], T], argument: str) -> T:
        self._wrote()
        try:
            result = call(argument)
        except ConfigurationError:
            self._stats.error()
            raise
        except Exception as exc:
            raise self._unreachable(operation, exc) from exc
        return self._succeeded_with(result)

    async def _aexplicitly(
        self, operation: str, call: Callable[[str], Awaitable[T]], argument: str
    ) -> T:
        self._wrote()
        try:
            result = await call(argument)
        except ConfigurationError:
            self._stats.error()
            raise
        except Exception as exc:
            raise self._unreachable(operation, exc) from exc
        return self._succeeded_with(result)

    def _succeeded_with(self, result: T) -> T:
        self._succeeded()
        return result

    # -- cache_info ----------------------------------------------------------------

    def size(self) -> tuple[int | None, int | None]:
        """The store's ``(maxsize, currsize)``, ``None`` where it cannot tell.

        Asking is not using the cache, so a failure here is not counted.
        """
        sized = self._ops.sized
        if sized is None:
            return None, None
        try:
            maxsize = sized.maxsize
        except Exception:  # noqa: BLE001  (a property that asks an unreachable server)
            maxsize = None
        try:
            currsize: int | None = len(sized)
        except Exception:  # noqa: BLE001  (unreachable)
            currsize = None
        return (maxsize if isinstance(maxsize, int) else None), currsize

    def tier_infos(self) -> tuple[CacheInfo, ...]:
        """A single store has no tiers."""
        return ()

    def reset_stats(self) -> None:
        """Nothing of its own: a single store counts into the function's statistics."""

    def tier_stats(self) -> tuple[Stats, ...]:
        """A single store has no tiers (it counts into the function's statistics)."""
        return ()


_UNSURE_REMEMBERED = 4096
_PROBES = 8  # single reads that tell a failed bulk read's store is up (see _read_batch)

# What the caller gets after a failed operation, for the log.
_WHAT_FOLLOWS = {
    "set": "so the result is returned but not stored",
    "set_many": "so the results are returned but not stored",
    "delete": "so the entry may still be there",
    "lock": "so the function is called without waiting for another process to compute it",
    "unlock": "so the lock stays until its TTL ends",
}


def _checked_answer(operation: str, answer: object) -> bool:
    """A ``lock``/``unlock`` answer that is a bool, else ``TypeError`` (a counted failure).

    Anything else (a reply object, ``None``) must not read as "held elsewhere", which
    would make the caller wait for nothing.
    """
    if isinstance(answer, bool):
        return answer
    raise TypeError(f"{operation} must return True or False, got {answer!r:.200}")


def _checked_entry(entry: object) -> Entry | None:
    """A ``get_with_ttl`` answer of the documented shape, else ``TypeError`` (a counted miss)."""
    if entry is None:
        return None
    if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
        text, seconds = entry
        if seconds is None:
            return text, None
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            seconds = float(seconds)
            if not math.isnan(seconds):  # infinity is no expiry
                return text, (None if seconds == math.inf else seconds)
    raise TypeError(f"get_with_ttl must return None or (text, seconds or None), got {entry!r}")


def _checked_texts(texts: object, keys: Sequence[str]) -> list[str | None]:
    """A ``get_many`` answer of one text or ``None`` per key, else ``TypeError`` (all miss)."""
    if isinstance(texts, list) and len(texts) == len(keys):
        return [text if isinstance(text, str) else None for text in texts]
    raise TypeError(f"get_many must return a list of {len(keys)} texts or None, got {texts!r:.200}")


def _checked_entries(entries: object, keys: Sequence[str]) -> list[Entry | None]:
    """A ``get_many_with_ttl`` answer: one ``get_with_ttl`` answer per key, else ``TypeError``."""
    if isinstance(entries, list) and len(entries) == len(keys):
        return [_checked_entry(entry) for entry in entries]
    raise TypeError(
        f"get_many_with_ttl must return a list of {len(keys)} entries, got {entries!r:.200}"
    )


_LOOP_TEARDOWN = ("GeneratorExit", "no running event loop", "Event loop is closed")


def _torn_down_with_its_loop(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _LOOP_TEARDOWN)
