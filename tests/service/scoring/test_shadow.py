"""Shadow scoring: agreement figures, a bounded queue that drops (and counts) instead of waiting."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from service.metrics import ServiceMetrics
from service.scoring.assembly import RankInput
from service.scoring.shadow import ShadowJob, ShadowScorer, agreement, spearman


def test_rank_correlation_is_one_for_the_same_order_and_minus_one_reversed() -> None:
    a = np.array([0.1, 0.5, 0.3, 0.9])
    assert spearman(a, a * 10 + 1) == 1.0
    assert spearman(a, -a) == -1.0
    assert spearman(np.array([1.0]), np.array([2.0])) is None
    assert spearman(a, np.ones(4)) is None  # constant scores: undefined
    ties = spearman(np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert ties is not None
    assert 0.9 < ties < 1.0


def test_top_k_overlap_counts_shared_top_candidates() -> None:
    live = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert agreement(live, live, 2).overlap == 1.0
    assert agreement(live, -live, 2).overlap == 0.0
    assert agreement(live, np.array([5.0, 1.0, 4.0, 2.0, 3.0]), 2).overlap == 0.5
    assert agreement(live, live, 50).overlap == 1.0  # k beyond N: every candidate


def _job() -> ShadowJob:
    shadow: Any = SimpleNamespace(version="v2")
    request = RankInput(
        user_id="u", user_features={}, context={}, candidate_ids=["a"], candidate_features={}
    )
    return ShadowJob(shadow, request, None, np.array([1.0]))


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    registry = CollectorRegistry()
    scorer = ShadowScorer(ServiceMetrics(registry), registry, queue_size=2)
    try:
        accepted = [scorer.submit(_job()) for _ in range(5)]  # no worker: nothing is consumed
        assert accepted == [True, True, False, False, False]
        assert scorer.queued == 2
        dropped = registry.get_sample_value(
            "mtrank_shadow_requests_total", {"version": "v2", "result": "dropped"}
        )
        assert dropped == 3
    finally:
        scorer._executor.shutdown()
