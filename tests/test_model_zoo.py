"""Every model of the zoo beyond the default trains from the command line (a preset or a config
key), publishes through the split with the parity check, and records what it is."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client import CollectorRegistry

from service.contracts.manifest import Manifest
from service.main import create_app
from service.model_store import ModelStore
from service.settings import Settings
from tests.fixtures.zoo import Zoo
from tests.service.api.conftest import AppClient
from training.train.checkpoint import build_model, load_run

pytestmark = pytest.mark.slow


def manifest(zoo: Zoo, name: str) -> Manifest:
    store = ModelStore(zoo.store)
    return store.verify(name, store.versions(name)[-1])


def test_esm2_publishes_click_action_cvr_and_the_derived_products(zoo: Zoo) -> None:
    zoo.run("esm2", "esm2", "esm2.yaml")
    m = manifest(zoo, "esm2")
    assert m.objective_ids() == ["click", "action", "convert", "ctavr", "ctcvr"]
    assert m.hyperparameters["esm2"] == ["click", "action", "convert"]
    assert m.verification.max_abs_diff <= 1e-5
    assert m.metrics["derived"]["ctavr"]["n"] == m.metrics["tasks"]["click"]["n"]


def test_nmtr_publishes_its_cascade_of_behaviours(zoo: Zoo) -> None:
    run = load_run(zoo.run("nmtr", "nmtr", "nmtr.yaml"))
    assert run.options.cascade == ("click", "cart", "convert")
    assert manifest(zoo, "nmtr").hyperparameters["cascade"] == ["click", "cart", "convert"]


def test_learning_to_rank_task_trains_with_ranknet_and_reports_ndcg(zoo: Zoo) -> None:
    run_dir = zoo.run("ltr", "default", "ltr_weighted.yaml", "losses.relevance=ranknet")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    relevance = metrics["tasks"]["relevance"]
    assert relevance["groups"] > 0
    assert 0.0 < relevance["ndcg@10"] <= 1.0
    assert 0.0 < relevance["mrr"] <= 1.0
    assert "weighted_auc" in metrics["tasks"]["click"]  # sample weights reach the metrics
    assert "weighted_auc" not in metrics["tasks"]["like"]
    m = manifest(zoo, "ltr")
    assert next(t for t in m.tasks if t.id == "relevance").type == "rank"


def test_dupn_lstm_encoder_publishes_in_the_user_graph(zoo: Zoo) -> None:
    run = load_run(zoo.run("dupn", "dupn"))
    assert run.config.arch.user_encoder == "lstm_attention"
    m = manifest(zoo, "dupn")
    assert "user_seq" in m.graphs.user.input_names()
    assert m.verification.max_abs_diff <= 1e-5


def test_deepmcp_exports_the_prediction_subnet_alone(zoo: Zoo) -> None:
    run = load_run(zoo.run("deepmcp", "deepmcp"))
    assert run.config.deepmcp is not None
    plain = build_model(run.spec, run.tasks, run.config, run.options)
    assert set(run.model.state_dict()) == set(plain.state_dict())
    assert not any("match" in k or "correl" in k for k in run.model.state_dict())
    m = manifest(zoo, "deepmcp")
    assert m.verification.max_abs_diff <= 1e-5


def test_pareto_weighting_records_per_step_weights_within_bounds(zoo: Zoo) -> None:
    run_dir = zoo.run("pareto", "pareto", "", "weighting.bounds.click=0.3", epochs=2)
    history = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["history"]
    weights = history[-1]["weights"]  # the last step's weights of epoch 1
    assert weights != history[0]["weights"]  # solved per step, not the starting point
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert weights["click"] >= 0.3 - 1e-6
    assert min(weights.values()) >= 0.0


# (published name, preset, view, --set items, epochs): every model above, as its test trains it
SERVED = [
    ("esm2", "esm2", "esm2.yaml", (), 1),
    ("nmtr", "nmtr", "nmtr.yaml", (), 1),
    ("ltr", "default", "ltr_weighted.yaml", ("losses.relevance=ranknet",), 1),
    ("dupn", "dupn", "", (), 1),
    ("deepmcp", "deepmcp", "", (), 1),
    ("pareto", "pareto", "", ("weighting.bounds.click=0.3",), 2),
]


@pytest.mark.parametrize(
    ("name", "preset", "view", "sets", "epochs"), SERVED, ids=[s[0] for s in SERVED]
)
def test_every_zoo_model_ranks_through_rank_with_all_its_objectives(
    zoo: Zoo, name: str, preset: str, view: str, sets: tuple[str, ...], epochs: int
) -> None:
    zoo.run(name, preset, view, *sets, epochs=epochs)
    m = manifest(zoo, name)
    body = m.warmup[0].model_dump(mode="json", exclude_none=True)
    settings = Settings(models_dir=zoo.store, model=name, log_format="text", inference_threads=1)
    with AppClient(create_app(settings, metrics_registry=CollectorRegistry())) as client:
        response = client.post("/rank", json=body)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["rank"] for i in items] == list(range(1, len(body["candidates"]) + 1))
    for item in items:
        assert list(item["objectives"]) == m.objective_ids()
        assert all(math.isfinite(v) for v in item["objectives"].values())
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
