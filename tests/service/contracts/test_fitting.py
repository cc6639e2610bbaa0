"""fit_spec: vocabularies by frequency, shared sequence vocabularies, clip bounds and mean/std."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.contracts.feature_spec import (
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    NumericStats,
)
from service.contracts.fitting import SpecFitter, fit_spec
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


def _stream_spec() -> FeatureSpec:
    return FeatureSpec.model_validate(
        {
            "name": "s",
            "features": [
                {"name": "a", "side": "user", "kind": "numeric", "clip": "auto", "log1p": True},
                {"name": "b", "side": "item", "kind": "numeric", "clip": "auto"},
                {"name": "c", "side": "item", "kind": "numeric", "clip": [0, 5]},
                {"name": "item", "side": "item", "kind": "categorical"},
                {
                    "name": "h",
                    "side": "user",
                    "kind": "sequence",
                    "item_feature": "item",
                    "max_length": 4,
                },
            ],
        }
    )


def _stats(spec: FeatureSpec, name: str) -> NumericStats:
    feature = spec.feature(name)
    assert isinstance(feature, NumericFeature)
    assert feature.stats is not None
    return feature.stats


def test_fitting_in_batches_across_shards_equals_fitting_in_one_pass() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    columns = {
        "a": rng.lognormal(0.0, 2.0, n),
        "b": rng.standard_normal(n) * 100 + 1e4,
        "c": rng.exponential(3.0, n),
        "item": rng.integers(0, 80, n),
        "h": np.array([list(rng.integers(0, 90, 3)) for _ in range(n)] + [None], dtype=object)[:n],
    }
    spec = _stream_spec()
    whole = fit_spec(spec, columns)
    shards = [SpecFitter(spec, max_rows=n) for _ in range(3)]
    for index, start in enumerate(range(0, n, 1500)):  # uneven batches, round-robin shards
        shards[index % 3].update({k: v[start : start + 1500] for k, v in columns.items()})
    shards[0].merge(shards[1])
    shards[0].merge(shards[2])
    streamed = shards[0].result()
    assert streamed.model_dump()["features"][3] == whole.model_dump()["features"][3]  # vocabulary
    for name in ("a", "b", "c"):
        one, many = _stats(whole, name), _stats(streamed, name)
        assert (many.clip_lo, many.clip_hi) == (one.clip_lo, one.clip_hi)  # exact order stats
        assert many.mean == pytest.approx(one.mean, rel=1e-12)
        assert many.std == pytest.approx(one.std, rel=1e-12)
    lo, hi = np.quantile(columns["b"], [0.001, 0.999])
    assert (_stats(streamed, "b").clip_lo, _stats(streamed, "b").clip_hi) == (lo, hi)


def test_fitter_sized_for_fewer_rows_than_it_sees_refuses_clearly() -> None:
    fitter = SpecFitter(_stream_spec(), max_rows=10)
    rng = np.random.default_rng(0)
    n = 20_000
    fitter.update(
        {
            "a": rng.random(n),
            "b": rng.random(n),
            "c": rng.random(n),
            "item": np.zeros(n),
            "h": np.array([[1]] * n),
        }
    )
    with pytest.raises(ValueError, match="upper bound on the rows"):
        fitter.result()
