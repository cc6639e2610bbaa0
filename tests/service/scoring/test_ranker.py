"""The ranker's scores equal onnxruntime on the exported files and the unsplit PyTorch model;
feature precedence, the user-rep cache, fusion selection and top-k as a client sees them."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.contracts.fusion import FusionSpec
from service.contracts.transform import FeatureTransform
from service.errors import InvalidInput, NotReady
from service.model_store import ModelStore
from service.scoring.ranker import Ranker, RankInput, RankOutput
from service.scoring.registry import ModelRegistry
from service.store.memory import InMemoryFeatureStore, InMemoryUserRepCache
from tests.fixtures.published_model import PublishedModel, raw_items, raw_user

TASKS = ("click", "convert", "watch_time")


@pytest.fixture(scope="module")
def registry(published_store: PublishedModel) -> ModelRegistry:
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    registry.load()
    return registry


def request(n: int = 7, **overrides: Any) -> RankInput:
    fields: dict[str, Any] = {
        "user_id": "u42",
        "user_features": raw_user(3),
        "context": {"hour": "20"},
        "candidate_ids": [f"c{k}" for k in range(n)],
        "candidate_features": raw_items(n, seed=5),
    }
    return RankInput(**(fields | overrides))


def rank(ranker: Ranker, rank_input: RankInput) -> RankOutput:
    return asyncio.run(ranker.rank(rank_input))


def rows(
    user: dict[str, Any], context: dict[str, Any], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    return [{**user, **context, **item} for item in items]


def torch_scores(
    published: PublishedModel, version: str, records: list[dict[str, Any]]
) -> np.ndarray:
    arrays = FeatureTransform(published.spec, strict=True).transform_records(
        records, ("user", "item", "context")
    )
    keys = (
        "user_cat",
        "user_num",
        "user_seq",
        "item_cat",
        "item_num",
        "context_cat",
        "context_num",
    )
    with torch.no_grad():
        out = published.rankers[version].forward_unsplit(
            **{k: torch.from_numpy(arrays[k]) for k in keys}
        )
    return out.double().numpy()  # (N, T)


def item_records(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    n = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items() if v[i] is not None} for i in range(n)]


def by_id(output: RankOutput) -> dict[str, dict[str, float]]:
    return {item.id: item.objectives for item in output.items}


def assert_matches(output: RankOutput, ids: list[str], expected: np.ndarray) -> None:
    got = by_id(output)
    for row, item_id in enumerate(ids):
        for t, task in enumerate(TASKS):
            assert got[item_id][task] == pytest.approx(expected[row, t], abs=1e-5, rel=1e-5)
        assert got[item_id]["ctcvr"] == pytest.approx(expected[row, 0] * expected[row, 1], abs=1e-5)


def test_scores_equal_unsplit_pytorch_and_onnxruntime_on_the_files(
    published_store: PublishedModel, registry: ModelRegistry
) -> None:
    req = request(9)
    output = rank(Ranker(registry), req)
    model = registry.active
    assert model is not None
    records = rows(req.user_features, req.context, item_records(req.candidate_features))
    assert_matches(output, req.candidate_ids, torch_scores(published_store, model.version, records))

    folder = ModelStore(published_store.store_dir).version_dir(model.name, model.version)
    arrays = FeatureTransform(published_store.spec, strict=True).transform_records(
        records, ("user", "item", "context")
    )
    graphs = model.manifest.graphs
    user = ort.InferenceSession(str(folder / graphs.user.file))
    cand = ort.InferenceSession(str(folder / graphs.candidates.file))
    rep = user.run(None, {n: arrays[n][:1] for n in graphs.user.input_names()})[0]
    feed = {"user_rep": rep} | {n: arrays[n] for n in graphs.candidates.input_names()[1:]}
    direct = np.stack(cand.run(None, feed), axis=1)
    assert_matches(output, req.candidate_ids, direct)


def test_request_features_override_store_rows_which_override_defaults(
    published_store: PublishedModel, registry: ModelRegistry
) -> None:
    items: dict[str, list[Any]] = {
        "item_id": ["i1", "i2", "i3"],
        "item_category": ["music", None, None],
        "item_price": [None, 3.0, None],
    }
    stored_items = {
        "c0": {"item_category": "news", "item_price": 500.0},  # category overridden by request
        "c1": {"item_category": "food", "item_price": 90.0},  # price overridden by request
    }  # c2 is not in the store: category and price take the spec defaults
    stored_user = {"user_age": "45+", "user_activity": 9.0}
    user = {"user_id": "u7", "user_activity": 1.0}  # age from the store, activity from the request
    store = InMemoryFeatureStore({"u7": stored_user}, stored_items)
    req = request(3, user_id="u7", user_features=user, candidate_features=items)
    output = rank(Ranker(registry, feature_store=store), req)
    expected_items: list[dict[str, Any]] = [
        {"item_id": "i1", "item_category": "music", "item_price": 500.0},
        {"item_id": "i2", "item_category": "food", "item_price": 3.0},
        {"item_id": "i3"},
    ]
    merged_user = {"user_id": "u7", "user_age": "45+", "user_activity": 1.0}
    version = registry.active.version  # type: ignore[union-attr]
    expected = torch_scores(
        published_store, version, rows(merged_user, req.context, expected_items)
    )
    assert_matches(output, req.candidate_ids, expected)
    assert output.feature_fetch is not None
    assert output.feature_fetch.hits == 3
    without_store = torch_scores(
        published_store, version, rows(user, req.context, item_records(items))
    )
    assert not np.allclose(expected, without_store)  # the store rows changed the scores


def test_garbage_in_the_store_falls_back_to_defaults(
    published_store: PublishedModel, registry: ModelRegistry
) -> None:
    items: dict[str, list[Any]] = {"item_id": ["i1", "i2"], "item_category": ["news", "games"]}
    store = InMemoryFeatureStore(
        {}, {"c0": {"item_price": "not a number"}, "c1": {"item_price": 7.0}}
    )
    output = rank(Ranker(registry, feature_store=store), request(2, candidate_features=items))
    version = registry.active.version  # type: ignore[union-attr]
    expected_items: list[dict[str, Any]] = [{"item_id": "i1", "item_category": "news"},
                      {"item_id": "i2", "item_category": "games", "item_price": 7.0}]  # fmt: skip
    expected = torch_scores(
        published_store, version, rows(raw_user(3), {"hour": "20"}, expected_items)
    )
    assert_matches(output, ["c0", "c1"], expected)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"user_features": {"user_activity": "high"}}, "user.features.user_activity"),
        (
            {"candidate_features": {"item_price": [1.0, float("nan")]}},
            "candidates[1].features.item_price",
        ),
        ({"context": {"hour": True}}, "context.hour"),
        ({"candidate_features": {"item_price": [1.0]}}, "candidates.features.item_price"),
    ],
)
def test_invalid_feature_values_name_the_field(
    registry: ModelRegistry, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        rank(Ranker(registry), request(2, **overrides))
    assert info.value.field == field


def test_user_cache_hit_skips_the_user_graph(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = registry.active
    assert model is not None
    calls = []
    original = model.sessions.user_rep

    def counting(arrays: dict[str, np.ndarray]) -> np.ndarray:
        calls.append(1)
        return original(arrays)

    monkeypatch.setattr(model.sessions, "user_rep", counting)
    ranker = Ranker(registry, user_cache=InMemoryUserRepCache(ttl_seconds=60))
    first = rank(ranker, request(4))
    second = rank(ranker, request(4))
    assert (first.user_cache, second.user_cache) == ("miss", "hit")
    assert len(calls) == 1
    np.testing.assert_allclose(second.fused_scores, first.fused_scores, rtol=1e-6)
    other = rank(ranker, request(4, user_features=raw_user(4)))  # new features: new digest
    assert other.user_cache == "miss"
    assert len(calls) == 2


def test_items_are_ordered_by_fused_score_and_cut_at_top_k(registry: ModelRegistry) -> None:
    full = rank(Ranker(registry), request(12))
    scores = [item.score for item in full.items]
    assert scores == sorted(scores, reverse=True)
    assert [item.rank for item in full.items] == list(range(1, 13))
    top = rank(Ranker(registry), request(12, top_k=3))
    assert [i.id for i in top.items] == [i.id for i in full.items[:3]]
    assert top.fused_scores.shape == (12,)  # histograms still see every candidate


def test_fusion_override_and_preset_selection(registry: ModelRegistry) -> None:
    override = FusionSpec.model_validate({"terms": {"watch_time": {"weight": 1.0}}})
    output = rank(Ranker(registry), request(6, fusion=override))
    assert output.fusion_name == "request"
    watch = [item.objectives["watch_time"] for item in output.items]
    assert watch == sorted(watch, reverse=True)
    default = rank(Ranker(registry), request(6))
    assert default.fusion_name == "balanced"
    assert rank(Ranker(registry), request(6, fusion_preset="balanced")).fusion_name == "balanced"


def test_fusion_override_with_unknown_objective_names_the_field(registry: ModelRegistry) -> None:
    override = FusionSpec.model_validate({"terms": {"click": {"weight": 1}, "like": {"weight": 1}}})
    with pytest.raises(InvalidInput, match="'like' is not an objective") as info:
        rank(Ranker(registry), request(2, fusion=override))
    assert info.value.field == "fusion.terms.like"
    with pytest.raises(InvalidInput) as preset:
        rank(Ranker(registry), request(2, fusion_preset="nope"))
    assert preset.value.field == "fusion_preset"


def test_rank_before_any_load_is_not_ready(published_store: PublishedModel) -> None:
    empty = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    with pytest.raises(NotReady):
        rank(Ranker(empty), request(2))


def test_a_swap_between_requests_changes_the_serving_version(
    published_store: PublishedModel,
) -> None:
    v1, v2 = published_store.versions
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    registry.load(v1)
    ranker = Ranker(registry)
    before = rank(ranker, request(5))
    registry.load(v2)
    after = rank(ranker, request(5))
    assert (before.version, after.version) == (v1, v2)
    assert not np.allclose(before.fused_scores, after.fused_scores)


def test_timings_cover_every_stage(registry: ModelRegistry) -> None:
    output = rank(Ranker(registry), request(3))
    assert set(output.timings) == {
        "feature_fetch", "transform", "user_graph", "candidate_graph", "fusion"
    }  # fmt: skip
    assert all(seconds >= 0 for seconds in output.timings.values())


def test_overflowing_fusion_override_is_a_client_error(registry: ModelRegistry) -> None:
    override = FusionSpec.model_validate(
        {"kind": "power_product", "terms": {"ctcvr": {"weight": -1000.0, "transform": "rank"}}}
    )
    with pytest.raises(InvalidInput, match="non-finite") as info:
        rank(Ranker(registry), request(4, fusion=override))
    assert info.value.field == "fusion"


def test_inline_scoring_ranks_exactly_like_the_executor(registry: ModelRegistry) -> None:
    req = request(11, top_k=5)
    inline, pooled = rank(Ranker(registry, inline=True), req), rank(Ranker(registry), req)
    assert inline.items == pooled.items
    assert set(inline.timings) == set(pooled.timings)
