"""Stores of a user's own, shared by the test modules: dict-backed, broken, or switchable."""

from __future__ import annotations

import threading


class DictStore:
    """A user's store with the four required methods and nothing else (sync only)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.data[key] = value

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def clear_prefix(self, prefix: str) -> int:
        doomed = [key for key in self.data if key.startswith(prefix)]
        for key in doomed:
            del self.data[key]
        return len(doomed)


class AsyncDictStore(DictStore):
    """A ``DictStore`` with native async twins (the ``AsyncStore`` capability)."""

    async def aget(self, key: str) -> str | None:
        return self.get(key)

    async def aset(self, key: str, value: str, ttl: float | None = None) -> None:
        self.set(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        return self.delete(key)

    async def aclear_prefix(self, prefix: str) -> int:
        return self.clear_prefix(prefix)


class SwitchableStore(AsyncDictStore):
    """Fails every operation with ``ConnectionError`` while ``down``, as a dead server's client."""

    def __init__(self, *, down: bool = False) -> None:
        super().__init__()
        self.down = down
        self.attempts = 0
        self.deletes = 0

    def _check(self) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("store is down")

    def get(self, key: str) -> str | None:
        self._check()
        return super().get(key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._check()
        super().set(key, value, ttl)

    def delete(self, key: str) -> bool:
        self._check()
        self.deletes += 1
        return super().delete(key)

    def clear_prefix(self, prefix: str) -> int:
        self._check()
        return super().clear_prefix(prefix)


class BrokenStore(SwitchableStore):
    """A store whose every call raises."""

    def __init__(self) -> None:
        super().__init__(down=True)


class PausingTTLStore(DictStore):
    """A lower tier that tells remaining TTLs; once ``armed``, its read returns only on ``release``.

    ``reading`` is set when an armed read has found its entry (or, with
    ``on_misses``, any armed read), so a test can act in between.
    """

    def __init__(self, *, on_misses: bool = False) -> None:
        super().__init__()
        self.armed = False
        self.on_misses = on_misses
        self.reading = threading.Event()
        self.release = threading.Event()

    def get_with_ttl(self, key: str) -> tuple[str, float | None] | None:
        text = self.get(key)
        if self.armed and (text is not None or self.on_misses):
            self.reading.set()
            self.release.wait(10)
        return None if text is None else (text, None)


async def aclose_clients(store: object) -> None:
    """Close the asyncio Redis clients a test's event loop made, before that loop closes."""
    from instructor_cache import RedisCache, TieredCache

    for tier in store.tiers if isinstance(store, TieredCache) else (store,):
        if isinstance(tier, RedisCache):
            await tier.aclose()
