"""/rank serves the zoo's extra objectives: ESM²'s action and products, a learning-to-rank score."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.main import create_app
from service.model_store import ModelStore
from service.settings import Settings
from tests.fixtures.zoo import Zoo
from tests.service.api.conftest import AppClient

pytestmark = pytest.mark.slow


def rank(zoo: Zoo, model: str) -> tuple[dict[str, Any], list[str]]:
    store = ModelStore(zoo.store)
    manifest = store.read_manifest(model, store.versions(model)[-1])
    body: dict[str, Any] = manifest.warmup[0].model_dump(mode="json", exclude_none=True)
    rows = body["candidates"]
    body["candidates"] = [{**copy.deepcopy(rows[i % len(rows)]), "id": f"c{i}"} for i in range(6)]
    settings = Settings(models_dir=zoo.store, model=model, log_format="text", inference_threads=1)
    app = create_app(settings, metrics_registry=CollectorRegistry())
    with AppClient(app) as client:
        response = client.post("/rank", json=body)
    assert response.status_code == 200, response.text
    return response.json(), manifest.objective_ids()


def test_esm2_ranks_with_action_and_the_ctavr_ctcvr_products(zoo: Zoo) -> None:
    zoo.run("esm2", "esm2", "esm2.yaml")
    answer, objectives = rank(zoo, "esm2")
    assert "ctavr" in objectives
    for item in answer["items"]:
        o = item["objectives"]
        assert set(o) == {"click", "action", "convert", "ctavr", "ctcvr"}
        assert o["ctavr"] == pytest.approx(o["click"] * o["action"], rel=1e-5)
        assert o["ctcvr"] == pytest.approx(o["click"] * o["convert"], rel=1e-5)
        assert 0.0 <= o["convert"] <= 1.0


def test_learning_to_rank_score_is_served_and_fused_as_a_percentile(zoo: Zoo) -> None:
    zoo.run("ltr", "default", "ltr_weighted.yaml", "losses.relevance=ranknet")
    answer, objectives = rank(zoo, "ltr")
    assert "relevance" in objectives
    terms = answer["fusion"]["spec"]["terms"]
    assert terms["relevance"] == {"weight": 1.0, "transform": "rank"}
    scores = np.array([item["objectives"]["relevance"] for item in answer["items"]])
    assert np.isfinite(scores).all()
