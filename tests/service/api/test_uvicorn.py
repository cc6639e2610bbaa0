"""Contract tests against a real uvicorn process started with env settings only (the documented command)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.published_model import PublishedModel
from tests.fixtures.uvicorn_server import UVICORN_ADMIN_TOKEN, uvicorn_service

__all__ = ["uvicorn_service"]

pytestmark = pytest.mark.slow  # starts a server process (a few seconds)


def test_rank_over_http_orders_items_and_echoes_the_request_id(
    uvicorn_service: str, body: dict[str, Any], published_store: PublishedModel
) -> None:
    response = httpx.post(f"{uvicorn_service}/rank", json={**body, "request_id": "r1"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result = response.json()
    assert result["request_id"] == "r1"
    assert result["model"] == {
        "name": published_store.model,
        "version": published_store.versions[0],
    }
    scores = [item["score"] for item in result["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len(scores) == len(body["candidates"])


def test_raw_nan_and_1e309_are_refused_over_http(
    uvicorn_service: str, body: dict[str, Any]
) -> None:
    for raw in ("NaN", "1e309", "-Infinity"):
        text = json.dumps({**body, "context": {"hour": "__X__"}}).replace('"__X__"', raw)
        response = httpx.post(
            f"{uvicorn_service}/rank",
            content=text,
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 422, (raw, response.text)
        assert response.json()["error"]["field"] == "context.hour"


def test_limits_come_from_the_environment(uvicorn_service: str, body: dict[str, Any]) -> None:
    many = {**body, "candidates": [{"id": f"c{i}"} for i in range(51)]}
    response = httpx.post(f"{uvicorn_service}/rank", json=many, timeout=10)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "candidates"


def test_probes_metrics_and_admin_over_http(
    uvicorn_service: str, body: dict[str, Any], published_store: PublishedModel
) -> None:
    assert httpx.get(f"{uvicorn_service}/healthz").status_code == 200
    assert httpx.get(f"{uvicorn_service}/readyz").status_code == 200
    httpx.post(f"{uvicorn_service}/rank", json=body, timeout=10)
    text = httpx.get(f"{uvicorn_service}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ok = [
        s.value
        for s in families["mtrank_requests"].samples
        if s.labels == {"endpoint": "/rank", "status": "200"}
    ]
    assert ok
    assert ok[0] >= 1
    assert httpx.get(f"{uvicorn_service}/admin/models").status_code == 401
    listed = httpx.get(
        f"{uvicorn_service}/admin/models",
        headers={"Authorization": f"Bearer {UVICORN_ADMIN_TOKEN}"},
    ).json()
    assert listed["available"] == published_store.versions
