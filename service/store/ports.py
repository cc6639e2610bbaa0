"""Ports of the online store: what the scoring engine asks of a feature store and a user cache.

Two implementations each: Redis (``redis_feature_store``, ``redis_user_cache``) and in-memory twins
(``memory``) for tests of the service. Both ports NEVER raise: an unavailable store is a status, not
an exception, so a dead Redis can never fail a ranking request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

FetchStatus = Literal["ok", "disabled", "timeout", "error", "circuit_open", "corrupt"]
CacheResult = Literal["hit", "miss", "error", "disabled"]


@dataclass(frozen=True)
class FeatureFetch:
    """Outcome of one feature fetch for a request's user and candidates."""

    user: dict[str, Any] | None  # stored raw user row, None if absent or unavailable
    items: list[
        dict[str, Any] | None
    ]  # aligned with the requested item ids; None = absent/unavailable
    status: FetchStatus  # "ok" even when some ids are absent (absence is not an error)
    hits: int  # entities found
    misses: int  # entities asked for and absent (or unavailable)
    seconds: float


class FeatureStore(Protocol):
    """Raw feature rows by entity id: one user and many items per call."""

    async def fetch(self, user_id: str | None, item_ids: Sequence[str]) -> FeatureFetch:
        """Return the stored rows; never raises (failures are reported in ``status``)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class CacheLookup:
    """A user-representation cache answer; ``value`` is set only on a hit (1-D float32)."""

    value: npt.NDArray[np.float32] | None
    result: CacheResult


class UserRepCache(Protocol):
    """The user graph's output keyed by ``user_rep_cache_key``; entries expire after a TTL."""

    async def get(self, key: str) -> CacheLookup:
        """Look a key up; never raises. A hit returns the stored vector flattened to 1-D."""
        ...

    async def put(self, key: str, value: npt.NDArray[np.float32]) -> bool:
        """Store a vector (any shape, stored flat); never raises, False when it was not stored."""
        ...

    async def close(self) -> None: ...
