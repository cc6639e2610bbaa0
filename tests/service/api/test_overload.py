"""Past max_concurrency, /rank answers 503 with Retry-After at once instead of queueing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from service.store.memory import InMemoryFeatureStore
from service.store.ports import FeatureFetch
from tests.service.api.conftest import AppClient, MakeApp


class GatedFeatureStore(InMemoryFeatureStore):
    """A store whose fetch waits until the test opens the gate (a request held in flight)."""

    def __init__(self) -> None:
        super().__init__(users={}, items={})
        self.entered = threading.Event()
        self.gate: asyncio.Event | None = None

    async def fetch(self, user_id: str | None, item_ids: Sequence[str]) -> FeatureFetch:
        self.gate = self.gate or asyncio.Event()
        self.entered.set()
        await self.gate.wait()
        return await super().fetch(user_id, item_ids)


def test_requests_past_the_limit_get_503_with_retry_after_immediately(
    make_app: MakeApp, example: dict[str, Any]
) -> None:
    store = GatedFeatureStore()
    app = make_app(feature_store=store, max_concurrency=1, retry_after_seconds=2)
    with AppClient(app) as client:
        held = client.request_soon("POST", "/rank", json=example)
        assert store.entered.wait(timeout=10)
        refused = client.post("/rank", json=example)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "2"
        assert refused.json()["error"]["code"] == "overloaded"
        assert client.get("/healthz").status_code == 200  # only /rank is bounded
        gate = store.gate
        assert gate is not None
        client.portal.call(_open, gate)
        assert held.result(timeout=10).status_code == 200
        assert client.post("/rank", json=example).status_code == 200  # the slot was released
        assert 'mtrank_errors_total{reason="overloaded"} 1.0' in client.get("/metrics").text


async def _open(gate: asyncio.Event) -> None:
    gate.set()
