"""In-memory twins of the store ports, for tests of the service (same contracts, no Redis)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from service.store.ports import CacheLookup, FeatureFetch


class InMemoryFeatureStore:
    """``FeatureStore`` over dicts of rows by id; returns copies so callers cannot alter it."""

    def __init__(
        self, users: Mapping[str, dict[str, Any]], items: Mapping[str, dict[str, Any]]
    ) -> None:
        self.users = dict(users)
        self.items = dict(items)
        self.calls = 0  # fetches served, for tests that check the store was (not) asked

    async def fetch(self, user_id: str | None, item_ids: Sequence[str]) -> FeatureFetch:
        started = time.perf_counter()
        self.calls += 1
        user = copy.deepcopy(self.users.get(user_id)) if user_id is not None else None
        items = [copy.deepcopy(self.items.get(item_id)) for item_id in item_ids]
        asked = len(item_ids) + (user_id is not None)
        hits = sum(row is not None for row in items) + (user is not None)
        return FeatureFetch(
            user=user,
            items=items,
            status="ok",
            hits=hits,
            misses=asked - hits,
            seconds=time.perf_counter() - started,
        )

    async def close(self) -> None:
        return None


class InMemoryUserRepCache:
    """``UserRepCache`` in a dict with per-entry expiry; ``clock`` is injectable for TTL tests."""

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"user cache TTL must be > 0 s, got {ttl_seconds}")
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: dict[str, tuple[float, npt.NDArray[np.float32]]] = {}

    async def get(self, key: str) -> CacheLookup:
        entry = self._entries.get(key)
        if entry is None:
            return CacheLookup(None, "miss")
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return CacheLookup(None, "miss")
        return CacheLookup(value.copy(), "hit")

    async def put(self, key: str, value: npt.NDArray[np.float32]) -> bool:
        flat = np.asarray(value, dtype=np.float32).ravel().copy()
        self._entries[key] = (self._clock() + self.ttl_seconds, flat)
        return True

    async def close(self) -> None:
        self._entries.clear()
