"""Top-k: best first, ties by input order, partial selection equal to a full stable sort; the C
extension's radix order equal to the numpy path's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.scoring.topk import top_k, top_k_numpy

try:
    from service import _speedups as speedups
except ImportError:  # built without a C compiler: top_k is the numpy path
    speedups = None  # type: ignore[assignment]


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


def test_minus_zero_ties_with_zero_and_infinities_sort_at_the_ends() -> None:
    scores = np.array([0.0, -0.0, np.inf, -1.0, 0.0, -np.inf, -0.0, 5e-324, -5e-324])
    assert top_k(scores, None).tolist() == reference(scores.tolist(), None)
    assert top_k(scores, None).tolist() == [2, 7, 0, 1, 4, 6, 8, 3, 5]


SCORES = st.one_of(
    st.floats(allow_nan=False, width=64),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e-300, -1e-300, 2.0**-1074, 1e308, -1e308]),
)


@settings(max_examples=300)
@given(scores=st.lists(SCORES, max_size=300), data=st.data())
def test_the_c_order_is_numpys_and_a_stable_sort(scores: list[float], data: st.DataObject) -> None:
    """The extension's radix order against the numpy path and a plain stable sort, any k."""
    k = data.draw(st.one_of(st.none(), st.integers(1, len(scores) + 3)))
    array = np.array(scores, dtype=np.float64)
    expected = reference(scores, k)
    assert top_k(array, k).tolist() == expected
    assert top_k_numpy(array, None if k is None or k >= len(scores) else k).tolist() == expected


@pytest.mark.skipif(speedups is None, reason="service._speedups not built (no C compiler)")
def test_best_first_declines_what_it_cannot_order() -> None:
    assert speedups.best_first(np.array([0.5, np.nan, 0.1]), -1) is None  # no order for NaN
    assert speedups.best_first(np.array([0.5, 0.1], dtype=np.float32), -1) is None
    assert speedups.best_first([0.5, 0.1], -1) is None  # not a buffer
    assert speedups.best_first(np.zeros((2, 2)), -1) is None
    strided = np.array([0.1, 9.0, 0.3, 9.0, 0.2, 9.0])[::2]  # every other value: any stride
    two = speedups.best_first(strided, 2)
    assert two is not None
    assert np.frombuffer(two, dtype=np.intp).tolist() == [1, 2]
    assert speedups.best_first(np.array([], dtype=np.float64), -1) == bytearray()
    # NaN is not a score the answer can hold (``check_outputs`` refuses it); numpy orders it last
    assert top_k(np.array([0.5, np.nan, 0.1]), None).tolist() == [0, 2, 1]
