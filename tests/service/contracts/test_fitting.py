"""fit_spec: vocabularies by frequency, shared sequence vocabularies, clip bounds and mean/std."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.contracts.feature_spec import CategoricalFeature, FeatureSpec, NumericFeature
from service.contracts.fitting import fit_spec
from service.contracts.transform import FeatureTransform


def spec(*features: dict[str, Any]) -> FeatureSpec:
    return FeatureSpec.model_validate({"name": "f", "features": list(features)})


def vocab_of(fitted: FeatureSpec, name: str) -> list[str] | None:
    feature = fitted.feature(name)
    assert isinstance(feature, CategoricalFeature)
    return feature.vocabulary


def stats_of(fitted: FeatureSpec, name: str) -> tuple[float, float, float | None, float | None]:
    feature = fitted.feature(name)
    assert isinstance(feature, NumericFeature)
    assert feature.stats is not None
    s = feature.stats
    return s.mean, s.std, s.clip_lo, s.clip_hi


CAT = {"name": "c", "side": "item", "kind": "categorical"}


def test_vocabulary_is_most_frequent_first_with_ties_in_code_point_order() -> None:
    values = ["b", "a", "c", "a", "b", "d", 7, 7.0, None, True]
    fitted = fit_spec(spec(CAT), {"c": values})
    assert vocab_of(fitted, "c") == ["7", "a", "b", "c", "d"]
    assert fitted.is_fitted
    assert fitted.cardinalities("item") == [6]


def test_fitting_is_deterministic_whatever_the_row_order() -> None:
    rng = np.random.default_rng(1)
    values = [f"v{i}" for i in rng.integers(0, 30, 500)]
    first = vocab_of(fit_spec(spec(CAT), {"c": values}), "c")
    second = vocab_of(fit_spec(spec(CAT), {"c": list(reversed(values))}), "c")
    assert first == second


def test_min_count_and_max_vocab_limit_the_vocabulary() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]
    assert vocab_of(fit_spec(spec(CAT | {"min_count": 2}), {"c": values}), "c") == ["a", "b", "c"]
    assert vocab_of(fit_spec(spec(CAT | {"max_vocab": 2}), {"c": values}), "c") == ["a", "b"]


def test_sequence_ids_join_the_item_vocabulary() -> None:
    fitted = fit_spec(
        spec(
            {"name": "item_id", "side": "item", "kind": "categorical"},
            {"name": "hist", "side": "user", "kind": "sequence", "max_length": 2}
            | {"item_feature": "item_id"},
        ),
        {"item_id": ["i1", "i2", "i1"], "hist": [["i3", "i3", "i3"], None, np.array(["i2", "i3"])]},
    )
    assert vocab_of(fitted, "item_id") == ["i3", "i1", "i2"]
    arrays = FeatureTransform(fitted, strict=True).transform_records(
        [{"hist": ["i2", "i1"], "item_id": "i3"}], ["user", "item"]
    )
    assert arrays["user_seq"].tolist() == [[[3, 2]]]
    assert arrays["item_cat"].tolist() == [[1]]


def test_declared_vocabularies_and_hashed_features_are_kept() -> None:
    fitted = fit_spec(
        spec(
            CAT | {"vocabulary": ["x", "y"]},
            {"name": "h", "side": "item", "kind": "categorical", "encoding": "hash", "buckets": 3},
        ),
        {"c": ["a", "a"]},
    )
    assert vocab_of(fitted, "c") == ["x", "y"]
    assert fitted.cardinalities("item") == [3, 4]


def test_numeric_mean_and_std_without_clip() -> None:
    x = [1.0, 2.0, 3.0, 4.0, None, float("nan"), "bad"]
    fitted = fit_spec(
        spec(CAT, {"name": "x", "side": "item", "kind": "numeric"}), {"c": [], "x": x}
    )
    mean, std, lo, hi = stats_of(fitted, "x")
    assert (mean, lo, hi) == (2.5, None, None)
    assert std == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]))


def test_auto_clip_uses_extreme_quantiles_before_log1p_and_stats() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(10.0, 20_000)
    x[:5] = 1e9  # outliers
    feature = {"name": "x", "side": "item", "kind": "numeric", "clip": "auto", "log1p": True}
    mean, std, lo, hi = stats_of(fit_spec(spec(CAT, feature), {"c": [], "x": x}), "x")
    q_lo, q_hi = np.quantile(x, [0.001, 0.999])
    assert lo == pytest.approx(q_lo)
    assert hi == pytest.approx(q_hi)
    transformed = np.log1p(np.clip(x, q_lo, q_hi))
    assert mean == pytest.approx(transformed.mean())
    assert std == pytest.approx(transformed.std())


def test_fixed_clip_is_recorded_and_a_constant_feature_gets_unit_std() -> None:
    feature = {"name": "x", "side": "item", "kind": "numeric", "clip": [0, 5]}
    mean, std, lo, hi = stats_of(fit_spec(spec(CAT, feature), {"c": [], "x": [9, 7, 8]}), "x")
    assert (mean, std, lo, hi) == (5.0, 1.0, 0.0, 5.0)


def test_fitted_data_transforms_to_zero_mean_unit_variance() -> None:
    x = np.random.default_rng(3).normal(50, 7, 1000)
    fitted = fit_spec(
        spec(CAT, {"name": "x", "side": "item", "kind": "numeric"}), {"c": [], "x": x}
    )
    out = FeatureTransform(fitted, strict=True).transform_columns({"x": x}, 1000, ["item"])
    assert out["item_num"].mean() == pytest.approx(0.0, abs=1e-5)
    assert out["item_num"].std() == pytest.approx(1.0, abs=1e-4)


def test_missing_columns_and_empty_numbers_are_explained() -> None:
    with pytest.raises(ValueError, match="no column 'c' in the training data"):
        fit_spec(spec(CAT), {"other": [1]})
    with pytest.raises(ValueError, match="'x': no finite number"):
        fit_spec(
            spec(CAT, {"name": "x", "side": "item", "kind": "numeric"}), {"c": [], "x": [None]}
        )


def test_fitted_spec_survives_a_yaml_round_trip(tmp_path: Path) -> None:
    fitted = fit_spec(
        spec(CAT, {"name": "x", "side": "item", "kind": "numeric", "clip": "auto"}),
        {"c": ["a", "é", 3], "x": [1.0, 2.0, 3.5]},
    )
    fitted.dump(tmp_path / "spec.yaml")
    assert FeatureSpec.load(tmp_path / "spec.yaml") == fitted
