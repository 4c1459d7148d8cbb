"""The async adapter: every store gets the full sync and async surface, chosen once.

For each operation the guard may need, ``adapt`` picks, when a function is
decorated, how to run it:

- native: the store's own ``a``-method (Redis's event-loop client; a memory
  store's, which nothing makes wait, so it runs inline in the caller's loop);
- worker thread: a store without async twins blocks on I/O (SQLite, a
  user's client), so its sync method runs on a thread that belongs to the
  store and the event loop is never blocked;
- fallback for an optional capability the store lacks: ``get_many`` and
  ``set_many`` become one call per key; ``get_with_ttl`` is absent (``None``),
  which tiers read as "cannot tell" and do not backfill from; so are the
  lock operations, which the guard reads as "no lock to be had".

So a user's blocking store gets async for free, and the guard and the
drivers never ask a store what it can do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from instructor_cache.backends._contract import (
    AsyncBulkStore,
    AsyncLockingStore,
    AsyncReadsWithTTL,
    AsyncStore,
    BulkStore,
    LockingStore,
    ReadsWithTTL,
    SizedStore,
    Store,
)
from instructor_cache.backends._registry import PerObject

if TYPE_CHECKING:  # asyncio and its executors load on the first async call, not on import
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["Adapted", "Turned", "adapt", "in_worker"]

T = TypeVar("T")
Entry = tuple[str, float | None]


@dataclass(frozen=True, slots=True)
class Adapted:
    """A store's operations, each resolved to a callable the guard calls without asking."""

    store: Store
    get: Callable[[str], str | None]
    set: Callable[[str, str, float | None], None]
    delete: Callable[[str], bool]
    clear_prefix: Callable[[str], int]
    get_many: Callable[[Sequence[str]], list[str | None]]
    set_many: Callable[[Mapping[str, str], float | None], None]
    aget: Callable[[str], Awaitable[str | None]]
    aset: Callable[[str, str, float | None], Awaitable[None]]
    adelete: Callable[[str], Awaitable[bool]]
    aclear_prefix: Callable[[str], Awaitable[int]]
    # The same, for operations a caller asked for by name (refresh, invalidate,
    # cache_clear): never turned away while queued, whatever the breaker did.
    aset_explicit: Callable[[str, str, float | None], Awaitable[None]]
    adelete_explicit: Callable[[str], Awaitable[bool]]
    aclear_prefix_explicit: Callable[[str], Awaitable[int]]
    aget_many: Callable[[Sequence[str]], Awaitable[list[str | None]]]
    aset_many: Callable[[Mapping[str, str], float | None], Awaitable[None]]
    # None where the store cannot tell an entry's remaining TTL in its read.
    get_with_ttl: Callable[[str], Entry | None] | None
    aget_with_ttl: Callable[[str], Awaitable[Entry | None]] | None
    # None where the store has no lock shared between processes.
    lock: Callable[[str, str, float], bool] | None
    unlock: Callable[[str, str], bool] | None
    alock: Callable[[str, str, float], Awaitable[bool]] | None
    aunlock: Callable[[str, str], Awaitable[bool]] | None
    sized: SizedStore | None


class Turned(Exception):  # noqa: N818  (not an error of the store: a decision not to ask it)
    """An operation that waited for the worker thread and found it should not run after all."""


