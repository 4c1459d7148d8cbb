"""The conformance suite a store runs to show it keeps the store contract.

A store author subclasses ``StoreContract`` in their own tests and gives it a
``store`` fixture that returns a fresh, empty store with no default TTL::

    import pytest
    from instructor_cache.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            return MyStore()

Every test of the required methods runs; a test of an optional capability
(``get_with_ttl``, ``get_many``/``set_many``, a size, locks, async twins) is skipped,
saying which, when the store lacks it. A store whose keys live on a shared
server passes as long as the fixture gives it a namespace of its own (a fresh
key prefix): ``clear_prefix("")`` must then clear only that namespace.

It needs pytest (not pytest-asyncio: each async test runs one ``asyncio.run``).
The few tests that see a TTL expire sleep half a second each.
"""

# ruff: noqa: S101  (a test suite: its checks are asserts, which pytest rewrites)

from __future__ import annotations

import asyncio
import time

import pytest

from instructor_cache.backends._async import adapt
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

__all__ = ["StoreContract"]

# Keys a store must keep apart and clear literally: separators, glob and
# LIKE wildcards, escapes, and text outside ASCII.
ODD_KEYS = ("a:b", "a*", "a?", "a[b]", "a[", "a\\", "a%", "a_", "a b", "ä€𝄞")
SHORT_TTL, EXPIRY_WAIT = 0.3, 0.5
# A lock's TTL in the test that waits for one to expire, and how long it may take at most.
LOCK_TTL, LOCK_EXPIRY_BOUND = 0.2, 10.0


def _require(store: object, capability: type, what: str) -> None:
    """Skip the calling test unless ``store`` has ``capability``: it is optional."""
    if not isinstance(store, capability):
        pytest.skip(f"{type(store).__name__} has no {what} ({capability.__name__}), an option")


