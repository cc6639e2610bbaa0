"""User-representation cache on Redis: the user graph's output, so a hit skips the user graph.

The key binds the model version, the user id and a digest of the user features the request sent,
so a new model version or changed features never reuse a stale vector. Values are little-endian
float32 bytes written with ``SET ... EX ttl``. Calls follow ``RedisGuard``'s discipline and never
raise: a cache that is down is a miss with result ``"error"``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from service.store.circuit_breaker import CircuitBreaker
from service.store.ports import CacheLookup
from service.store.redis_guard import (
    AsyncRedis,
    RedisGuard,
    ThrottledLog,
    connect_guarded,
    discover_cluster,
)

logger = logging.getLogger(__name__)

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_DTYPE = np.dtype("<f4")


def user_features_digest(features: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON (sorted keys, compact) of the request's user features."""
    return hashlib.sha256(orjson.dumps(dict(features), option=_CANONICAL)).hexdigest()


def user_rep_cache_key(model: str, version: str, user_id: str, features: Mapping[str, Any]) -> str:
    """Cache key (without the Redis prefix) for a user's representation under a model version."""
    return f"ur:{model}:{version}:{user_id}:{user_features_digest(features)}"


def encode_vector(value: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(value, dtype=_DTYPE).tobytes()


def decode_vector(raw: bytes | str) -> npt.NDArray[np.float32] | None:
    """The stored vector (1-D float32), or None when the value cannot be one."""
    if not isinstance(raw, bytes) or not raw or len(raw) % _DTYPE.itemsize:
        return None
    return np.frombuffer(raw, dtype=_DTYPE).astype(np.float32)


class RedisUserRepCache:
    """``UserRepCache`` over Redis; build it with ``from_url``."""

    def __init__(
        self, client: AsyncRedis, guard: RedisGuard, *, prefix: str, ttl_seconds: int
    ) -> None:
        if ttl_seconds < 1:
            raise ValueError(f"user cache TTL must be >= 1 s, got {ttl_seconds}")
        self._client = client
        self._guard = guard
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._corrupt_log = ThrottledLog(logger)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "mtrank",
        ttl_seconds: int = 300,
        timeout_ms: float = 20.0,
        budget_ms: float | None = None,
        breaker: CircuitBreaker | None = None,
        log_interval_seconds: float = 10.0,
    ) -> RedisUserRepCache:
        """Connects lazily; ``budget_ms`` defaults to the socket timeout plus one retry."""
        client, guard = connect_guarded(
            url,
            what="Redis user-representation cache",
            fallback="running the user graph instead",
            logger=logger,
            timeout_ms=timeout_ms,
            budget_ms=budget_ms if budget_ms is not None else 2 * timeout_ms,
            breaker=breaker,
            log_interval_seconds=log_interval_seconds,
        )
        return cls(client, guard, prefix=prefix, ttl_seconds=ttl_seconds)

    @property
    def breaker(self) -> CircuitBreaker:
        return self._guard.breaker

    def _redis_key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    async def get(self, key: str) -> CacheLookup:
        raw, status = await self._guard.run(lambda: self._client.get(self._redis_key(key)))
        if status != "ok":
            return CacheLookup(None, "error")
        if raw is None:
            return CacheLookup(None, "miss")
        value = decode_vector(raw)
        if value is None:
            self._corrupt_log.warning(
                "corrupt",
                f"Redis user-representation cache: value of {len(raw)} bytes under prefix "
                f"'{self._prefix}' is not a float32 vector; running the user graph instead. "
                "Another program may be writing to this prefix: give mtrank its own.",
            )
            return CacheLookup(None, "error")
        return CacheLookup(value, "hit")

    async def put(self, key: str, value: npt.NDArray[np.float32]) -> bool:
        payload = encode_vector(value)
        done, status = await self._guard.run(
            lambda: self._client.set(self._redis_key(key), payload, ex=self._ttl)
        )
        return status == "ok" and bool(done)

    async def connect(self, seconds: float = 2.0) -> bool:
        """Discover a Redis Cluster's slots before the first request (no-op for one server)."""
        return await discover_cluster(self._client, seconds=seconds, logger=logger)

    async def close(self) -> None:
        await self._client.aclose()
