"""The checks and the fusion around the graphs, in C (service/_scores.c) and in numpy, held equal.

``scores_within`` and ``indices_within`` only answer the question numpy's checks ask; a failing
set goes to numpy for the message, so every error reads as before. ``weighted_sum`` adds the terms
in numpy's order with numpy's roundings: the fused scores are the same bits, and a sum that is not
finite is declined so numpy's path refuses it with its message.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.contracts import fusion as fusion_module
from service.contracts.fusion import FusionSpec, fuse
from service.errors import RankError
from service.model_store import ModelStore
from service.scoring import assembly as assembly_module
from service.scoring import registry as registry_module
from service.scoring.registry import LoadedModel, ModelRegistry
from tests.fixtures.published_model import PublishedModel

try:
    from service import _speedups as speedups
except ImportError:  # built without a C compiler: nothing to compare
    speedups = None  # type: ignore[assignment]
pytestmark = pytest.mark.skipif(speedups is None, reason="service._speedups not built")

SCORES = st.one_of(
    st.floats(width=64),
    st.sampled_from([0.0, -0.0, 1.0, np.nextafter(1.0, 2.0), np.nextafter(0.0, -1.0), 5e-324]),
)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
WEIGHTS = st.one_of(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e300]),
)


def numpy_within(columns: list[np.ndarray], unit: list[bool]) -> bool:
    finite = all(bool(np.isfinite(c).all()) for c in columns)
    inside = all(
        bool(((c >= 0.0) & (c <= 1.0)).all()) for c, u in zip(columns, unit, strict=True) if u
    )
    return finite and inside


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 30), st.lists(st.tuples(st.booleans(), st.data()), min_size=1, max_size=5))
def test_scores_within_answers_what_numpy_answers(n: int, spec: list[tuple[bool, Any]]) -> None:
    """Every float (NaN, infinities, -0.0, values next to 0 and 1) in binary and other columns."""
    columns = [
        np.array(d.draw(st.lists(SCORES, min_size=n, max_size=n)), dtype=np.float64)
        for _, d in spec
    ]
    unit = [u for u, _ in spec]
    assert speedups.scores_within(columns, unit) is numpy_within(columns, unit)
    strided = [np.repeat(c, 2)[::2] for c in columns]  # views with a stride read the same values
    assert speedups.scores_within(strided, unit) is numpy_within(columns, unit)


def test_scores_within_declines_columns_of_another_kind() -> None:
    fine = np.array([0.5, 0.25])
    declined: list[tuple[list[Any], list[bool]]] = [
        ([fine.astype(np.float32)], [True]),
        ([np.ones((2, 2))], [True]),
        ([fine, np.array([0.5])], [True, True]),  # lengths differ
        ([fine], [True, False]),  # a flag per column
        ([b"not floats"], [True]),
    ]
    for columns, unit in declined:
        assert speedups.scores_within(columns, unit) is None
    assert speedups.scores_within([], []) is True


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 30), st.lists(st.tuples(WEIGHTS, st.data()), min_size=1, max_size=6))
def test_weighted_sum_is_numpys_sum_bit_for_bit(n: int, terms: list[tuple[float, Any]]) -> None:
    """Any finite floats and weights: the same bits as ``total += w * g`` term by term, or a
    decline exactly when numpy's total is not finite."""
    columns = [
        np.array(d.draw(st.lists(FINITE, min_size=n, max_size=n)), dtype=np.float64)
        for _, d in terms
    ]
    weights = [w for w, _ in terms]
    total = np.zeros(n)
    with np.errstate(all="ignore"):
        for w, g in zip(weights, columns, strict=True):
            total += w * g
    written = speedups.weighted_sum(columns, weights)
    if not np.isfinite(total).all():
        assert written is None
        return
    assert written is not None
    assert np.frombuffer(written, dtype=np.float64).tobytes() == total.tobytes()
    strided = [np.repeat(c, 2)[1::2] for c in columns]
    assert speedups.weighted_sum(strided, weights) == written


def test_weighted_sum_declines_what_numpy_must_sum() -> None:
    fine = np.array([0.5, 0.25])
    declined: list[tuple[list[Any], list[Any]]] = [
        ([], []),
        ([fine], [1]),  # an int weight: numpy's path, whatever it does with it
        ([fine], [1.0, 2.0]),
        ([fine.astype(np.float32)], [1.0]),
        ([fine, np.array([1.0])], [1.0, 1.0]),
        ([np.array([1e308]), np.array([1e308])], [1.0, 1.0]),  # overflows to inf
    ]
    for columns, weights in declined:
        assert speedups.weighted_sum(columns, weights) is None


@pytest.fixture(params=["c", "numpy"])
def c_or_numpy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with the C passes and again with numpy's alone."""
    if request.param == "numpy":
        for module in (fusion_module, registry_module, assembly_module):
            monkeypatch.setattr(module, "_speedups", None)
    return str(request.param)


