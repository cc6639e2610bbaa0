"""With MTRANK_REDIS_URL the lifespan opens the Redis store and cache; a dead Redis never fails /rank."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from service.store.codec import encode_row
from service.store.redis_feature_store import item_key
from service.store.redis_url import sync_client
from tests.fixtures.redis_server import RedisServerProcess
from tests.fixtures.uvicorn_server import free_port
from tests.service.api.conftest import AppClient, MakeApp


def test_rank_succeeds_on_request_features_when_redis_is_unreachable(
    make_app: MakeApp, example: dict[str, Any]
) -> None:
    registry = CollectorRegistry()
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = make_app(
        redis_url=dead, redis_timeout_ms=20, feature_budget_ms=50, metrics_registry=registry
    )
    with AppClient(app) as client:
        for _ in range(2):
            response = client.post("/rank", json={**example, "explain": True})
            assert response.status_code == 200, response.text
        explain = response.json()["explain"]
        assert explain["feature_fetch"]["status"] in {"error", "timeout", "circuit_open"}
        assert explain["user_cache"] in {"error", "disabled"}
    failures = sum(
        registry.get_sample_value("mtrank_feature_store_errors_total", {"kind": kind}) or 0.0
        for kind in ("error", "timeout", "circuit_open")
    )
    assert failures == 2


def _bare(example: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(example)
    for candidate in body["candidates"]:
        candidate["features"] = {}
    return body


def _store_items(url: str, prefix: str, example: dict[str, Any]) -> None:
    client = sync_client(url, socket_timeout=2, connect_timeout=2)
    cluster = isinstance(client, redis.RedisCluster)
    try:
        for candidate in example["candidates"]:
            key = item_key(prefix, candidate["id"], cluster)
            client.set(key, encode_row(candidate["features"]))
    finally:
        client.close()


UNHURRIED = {"redis_timeout_ms": 2000, "feature_budget_ms": 2000}
"""Redis timeouts for tests that are not about time: a busy CI machine was seen to need more than
the defaults for a fetch that also opens the connection."""


@pytest.mark.redis
def test_items_stored_in_redis_fill_the_request_and_the_user_cache_hits(
    make_app: MakeApp, example: dict[str, Any], redis_server: str, redis_prefix: str
) -> None:
    _store_items(redis_server, redis_prefix, example)
    with AppClient(make_app()) as client:
        expected = client.post("/rank", json=example).json()["items"]
    app = make_app(redis_url=redis_server, redis_prefix=redis_prefix, **UNHURRIED)
    with AppClient(app) as client:
        first = client.post("/rank", json={**_bare(example), "explain": True}).json()
        second = client.post("/rank", json={**_bare(example), "explain": True}).json()
    assert first["items"] == expected
    assert second["items"] == expected
    assert first["explain"]["feature_fetch"]["hits"] == len(example["candidates"])
    assert first["explain"]["user_cache"] == "miss"
    assert second["explain"]["user_cache"] == "hit"


@pytest.mark.redis
def test_service_on_a_redis_cluster_url_fills_features_and_caches_users(
    make_app: MakeApp, example: dict[str, Any], redis_cluster: str
) -> None:
    prefix = "mtrank-cluster-wiring"
    _store_items(redis_cluster, prefix, example)
    with AppClient(make_app()) as client:
        expected = client.post("/rank", json=example).json()["items"]
    app = make_app(
        redis_url=redis_cluster, redis_prefix=prefix, redis_timeout_ms=2000, feature_budget_ms=2000
    )
    with AppClient(app) as client:
        first = client.post("/rank", json={**_bare(example), "explain": True}).json()
        second = client.post("/rank", json={**_bare(example), "explain": True}).json()
    assert first["items"] == expected
    assert first["explain"]["feature_fetch"]["hits"] == len(example["candidates"])
    assert second["explain"]["user_cache"] == "hit"


@pytest.mark.redis
@pytest.mark.slow
def test_redis_stopped_mid_run_keeps_requests_succeeding_and_counts_errors(
    make_app: MakeApp, example: dict[str, Any], private_redis: RedisServerProcess
) -> None:
    prefix = "mtrank-h8"
    _store_items(private_redis.url, prefix, example)
    registry = CollectorRegistry()
    app = make_app(
        redis_url=private_redis.url, redis_prefix=prefix, metrics_registry=registry, **UNHURRIED
    )
    with AppClient(app) as client:
        assert client.post("/rank", json=_bare(example)).status_code == 200
        private_redis.stop()
        for _ in range(3):
            assert client.post("/rank", json=_bare(example)).status_code == 200
    errors = sum(
        registry.get_sample_value("mtrank_feature_store_errors_total", {"kind": kind}) or 0.0
        for kind in ("error", "timeout", "circuit_open")
    )
    assert errors == 3