class StoreContract:
    """Tests every store must pass; subclass it and define a ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Store:
        """A fresh, empty store with no default TTL: override this in the subclass."""
        raise NotImplementedError("define a `store` fixture returning a fresh, empty store")

    def test_store_satisfies_the_store_protocol(self, store: Store) -> None:
        """The store has the four required methods of ``instructor_cache.Store``."""
        assert isinstance(store, Store)

    def test_absent_key_reads_as_none(self, store: Store) -> None:
        """A key never written reads as None."""
        assert store.get("never-written") is None

    def test_set_then_get_returns_the_text_and_delete_removes_it(self, store: Store) -> None:
        """A written text reads back exactly, and is gone once deleted."""
        store.set("k", "value")
        assert store.get("k") == "value"
        store.delete("k")
        assert store.get("k") is None

    def test_delete_says_whether_there_was_an_entry(self, store: Store) -> None:
        """delete returns True for a stored key and False for an absent one."""
        store.set("k", "v")
        assert store.delete("k") is True
        assert store.delete("k") is False
        assert store.delete("never-written") is False

    def test_set_overwrites_an_existing_entry(self, store: Store) -> None:
        """A second write under a key replaces the first."""
        store.set("k", "first")
        store.set("k", "second")
        assert store.get("k") == "second"

    def test_empty_string_is_a_value_not_a_miss(self, store: Store) -> None:
        """An empty text is stored and read back as "", never as None."""
        store.set("k", "")
        assert store.get("k") == ""

    def test_large_unicode_value_comes_back_exactly(self, store: Store) -> None:
        """A text of a few megabytes, with non-ASCII text and line endings, round-trips exactly."""
        value = "ü\u2603𝄞\r\n" * 400_000 + "end"
        store.set("big", value)
        assert store.get("big") == value

    def test_odd_keys_are_distinct_keys(self, store: Store) -> None:
        """Keys with separators, glob and LIKE wildcards or escapes are stored as themselves."""
        for key in ODD_KEYS:
            store.set(key, f"value of {key}")
        assert [store.get(key) for key in ODD_KEYS] == [f"value of {key}" for key in ODD_KEYS]
        assert store.get("a") is None
        assert store.get("ab") is None

    def test_entry_expires_after_its_ttl_and_none_means_never(self, store: Store) -> None:
        """An entry set with a TTL is gone after it, and one set with ttl=None is not."""
        store.set("short", "v", ttl=SHORT_TTL)
        store.set("forever", "v", ttl=None)
        store.set("long", "v", ttl=600.0)
        assert store.get("short") == "v"
        time.sleep(EXPIRY_WAIT)
        assert store.get("short") is None
        assert store.get("forever") == "v"
        assert store.get("long") == "v"

    def test_clear_prefix_removes_exactly_the_prefixed_keys(self, store: Store) -> None:
        """clear_prefix removes the keys that start with the prefix and counts them."""
        keys = ["ns:f:1", "ns:f:2", "ns:fg:1", "ns:g:1", "ns:f", "other"]
        for key in keys:
            store.set(key, key)
        assert store.clear_prefix("ns:f:") == 2
        remaining = [key for key in keys if store.get(key) is not None]
        assert remaining == ["ns:fg:1", "ns:g:1", "ns:f", "other"]
        assert store.clear_prefix("nothing-here:") == 0

    def test_clear_prefix_treats_wildcards_literally(self, store: Store) -> None:
        """A prefix with glob or LIKE wildcards removes only keys that start with it literally."""
        for key in (*ODD_KEYS, "ab", "a"):
            store.set(key, key)
        for prefix in ("a*", "a?", "a[", "a\\", "a%", "a_"):
            expected = sum(key.startswith(prefix) for key in ODD_KEYS)
            assert store.clear_prefix(prefix) == expected, prefix
        assert store.get("ab") == "ab"
        assert store.get("a") == "a"
        assert store.get("a:b") == "a:b"

    def test_clear_prefix_of_empty_string_removes_everything(self, store: Store) -> None:
        """clear_prefix("") removes every key of the store and counts them."""
        for key in ("x", "y:z", "ä"):
            store.set(key, key)
        assert store.clear_prefix("") == 3
        assert [store.get(key) for key in ("x", "y:z", "ä")] == [None, None, None]

    def test_get_with_ttl_tells_the_remaining_ttl(self, store: Store) -> None:
        """get_with_ttl returns the text and about the TTL left, None for no expiry or no entry."""
        _require(store, ReadsWithTTL, "get_with_ttl")
        assert isinstance(store, ReadsWithTTL)
        store.set("k", "v", ttl=60.0)
        store.set("forever", "w", ttl=None)
        found = store.get_with_ttl("k")
        assert found is not None
        assert found[0] == "v"
        assert found[1] is not None
        assert 50.0 < found[1] <= 60.0
        assert store.get_with_ttl("forever") == ("w", None)
        assert store.get_with_ttl("never-written") is None

    def test_get_with_ttl_counts_down_and_forgets_expired_entries(self, store: Store) -> None:
        """The TTL told is what is left, not what was set; an expired entry is absent."""
        _require(store, ReadsWithTTL, "get_with_ttl")
        assert isinstance(store, ReadsWithTTL)
        store.set("k", "v", ttl=SHORT_TTL)
        store.set("long", "w", ttl=60.0)
        time.sleep(EXPIRY_WAIT)
        assert store.get_with_ttl("k") is None
        found = store.get_with_ttl("long")
        assert found is not None
        assert found[1] is not None
        # A copy made from this answer must not outlive the original.
        assert 50.0 < found[1] <= 60.0 - EXPIRY_WAIT + 0.05

    def test_get_many_answers_in_key_order(self, store: Store) -> None:
        """get_many returns each key's text or None, in the order asked, duplicates included."""
        _require(store, BulkStore, "get_many/set_many")
        assert isinstance(store, BulkStore)
        store.set("a", "1")
        store.set("b", "2")
        assert store.get_many(["b", "missing", "a", "b"]) == ["2", None, "1", "2"]
        assert store.get_many([]) == []

    def test_set_many_stores_every_item_with_the_ttl(self, store: Store) -> None:
        """set_many stores each item, overwriting, and applies its TTL to all of them."""
        _require(store, BulkStore, "get_many/set_many")
        assert isinstance(store, BulkStore)
        store.set("a", "old")
        store.set_many({"a": "1", "b": "2"}, ttl=SHORT_TTL)
        store.set_many({"c": ""})
        store.set_many({})
        assert store.get_many(["a", "b", "c"]) == ["1", "2", ""]
        time.sleep(EXPIRY_WAIT)
        assert store.get_many(["a", "b", "c"]) == [None, None, ""]

    def test_len_counts_the_entries(self, store: Store) -> None:
        """A sized store counts its entries and its maxsize, if any, bounds them."""
        _require(store, SizedStore, "size")
        assert isinstance(store, SizedStore)
        assert len(store) == 0
        for key in ("a", "b", "c"):
            store.set(key, key)
        store.delete("b")
        assert len(store) == 2
        assert store.maxsize is None or store.maxsize >= 2

    def test_async_twins_match_the_sync_methods(self, store: Store) -> None:
        """aget, aset, adelete and aclear_prefix do what their sync twins do."""
        _require(store, AsyncStore, "async twins")
        assert isinstance(store, AsyncStore)
        native = store

        async def scenario() -> None:
            await native.aset("p:a", "1")
            await native.aset("p:b", "2", ttl=600.0)
            await native.aset("q", "3")
            assert await native.aget("p:a") == "1"
            assert await native.aget("missing") is None
            assert await native.adelete("p:a") is True
            assert await native.adelete("p:a") is False
            assert await native.aclear_prefix("p:") == 1
            assert await native.aget("q") == "3"

        asyncio.run(scenario())
        assert store.get("q") == "3"
        assert store.get("p:b") is None

    def test_async_get_with_ttl_matches_the_sync_one(self, store: Store) -> None:
        """aget_with_ttl returns what get_with_ttl does."""
        _require(store, AsyncReadsWithTTL, "aget_with_ttl")
        assert isinstance(store, AsyncReadsWithTTL)
        reads = store
        store.set("k", "v", ttl=60.0)
        store.set("forever", "w")

        async def scenario() -> list[tuple[str, float | None] | None]:
            return [await reads.aget_with_ttl(key) for key in ("k", "forever", "missing")]

        found, forever, missing = asyncio.run(scenario())
        assert found is not None
        assert found[0] == "v"
        assert found[1] is not None
        assert 50.0 < found[1] <= 60.0
        assert (forever, missing) == (("w", None), None)

    def test_async_bulk_twins_match_the_sync_ones(self, store: Store) -> None:
        """aset_many stores every item with its TTL and aget_many reads them back in key order."""
        _require(store, AsyncBulkStore, "aget_many/aset_many")
        assert isinstance(store, AsyncBulkStore)
        bulk = store

        async def scenario() -> list[str | None]:
            await bulk.aset_many({"a": "1", "b": "2"}, ttl=60.0)
            return await bulk.aget_many(["b", "missing", "a", "b"])

        assert asyncio.run(scenario()) == ["2", None, "1", "2"]
        assert store.get("a") == "1"
        if isinstance(store, ReadsWithTTL):
            found = store.get_with_ttl("a")
            assert found is not None
            assert found[1] is not None
            assert 50.0 < found[1] <= 60.0

    def test_async_callers_reach_the_same_entries_through_the_adapter(self, store: Store) -> None:
        """Whatever async twins it has, an async function's calls see what sync calls stored.

        This is the path a decorated async function takes: the store's own
        async methods, or its sync ones on a worker thread of its own.
        """
        ops = adapt(store)
        store.set("p:a", "1")

        async def scenario() -> list[str | None]:
            await ops.aset("p:b", "2", None)
            await ops.aset_many({"p:c": "3"}, None)
            found = [await ops.aget("p:a"), *(await ops.aget_many(["p:b", "p:c", "p:x"]))]
            assert await ops.adelete("p:a") is True
            assert await ops.aclear_prefix("p:") == 2
            return found

        assert asyncio.run(scenario()) == ["1", "2", "3", None]
        assert store.get("p:b") is None

    def test_async_writes_expire_after_their_ttl(self, store: Store) -> None:
        """An entry written by an async caller, alone or in bulk, expires like a sync one."""
        ops = adapt(store)

        async def write() -> None:
            await ops.aset("one", "1", SHORT_TTL)
            await ops.aset_many({"many": "2"}, SHORT_TTL)
            await ops.aset("kept", "3", None)

        asyncio.run(write())
        assert store.get("one") == "1"
        time.sleep(EXPIRY_WAIT)
        assert [store.get(key) for key in ("one", "many", "kept")] == [None, None, "3"]

    def test_lock_is_exclusive_and_released_only_by_its_holder(self, store: Store) -> None:
        """A held lock is refused to another token, released by its holder's token alone."""
        _require(store, LockingStore, "lock/unlock")
        assert isinstance(store, LockingStore)
        assert store.lock("k", "a", 60.0) is True
        assert store.lock("k", "a", 60.0) is True  # its holder, asking again after a lost reply
        assert store.lock("k", "b", 60.0) is False
        assert store.unlock("k", "b") is False
        assert store.lock("k", "b", 60.0) is False
        assert store.lock("other", "b", 60.0) is True  # each key has its own lock
        assert store.unlock("k", "a") is True
        assert store.unlock("k", "a") is False
        assert store.lock("k", "b", 60.0) is True
        assert store.unlock("never-locked", "a") is False

    def test_lock_frees_itself_after_its_ttl(self, store: Store) -> None:
        """A lock never released frees itself after its TTL; its old holder cannot free the next."""
        _require(store, LockingStore, "lock/unlock")
        assert isinstance(store, LockingStore)
        assert store.lock("k", "dead", LOCK_TTL) is True
        assert store.lock("k", "next", 60.0) is False
        deadline = time.monotonic() + LOCK_EXPIRY_BOUND
        while not store.lock("k", "next", 60.0):
            assert time.monotonic() < deadline, "a lock outlived its TTL"
            time.sleep(0.02)
        assert store.unlock("k", "dead") is False  # the new holder's lock is not the old one's
        assert store.lock("k", "dead", 60.0) is False
        assert store.unlock("k", "next") is True

    def test_lock_is_never_read_as_an_entry(self, store: Store) -> None:
        """A lock is invisible to every read of its key, and entries and locks never touch."""
        _require(store, LockingStore, "lock/unlock")
        assert isinstance(store, LockingStore)
        assert store.lock("k", "a", 60.0) is True
        assert store.get("k") is None
        if isinstance(store, BulkStore):
            assert store.get_many(["k"]) == [None]
        if isinstance(store, ReadsWithTTL):
            assert store.get_with_ttl("k") is None
        assert store.delete("k") is False
        store.set("k", "v")
        assert store.get("k") == "v"
        assert store.delete("k") is True
        assert store.lock("k", "b", 60.0) is False  # deleting the entry left the lock alone
        assert store.unlock("k", "a") is True
        assert store.get("k") is None

    def test_clear_prefix_leaves_locking_working(self, store: Store) -> None:
        """clear_prefix may drop the locks under its prefix, and locks work as before after it."""
        _require(store, LockingStore, "lock/unlock")
        assert isinstance(store, LockingStore)
        assert store.lock("p:k", "a", 60.0) is True
        assert store.lock("q", "a", 60.0) is True
        store.set("p:k", "v")
        assert store.clear_prefix("p:") >= 1
        assert store.get("p:k") is None
        holder = "a" if store.lock("p:k", "b", 60.0) is False else "b"
        assert store.unlock("p:k", holder) is True
        assert store.lock("p:k", "c", 60.0) is True
        assert store.lock("q", "b", 60.0) is False  # outside the prefix: still held
        assert store.unlock("q", "a") is True

    def test_async_lock_twins_match_the_sync_ones(self, store: Store) -> None:
        """alock and aunlock take and release the same locks as lock and unlock."""
        _require(store, AsyncLockingStore, "alock/aunlock")
        assert isinstance(store, AsyncLockingStore)
        assert isinstance(store, LockingStore)
        locks = store

        async def scenario() -> list[bool]:
            return [
                await locks.alock("k", "a", 60.0),
                await locks.alock("k", "a", 60.0),
                await locks.alock("k", "b", 60.0),
                await locks.aunlock("k", "b"),
                await locks.alock("j", "a", 60.0),
                await locks.aunlock("j", "a"),
            ]

        assert asyncio.run(scenario()) == [True, True, False, False, True, True]
        assert store.lock("k", "b", 60.0) is False
        assert store.unlock("k", "a") is True
        assert store.lock("j", "b", 60.0) is True

    def test_async_callers_lock_through_the_adapter(self, store: Store) -> None:
        """Whatever async twins it has, a locking store's locks reach async callers."""
        _require(store, LockingStore, "lock/unlock")
        ops = adapt(store)
        assert ops.alock is not None
        assert ops.aunlock is not None
        alock, aunlock = ops.alock, ops.aunlock

        async def scenario() -> list[bool]:
            return [
                await alock("k", "a", 60.0),
                await alock("k", "b", 60.0),
                await aunlock("k", "b"),
                await aunlock("k", "a"),
                await alock("k", "b", 60.0),
            ]

        assert asyncio.run(scenario()) == [True, False, False, True, True]
        assert isinstance(store, LockingStore)
        assert store.unlock("k", "b") is True
