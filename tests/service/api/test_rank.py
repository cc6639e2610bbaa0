"""POST /rank over a real exported model: order, objectives, forms, fusion, stored features, docs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.store.memory import InMemoryFeatureStore
from tests.service.api.conftest import AppClient

Body = dict[str, Any]


def _rank(client: AppClient, body: Body) -> Body:
    response = client.post("/rank", json=body)
    assert response.status_code == 200, response.text
    result: Body = response.json()
    return result


def test_items_are_ordered_by_fused_score_with_ranks_from_one(
    client: AppClient, example: Body
) -> None:
    result = _rank(client, example)
    scores = [item["score"] for item in result["items"]]
    assert scores == sorted(scores, reverse=True)
    assert [item["rank"] for item in result["items"]] == list(
        range(1, len(example["candidates"]) + 1)
    )
    assert {item["id"] for item in result["items"]} == {c["id"] for c in example["candidates"]}


def test_every_item_carries_every_task_and_derived_objective(
    client: AppClient, example: Body, objectives: list[str]
) -> None:
    result = _rank(client, example)
    for item in result["items"]:
        assert set(item["objectives"]) == set(objectives)
    assert result["model"]["name"]
    assert result["model"]["version"]
    assert result["fusion"]["name"]
    assert result["fusion"]["spec"]["terms"]


def test_columnar_candidates_rank_like_the_list_form(client: AppClient, example: Body) -> None:
    rows = example["candidates"]
    names = sorted({n for c in rows for n in c.get("features", {})})
    columnar = copy.deepcopy(example)
    columnar["candidates"] = {
        "ids": [c["id"] for c in rows],
        "features": {n: [c.get("features", {}).get(n) for c in rows] for n in names},
    }
    assert _rank(client, columnar)["items"] == _rank(client, example)["items"]


def test_top_k_returns_the_best_k_of_the_full_ranking(client: AppClient, example: Body) -> None:
    full = _rank(client, example)["items"]
    best = _rank(client, {**example, "top_k": 2})["items"]
    assert best == full[:2]


def test_weighted_sum_override_equals_the_formula_on_returned_objectives(
    client: AppClient, example: Body, objectives: list[str]
) -> None:
    weights = {name: 0.5 + i for i, name in enumerate(objectives[:2])}
    fusion = {"kind": "weighted_sum", "terms": {k: {"weight": w} for k, w in weights.items()}}
    result = _rank(client, {**example, "fusion": fusion})
    assert result["fusion"]["name"] == "request"
    for item in result["items"]:
        expected = sum(w * item["objectives"][k] for k, w in weights.items())
        assert item["score"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_request_id_is_echoed_and_explain_adds_stage_timings(
    client: AppClient, example: Body
) -> None:
    plain = _rank(client, {**example, "request_id": "abc-1"})
    assert plain["request_id"] == "abc-1"
    assert plain.get("explain") is None
    explained = _rank(client, {**example, "explain": True})["explain"]
    assert {"transform", "candidate_graph", "fusion"} <= set(explained["timings"])
    assert all(seconds >= 0 for seconds in explained["timings"].values())
    assert explained["user_cache"] == "disabled"


def test_stored_item_features_fill_what_the_request_omits(make_app: Any, example: Body) -> None:
    stored = {c["id"]: dict(c.get("features", {})) for c in example["candidates"]}
    if not any(stored.values()):
        pytest.skip("the warm-up example has no item features to store")
    bare = copy.deepcopy(example)
    for candidate in bare["candidates"]:
        candidate["features"] = {}
    store = InMemoryFeatureStore(users={}, items=stored)
    with AppClient(make_app()) as plain_client:
        with_request_features = _rank(plain_client, example)["items"]
    with AppClient(make_app(feature_store=store)) as store_client:
        from_store = _rank(store_client, {**bare, "explain": True})
    assert from_store["items"] == with_request_features
    assert from_store["explain"]["feature_fetch"]["status"] == "ok"
    assert store.calls == 1


def test_metrics_count_rank_requests_and_score_distributions(
    client: AppClient, example: Body
) -> None:
    _rank(client, example)
    _rank(client, example)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    requests = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in families["mtrank_requests"].samples
    }
    assert requests[("/rank", "200")] == 2
    candidates_count = [
        s.value
        for s in families["mtrank_candidates_per_request"].samples
        if s.name.endswith("_count")
    ]
    assert candidates_count == [2]
    # negative buckets: the exposition carries no _sum/_count (OpenMetrics rule), the +Inf bucket counts
    fused_total = [
        s.value for s in families["mtrank_fused_score"].samples if s.labels.get("le") == "+Inf"
    ]
    assert fused_total == [2 * len(example["candidates"])]
    stages = {s.labels["stage"] for s in families["mtrank_stage_duration_seconds"].samples}
    assert {"transform", "candidate_graph", "fusion"} <= stages
    info = [s for s in families["mtrank_model_info"].samples if s.value == 1]
    assert len(info) == 1


def test_openapi_documents_the_rank_body_with_examples(client: AppClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/rank"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/RankRequest"}
    assert set(body["examples"]) == {"rows", "columnar"}
    for example in body["examples"].values():  # the served model's own, so they are ranked
        assert client.post("/rank", json=example["value"]).status_code == 200, example
    schemas = spec["components"]["schemas"]
    assert {"RankRequest", "RankResponse", "UserPart", "FusionSpec"} <= set(schemas)
    assert "user" in schemas["RankRequest"]["required"]


def test_ignore_mode_drops_unknown_features_and_ranks_as_without_them(
    make_app: Any, example: Body
) -> None:
    extra = copy.deepcopy(example)
    extra["user"]["features"]["user_segment"] = "gold"  # a feature a newer model might take
    for candidate in extra["candidates"]:
        candidate["features"]["colour"] = "red"
    with AppClient(make_app(unknown_features="ignore")) as tolerant:
        assert _rank(tolerant, extra)["items"] == _rank(tolerant, example)["items"]
    with AppClient(make_app()) as strict:
        assert strict.post("/rank", json=extra).status_code == 422
