"""The fleet over a Redis Cluster (``redis+cluster://``): state, heartbeats and messages work there."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.main import create_app
from service.model_store import ModelStore
from service.settings import Settings
from tests.fixtures.published_model import PublishedModel
from tests.service.api.conftest import AppClient

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TOKEN = "cluster-fleet-token"


def test_two_apps_on_a_redis_cluster_follow_one_choice_and_list_each_other(
    published_store: PublishedModel, redis_cluster: str, tmp_path: Path
) -> None:
    v1, v2 = published_store.versions
    store = tmp_path / "store"
    shutil.copytree(published_store.store_dir, store)
    body: dict[str, Any] = (
        ModelStore(store)
        .read_manifest(published_store.model, v1)
        .warmup[0]
        .model_dump(mode="json", exclude_none=True)
    )
    settings = Settings(
        models_dir=store, model=published_store.model, admin_token=TOKEN, log_format="text",
        redis_url=redis_cluster, redis_prefix=f"fleet-{time.time_ns()}",
        redis_timeout_ms=2000, feature_budget_ms=2000, store_read_only=True,
        fleet_poll_seconds=30, fleet_heartbeat_seconds=0.2, inference_threads=1,
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = create_app(settings, metrics_registry=CollectorRegistry())
    second = create_app(settings, metrics_registry=CollectorRegistry())
    with AppClient(first) as a, AppClient(second) as b:
        answer = a.post("/admin/models/load", json={"version": v2}, headers=auth)
        assert answer.json()["recorded_in"] == ["redis"]
        deadline = time.monotonic() + 5
        while b.post("/rank", json=body).json()["model"]["version"] != v2:
            assert time.monotonic() < deadline, "the second app did not follow the message"
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while len(b.get("/admin/models", headers=auth).json()["processes"]) < 2:
            assert time.monotonic() < deadline, "the heartbeats are not listed"
            time.sleep(0.05)
        listed = b.get("/admin/models", headers=auth).json()
        assert listed["fleet"]["source"] == "redis"
        assert {p["serving"] for p in listed["processes"]} == {v2}
