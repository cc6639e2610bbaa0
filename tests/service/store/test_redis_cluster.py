"""The feature store, the loader and the user cache on a real 3-node Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from service.store.loader import load_table
from service.store.ports import FeatureFetch
from service.store.redis_feature_store import RedisFeatureStore, item_key, user_key
from service.store.redis_url import cluster_target, sync_client
from service.store.redis_user_cache import RedisUserRepCache

pytestmark = pytest.mark.redis


def _nodes(url: str) -> list[redis.Redis]:
    client = sync_client(url, socket_timeout=2, connect_timeout=2)
    assert isinstance(client, redis.RedisCluster)
    try:
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        return [redis.Redis(host=n.host, port=n.port) for n in primaries]
    finally:
        client.close()


def _mget_calls(nodes: list[redis.Redis]) -> int:
    return sum(int(n.info("commandstats").get("cmdstat_mget", {}).get("calls", 0)) for n in nodes)


def _load(url: str, prefix: str, tmp_path: Path, n_items: int) -> None:
    users = pa.table({"user_id": [7, 8], "age": [31, 45], "history": [[1, 2], [3]]})
    items = pa.table(
        {"item_id": np.arange(n_items), "price": np.arange(n_items, dtype=np.float64) / 2}
    )
    pq.write_table(users, tmp_path / "users.parquet")
    pq.write_table(items, tmp_path / "items.parquet")
    client = sync_client(url, socket_timeout=5, connect_timeout=5)
    try:
        for entity, name, key in (("user", "users", "user_id"), ("item", "items", "item_id")):
            report = load_table(
                client,
                tmp_path / f"{name}.parquet",
                entity=entity,  # type: ignore[arg-type]
                key_column=key,
                prefix=prefix,
                batch_size=100,
            )
            assert report.rows == (2 if entity == "user" else n_items)
    finally:
        client.close()


def _fetch(url: str, prefix: str, user_id: str | None, item_ids: list[str]) -> FeatureFetch:
    async def scenario() -> FeatureFetch:
        store = RedisFeatureStore.from_url(url, prefix=prefix, timeout_ms=2000, budget_ms=5000)
        try:
            return await store.fetch(user_id, item_ids)
        finally:
            await store.close()

    return asyncio.run(scenario())


def test_cluster_fetch_returns_loaded_rows_in_one_mget_per_slot_group(
    redis_cluster: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    _load(redis_cluster, prefix, tmp_path, n_items=600)
    nodes = _nodes(redis_cluster)
    holding = [n.dbsize() for n in nodes]
    assert all(count > 0 for count in holding), f"keys not spread over the nodes: {holding}"

    item_ids = [str(i) for i in range(500)] + ["no-such-item"]
    before = _mget_calls(nodes)
    result = _fetch(redis_cluster, prefix, "7", item_ids)
    calls = _mget_calls(nodes) - before

    assert result.status == "ok"
    assert result.user == {"user_id": 7, "age": 31, "history": [1, 2]}
    assert result.items[:3] == [
        {"item_id": 0, "price": 0.0},
        {"item_id": 1, "price": 0.5},
        {"item_id": 2, "price": 1.0},
    ]
    assert result.items[-1] is None
    assert (result.hits, result.misses) == (501, 1)
    keys = [user_key(prefix, "7", True)] + [item_key(prefix, i, True) for i in item_ids]
    groups = {key.split("{")[1].split("}")[0] for key in keys}
    assert calls == len(groups)  # one MGET per slot group, not one per key
    assert len(groups) < len(keys) // 2


def test_user_cache_round_trips_a_vector_on_the_cluster(redis_cluster: str) -> None:
    async def scenario() -> tuple[str, list[float] | None]:
        cache = RedisUserRepCache.from_url(
            redis_cluster, prefix=f"t{uuid.uuid4().hex[:8]}", ttl_seconds=30, timeout_ms=2000
        )
        try:
            stored = await cache.put("ur:m:v1:u7:abc", np.array([0.5, -1.0], np.float32))
            assert stored
            found = await cache.get("ur:m:v1:u7:abc")
            return found.result, None if found.value is None else found.value.tolist()
        finally:
            await cache.close()

    assert asyncio.run(scenario()) == ("hit", [0.5, -1.0])


def test_cluster_url_with_a_database_number_is_refused() -> None:
    assert cluster_target("redis+cluster://10.0.0.5:7000") == "redis://10.0.0.5:7000"
    assert cluster_target("redis://10.0.0.5:6379/2") is None
    with pytest.raises(ValueError, match="only database 0"):
        cluster_target("redis+cluster://10.0.0.5:7000/3")
    with pytest.raises(ValueError, match="scheme 'http'"):
        cluster_target("http://10.0.0.5:7000")
