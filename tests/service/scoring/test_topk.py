"""Top-k: best first, ties by input order, partial selection equal to a full stable sort."""

from __future__ import annotations

import numpy as np
import pytest

from service.scoring.topk import top_k


def reference(scores: list[float], k: int | None) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order if k is None else order[:k]


def test_ties_keep_input_order() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    assert top_k(scores, None).tolist() == [1, 3, 0, 2, 5, 4]


def test_ties_at_the_cut_are_filled_by_input_order() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1, 0.5])
    assert top_k(scores, 3).tolist() == [1, 0, 2]


@pytest.mark.parametrize("k", [1, 2, 7, 50, 199, 200, 500, None])
def test_partial_selection_equals_a_full_stable_sort(k: int | None) -> None:
    rng = np.random.default_rng(k or 0)
    scores = rng.integers(0, 20, size=200).astype(np.float64)  # many ties
    assert top_k(scores, k).tolist() == reference(scores.tolist(), k)


def test_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="top_k"):
        top_k(np.array([1.0]), 0)
