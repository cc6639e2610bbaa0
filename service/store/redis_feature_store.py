"""Online feature store on Redis: one value per entity, one MGET per request.

Keys are ``{prefix}:u:{user_id}`` and ``{prefix}:i:{item_id}``; values are compact rows
(``service.store.codec``). A request's user and all its candidates come back in a single round
trip, so 1,000 items cost a few milliseconds, against the hash-per-entity layout of Feast's Redis
online store (one HGETALL per entity). Failures never raise: the fetch reports a status and the
service ranks with the request's features alone.

On a Redis Cluster (``redis+cluster://`` URL) keys carry a hash tag naming one of
``CLUSTER_SLOT_GROUPS`` slot groups (``{prefix}:{i17}:{item_id}``, the group from a CRC32 of the id),
so a request needs one MGET per slot group it touches, sent as one pipeline per node, all nodes at
once: still one round trip, whatever the number of candidates.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence

import redis.asyncio as aioredis

from service.store.circuit_breaker import CircuitBreaker
from service.store.codec import decode_rows
from service.store.ports import FeatureFetch, FetchStatus
from service.store.redis_guard import (
    AsyncRedis,
    RedisGuard,
    ThrottledLog,
    connect_guarded,
    discover_cluster,
)

logger = logging.getLogger(__name__)

# Slot groups of a cluster layout: enough to spread over ~100 nodes, few enough that a request's
# 1,000 candidates share MGETs (about 8 keys each). Changing it re-keys every stored entity.
CLUSTER_SLOT_GROUPS = 128


def _key(prefix: str, kind: str, entity_id: str, cluster: bool) -> str:
    if not cluster:
        return f"{prefix}:{kind}:{entity_id}"
    group = zlib.crc32(entity_id.encode()) % CLUSTER_SLOT_GROUPS
    return f"{prefix}:{{{kind}{group}}}:{entity_id}"


def user_key(prefix: str, user_id: str, cluster: bool = False) -> str:
    return _key(prefix, "u", user_id, cluster)


def item_key(prefix: str, item_id: str, cluster: bool = False) -> str:
    return _key(prefix, "i", item_id, cluster)


class RedisFeatureStore:
    """``FeatureStore`` over Redis; build it with ``from_url``."""

    def __init__(self, client: AsyncRedis, guard: RedisGuard, *, prefix: str = "mtrank") -> None:
        self._client = client
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._guard = guard
        self._prefix = prefix
        self._corrupt_log = ThrottledLog(logger)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "mtrank",
        timeout_ms: float = 20.0,
        budget_ms: float = 30.0,
        breaker: CircuitBreaker | None = None,
        log_interval_seconds: float = 10.0,
    ) -> RedisFeatureStore:
        """Connects lazily: a Redis that is down at start-up only makes fetches report errors."""
        client, guard = connect_guarded(
            url,
            what="Redis feature store",
            fallback="ranking with request features and spec defaults only",
            logger=logger,
            timeout_ms=timeout_ms,
            budget_ms=budget_ms,
            breaker=breaker,
            log_interval_seconds=log_interval_seconds,
        )
        return cls(client, guard, prefix=prefix)

    @property
    def breaker(self) -> CircuitBreaker:
        return self._guard.breaker

    async def fetch(self, user_id: str | None, item_ids: Sequence[str]) -> FeatureFetch:
        """The user's row and each item's row, in one MGET; never raises."""
        started = time.perf_counter()
        cluster = self._cluster
        keys = [item_key(self._prefix, item_id, cluster) for item_id in item_ids]
        if user_id is not None:
            keys.insert(0, user_key(self._prefix, user_id, cluster))
        if not keys:
            return FeatureFetch(None, [], "ok", 0, 0, time.perf_counter() - started)
        values, status = await self._guard.run(lambda: self._mget(keys))
        if values is None:
            return FeatureFetch(
                user=None,
                items=[None] * len(item_ids),
                status=status,
                hits=0,
                misses=len(keys),
                seconds=time.perf_counter() - started,
            )
        decoded = decode_rows(values)
        rows = decoded.rows
        user = rows.pop(0) if user_id is not None else None
        fetch_status: FetchStatus = "ok"
        if decoded.corrupt:
            fetch_status = "corrupt"
            self._corrupt_log.warning(
                "corrupt",
                f"Redis feature store: {decoded.corrupt} of {len(keys)} values under prefix "
                f"'{self._prefix}' are not mtrank feature rows; those entities are ranked without "
                "stored features. Reload them with `python -m service features load`.",
            )
        return FeatureFetch(
            user=user,
            items=rows,
            status=fetch_status,
            hits=decoded.hits,
            misses=len(keys) - decoded.hits,
            seconds=time.perf_counter() - started,
        )

    async def _mget(self, keys: list[str]) -> list[bytes | str | None]:
        if isinstance(self._client, aioredis.RedisCluster):
            grouped: list[bytes | str | None] = await self._client.mget_nonatomic(keys)
            return grouped  # one MGET per slot group, one pipeline per node
        return await self._client.mget(keys)

    async def connect(self, seconds: float = 2.0) -> bool:
        """Discover a Redis Cluster's slots before the first request (no-op for one server)."""
        return await discover_cluster(self._client, seconds=seconds, logger=logger)

    async def close(self) -> None:
        await self._client.aclose()