@pytest.mark.parametrize("transform", ["identity", "log1p", "zscore", "minmax", "rank"])
def test_fuse_gives_the_same_bits_with_and_without_c(
    transform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    objectives = {
        name: rng.random(257) * scale for name, scale in [("a", 1.0), ("b", 1.0), ("w", 300.0)]
    }
    spec = FusionSpec.model_validate(
        {
            "kind": "weighted_sum",
            "terms": {
                "a": {"weight": 1.0},
                "b": {"weight": 4.0},
                "w": {"weight": 0.1, "transform": transform},
            },
        }
    )
    with_c = fuse(spec, objectives)
    monkeypatch.setattr(fusion_module, "_speedups", None)
    assert fuse(spec, objectives).tobytes() == with_c.tobytes()


def test_an_overflowing_weighted_sum_is_refused_with_numpys_message(c_or_numpy: str) -> None:
    spec = FusionSpec.model_validate({"kind": "weighted_sum", "terms": {"x": {"weight": 1000.0}}})
    with pytest.raises(ValueError, match="weighted_sum fusion produced non-finite scores"):
        fuse(spec, {"x": np.array([2.0, 1e306])})


@pytest.fixture(scope="module")
def loaded(published_store: PublishedModel) -> LoadedModel:
    return ModelRegistry(ModelStore(published_store.store_dir), published_store.model).load()


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ({"click": [0.5, np.nan]}, "objective 'click' has 1 non-finite scores"),
        ({"watch_time": [np.inf, 3.0]}, "objective 'watch_time' has 1 non-finite scores"),
        ({"convert": [0.5, 1.0000001]}, r"binary objective 'convert' spans \[0.5, 1\], outside"),
        ({"click": [-1e-9, 0.2]}, r"binary objective 'click' spans \[-1e-09, 0.2\], outside"),
        ({"watch_time": [-5.0, 1e300]}, None),  # a regression task may take any finite value
    ],
)
def test_check_outputs_refuses_the_same_sets_with_the_same_message(
    loaded: LoadedModel, c_or_numpy: str, scores: dict[str, list[float]], message: str | None
) -> None:
    good = {name: np.array([0.2, 0.3]) for name in loaded.objectives}
    given_scores = {**good, **{name: np.array(v) for name, v in scores.items()}}
    if message is None:
        loaded.check_outputs(given_scores)
        return
    with pytest.raises(ValueError, match=message):
        loaded.check_outputs(given_scores)


def test_check_indices_refuses_an_index_outside_its_table_with_and_without_c(
    loaded: LoadedModel, c_or_numpy: str
) -> None:
    assembler = loaded.assembler
    user = assembler.user_arrays({}, None)
    assembler._check_indices(user, "user")  # defaults: every index in range
    cards = assembler._cards["user"]
    for column, value in [(0, -1), (cards.shape[0] - 1, int(cards[-1]))]:
        broken = {**user, "user_cat": user["user_cat"].copy()}
        broken["user_cat"][0, column] = value
        with pytest.raises(RankError, match=f"user_cat column {column} holds an index outside"):
            assembler._check_indices(broken, "user")
    for value in (-1, int(assembler._seq_cards[0])):
        broken = {**user, "user_seq": user["user_seq"].copy()}
        broken["user_seq"][0, 0, -1] = value
        with pytest.raises(RankError, match="user_seq holds an index outside its item table"):
            assembler._check_indices(broken, "user")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 6), st.integers(0, 5), st.data())
def test_indices_within_answers_what_numpy_answers(rows: int, width: int, data: Any) -> None:
    bounds = np.array(
        data.draw(st.lists(st.integers(0, 2**62), min_size=width, max_size=width)), dtype=np.int64
    )
    cells = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-2, 12))
    block = np.array(
        data.draw(
            st.lists(st.lists(cells, min_size=width, max_size=width), min_size=rows, max_size=rows)
        ),
        dtype=np.int64,
    ).reshape(rows, width)
    expected = bool(((block >= 0) & (block < bounds)).all())
    assert speedups.indices_within(block, bounds) is expected


def test_indices_within_declines_blocks_of_another_kind() -> None:
    block = np.array([[1, 2], [0, 3]], dtype=np.int64)
    bounds = np.array([2, 4], dtype=np.int64)
    assert speedups.indices_within(block, bounds) is True
    for other_block, other_bounds in [
        (block.astype(np.int32), bounds),
        (block.T, bounds),  # not C-contiguous
        (block[:, :1], bounds),
        (block.ravel(), bounds),
        (block, bounds.astype(np.float64)),
        (block, np.array([2, -4], dtype=np.int64)),  # a negative bound: numpy decides
    ]:
        assert speedups.indices_within(other_block, other_bounds) is None