def adapt(store: Store, watch: Callable[[], Callable[[], bool]] | None = None) -> Adapted:
    """Resolve every operation of ``store`` once: native, on its worker thread, or a fallback.

    ``watch()`` is called when an operation is queued for the worker thread
    and returns a check asked just before it runs there: operations that
    queued behind a store found failing since (a locked database, each
    costing its timeout) are turned away with ``Turned`` instead of paying
    that timeout one after another, while an operation let through as it
    stands (a probe, an explicit one) still runs.
    """
    native = isinstance(store, AsyncStore)
    get_many: Callable[[Sequence[str]], list[str | None]]
    set_many: Callable[[Mapping[str, str], float | None], None]
    aget_many: Callable[[Sequence[str]], Awaitable[list[str | None]]]
    aset_many: Callable[[Mapping[str, str], float | None], Awaitable[None]]
    if isinstance(store, BulkStore):
        get_many, set_many = store.get_many, store.set_many
    else:
        get_many, set_many = _one_by_one(store)
    with_ttl = store.get_with_ttl if isinstance(store, ReadsWithTTL) else None

    def threaded(fn: Callable[..., T], *, watched: bool = True) -> Callable[..., Awaitable[T]]:
        if watch is None or not watched:

            async def in_thread(*args: Any) -> T:
                return await in_worker(store, fn, *args)

            return in_thread

        def checked(still_wanted: Callable[[], bool], *args: Any) -> T:
            if not still_wanted():
                raise Turned(f"{store!r} was found failing while this operation waited for it")
            return fn(*args)

        async def in_thread_if_wanted(*args: Any) -> T:
            return await in_worker(store, checked, watch(), *args)

        return in_thread_if_wanted

    aget_with_ttl: Callable[[str], Awaitable[Entry | None]] | None = None
    if isinstance(store, AsyncReadsWithTTL):
        aget_with_ttl = store.aget_with_ttl
    elif with_ttl is not None:
        aget_with_ttl = threaded(with_ttl)
    lock: Callable[[str, str, float], bool] | None = None
    unlock: Callable[[str, str], bool] | None = None
    alock: Callable[[str, str, float], Awaitable[bool]] | None = None
    aunlock: Callable[[str, str], Awaitable[bool]] | None = None
    if isinstance(store, LockingStore):
        lock, unlock = store.lock, store.unlock
        if isinstance(store, AsyncLockingStore):
            alock, aunlock = store.alock, store.aunlock
        else:
            alock, aunlock = threaded(store.lock), threaded(store.unlock)
    if isinstance(store, AsyncBulkStore):
        aget_many, aset_many = store.aget_many, store.aset_many
    elif native and not isinstance(store, BulkStore):
        aget_many, aset_many = _one_by_one_async(store)  # type: ignore[arg-type]  # native: an AsyncStore
    else:
        aget_many, aset_many = threaded(get_many), threaded(set_many)
    if native:
        aget, aset = store.aget, store.aset  # type: ignore[attr-defined]  # AsyncStore
        adelete, aclear_prefix = store.adelete, store.aclear_prefix  # type: ignore[attr-defined]
        explicit = (aset, adelete, aclear_prefix)
    else:
        aget, aset = threaded(store.get), threaded(store.set)
        adelete, aclear_prefix = threaded(store.delete), threaded(store.clear_prefix)
        explicit = (
            threaded(store.set, watched=False),
            threaded(store.delete, watched=False),
            threaded(store.clear_prefix, watched=False),
        )
    return Adapted(
        store=store,
        get=store.get,
        set=store.set,
        delete=store.delete,
        clear_prefix=store.clear_prefix,
        get_many=get_many,
        set_many=set_many,
        aget=aget,
        aset=aset,
        adelete=adelete,
        aclear_prefix=aclear_prefix,
        aset_explicit=explicit[0],
        adelete_explicit=explicit[1],
        aclear_prefix_explicit=explicit[2],
        aget_many=aget_many,
        aset_many=aset_many,
        get_with_ttl=with_ttl,
        aget_with_ttl=aget_with_ttl,
        lock=lock,
        unlock=unlock,
        alock=alock,
        aunlock=aunlock,
        sized=_sized(store),
    )


def _sized(store: Store) -> SizedStore | None:
    try:  # the check reads ``maxsize``, which a store may compute by asking its server
        return store if isinstance(store, SizedStore) else None
    except Exception:  # noqa: BLE001  (then it cannot tell its size: None, as documented)
        return None


def _one_by_one(
    store: Store,
) -> tuple[
    Callable[[Sequence[str]], list[str | None]], Callable[[Mapping[str, str], float | None], None]
]:
    def get_many(keys: Sequence[str]) -> list[str | None]:
        return [store.get(key) for key in keys]

    def set_many(items: Mapping[str, str], ttl: float | None) -> None:
        for key, value in items.items():
            store.set(key, value, ttl)

    return get_many, set_many


def _one_by_one_async(
    store: AsyncStore,
) -> tuple[
    Callable[[Sequence[str]], Awaitable[list[str | None]]],
    Callable[[Mapping[str, str], float | None], Awaitable[None]],
]:
    import asyncio  # noqa: PLC0415  (see in_worker)

    async def aget_many(keys: Sequence[str]) -> list[str | None]:
        return list(await asyncio.gather(*(store.aget(key) for key in keys)))

    async def aset_many(items: Mapping[str, str], ttl: float | None) -> None:
        await asyncio.gather(*(store.aset(key, value, ttl) for key, value in items.items()))

    return aget_many, aset_many


# One worker thread per store, shared by every function decorated over it:
# a store whose connections are per thread (SQLite's) then holds one more
# connection, not one per function.
_workers: PerObject[ThreadPoolExecutor] = PerObject(forget_in_child=True)


async def in_worker(store: object, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on ``store``'s worker thread, awaited without blocking the loop."""
    import asyncio  # noqa: PLC0415  (already loaded by whoever runs a loop; not by an import)

    worker = _workers.get(store, lambda: _new_worker(store))
    return await asyncio.get_running_loop().run_in_executor(worker, fn, *args)


def _new_worker(store: object) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415  (see in_worker)

    return ThreadPoolExecutor(1, thread_name_prefix=f"instructor_cache-{type(store).__name__}")
