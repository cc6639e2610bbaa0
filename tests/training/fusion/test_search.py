"""Fusion search pieces: targets, fast scoring against the contract, grid, ascent, Pareto front."""

from __future__ import annotations

import numpy as np
import pytest

from service.contracts.fusion import fuse
from training.fusion.run import contract_scores
from training.fusion.search import Candidate, Terms, coordinate_ascent, grid, pareto_front
from training.fusion.targets import Evaluator, parse_metric, parse_target, target_value
from training.train.metrics import request_matrix

INDEX = request_matrix(np.array([0, 0, 0, 1, 1, 2, 2, 2, 2]))


def test_targets_parse_metrics_and_weights_and_refuse_anything_else() -> None:
    target = parse_target("ndcg@10:click=2, top@3:watch_time")
    assert [(m.name, w) for m, w in target] == [("ndcg@10:click", 2.0), ("top@3:watch_time", 1.0)]
    for bad in ("ndcg10:click", "ndcg@0:click", "top@5:", "mrr@5:click"):
        with pytest.raises(ValueError, match="ndcg@K:LABEL"):
            parse_metric(bad)
    with pytest.raises(ValueError, match="weight"):
        parse_target("ndcg@5:click=much")
    with pytest.raises(ValueError, match="no metric with a positive weight"):
        parse_target("ndcg@5:click=0")


def test_evaluator_scores_ndcg_and_the_top_k_value_per_request() -> None:
    labels = {"click": np.array([0, 1, 0, 1, 0, 0, 0, 0, 0.0]),
              "watch": np.array([0, 30, 0, 10, 0, 0, 0, 0, 0.0])}  # fmt: skip
    judge = Evaluator(INDEX, labels, [parse_metric("ndcg@2:click"), parse_metric("top@1:watch")])
    scores = np.array([0.9, 0.5, 0.1, 0.2, 0.7, 0, 0, 0, 0])
    values = judge(scores)
    # request 0: the click sits second (1 / log2 3); request 1: second; request 2: nothing to find
    assert values["ndcg@2:click"] == pytest.approx(1 / np.log2(3))
    assert values["top@1:watch"] == pytest.approx(0.0)  # no request's top row was watched
    perfect = judge(labels["watch"])
    assert perfect["ndcg@2:click"] == pytest.approx(1.0)
    assert perfect["top@1:watch"] == pytest.approx((30 + 10 + 0) / 3)
    assert target_value(perfect, values, [(parse_metric("ndcg@2:click"), 1.0)]) > 1.5


@pytest.mark.parametrize("kind", ["weighted_sum", "power_product"])
def test_fast_scores_order_every_request_as_the_fusion_contract(kind: str) -> None:
    rng = np.random.default_rng(0)
    objectives = {"click": rng.uniform(0, 1, 9), "watch_time": rng.uniform(0, 300, 9)}
    terms = Terms.build(objectives, INDEX, {"click": "identity", "watch_time": "log1p"})
    candidate = Candidate(kind, (1.0, 0.4))  # type: ignore[arg-type]
    spec = candidate.spec(terms, 1e-6)
    fast = terms.scores(candidate, 1e-6)
    slow = contract_scores(spec, objectives, INDEX)
    for request in INDEX:
        rows = request[request >= 0]
        assert list(np.argsort(-fast[rows])) == list(np.argsort(-slow[rows]))
        np.testing.assert_allclose(
            slow[rows], fuse(spec, {k: v[rows] for k, v in objectives.items()})
        )


def test_grid_fixes_the_first_weight_and_refuses_an_oversized_grid() -> None:
    candidates = grid(["weighted_sum", "power_product"], 3, [0.0, 1.0, 2.0])
    assert len(candidates) == 2 * 9
    assert all(c.weights[0] == 1.0 for c in candidates)
    with pytest.raises(ValueError, match="--method coordinate"):
        grid(["weighted_sum"], 12, [0.0, 1.0, 2.0, 4.0])


def test_coordinate_ascent_climbs_to_the_best_weight_ratio() -> None:
    def score(candidate: Candidate) -> float:  # best at w2 / w1 = 4
        return -abs(float(np.log2(max(candidate.weights[1], 1e-9))) - 2.0)

    tried = coordinate_ascent(score, Candidate("weighted_sum", (1.0, 0.25)))
    assert tried[-1].weights == pytest.approx((1.0, 4.0))
    assert len(tried) < 40


def test_pareto_front_keeps_the_points_nothing_beats_on_both_metrics() -> None:
    points = np.array([[0.1, 0.9], [0.5, 0.5], [0.4, 0.4], [0.9, 0.1], [0.5, 0.2]])
    assert pareto_front(points).tolist() == [0, 1, 3]
