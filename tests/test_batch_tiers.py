"""Batches on tiers and on disk: each tier is read once, for what the faster tiers missed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from instructor_cache import DiskCache, MemoryCache, TieredCache, instructor_cache
from tests._fakes import UserDetail

TEXTS = [f"user{i} is {20 + i}" for i in range(10)]


def _answer(text: str) -> UserDetail:
    name, _, age = text.partition(" is ")
    return UserDetail(name=name, age=int(age))


class CountingMemory(MemoryCache):
    """A real MemoryCache that records the keys of each bulk read and the size of each write."""

    def __init__(self) -> None:
        super().__init__(maxsize=1024)
        self.bulk_reads: list[list[str]] = []
        self.bulk_writes: list[int] = []

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self.bulk_reads.append(list(keys))
        return super().get_many(keys)

    def set_many(self, items: Mapping[str, str], ttl: float | None = None) -> None:
        self.bulk_writes.append(len(items))
        super().set_many(items, ttl)


class CountingDisk(DiskCache):
    """A real DiskCache that counts its bulk reads."""

    bulk_reads = 0

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        type(self).bulk_reads += 1
        return super().get_many(keys)


def test_a_batch_reads_each_tier_once_for_what_the_faster_missed() -> None:
    """L1 is asked for every key, L2 only for L1's misses, once each; new results go to both."""
    l1, l2 = CountingMemory(), CountingMemory()

    @instructor_cache(TieredCache(l1, l2))
    def extract(text: str) -> UserDetail:
        return _answer(text)

    extract.map(TEXTS[:6])  # cached in both tiers
    l1.clear()
    for text in TEXTS[:3]:
        extract(text)  # back in L1: a single call backfills it from L2
    l1.bulk_reads.clear()
    l2.bulk_reads.clear()
    l1.bulk_writes.clear()
    l2.bulk_writes.clear()

    assert extract.map(TEXTS) == [_answer(t) for t in TEXTS]
    keys = [extract.cache_key(t) for t in TEXTS]
    assert l1.bulk_reads == [keys]
    assert l2.bulk_reads == [keys[3:]]  # L1 had the first three
    assert l1.bulk_writes == l2.bulk_writes == [4]  # the four computed, in one write each


def test_a_batch_on_disk_reads_in_one_query(tmp_path: Path) -> None:
    """A cached batch on disk is one bulk read."""
    store = CountingDisk(tmp_path / "disk")

    @instructor_cache(store)
    def extract(text: str) -> UserDetail:
        return _answer(text)

    extract.map(TEXTS)
    CountingDisk.bulk_reads = 0
    assert extract.map(TEXTS * 3) == [_answer(t) for t in TEXTS * 3]
    assert CountingDisk.bulk_reads == 1
    store.close()
