"""Bucketized numbers: spec validation, boundary fitting, and the transform in both modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.contracts.feature_spec import BucketizedFeature, FeatureSpec
from service.contracts.fitting import SpecFitter, bucket_boundaries, fit_spec
from service.contracts.transform import FeatureTransform, FeatureValueError

MODES = [pytest.param(True, id="strict"), pytest.param(False, id="lenient")]


def spec(**gain: Any) -> FeatureSpec:
    """item_kind (categorical), gain (bucketized), price (numeric), in that spec order."""
    return FeatureSpec.model_validate(
        {
            "name": "b",
            "features": [
                {"name": "item_kind", "side": "item", "kind": "categorical", "vocabulary": ["a"]},
                {"name": "gain", "side": "item", "kind": "bucketized"} | gain,
                {"name": "price", "side": "item", "kind": "numeric"}
                | {"stats": {"mean": 0.0, "std": 1.0}},
            ],
        }
    )


def items(strict: bool, fitted: FeatureSpec, gain: list[Any]) -> dict[str, np.ndarray]:
    columns = {"gain": gain, "price": [1.0] * len(gain)}
    transform = FeatureTransform(fitted, strict=strict)
    return transform.transform_columns(columns, len(gain), ["item"], "candidates.features")


def test_given_boundaries_are_lower_inclusive_edges_and_missing_is_index_zero() -> None:
    fitted = spec(boundaries=[0.0, 1000.0, 7000.0])
    assert fitted.cardinalities("item") == [2, 5]  # item_kind; gain: missing + 4 buckets
    arrays = items(True, fitted, [-5, 0, 999.5, 1000, 6999, 7000, 1e9, None])
    assert arrays["item_cat"][:, 1].tolist() == [1, 2, 2, 3, 3, 4, 4, 0]
    assert arrays["item_num"].shape == (8, 1)  # only price: no keep_value


def test_keep_value_adds_the_scaled_number_in_spec_order() -> None:
    fitted = spec(boundaries=[10.0], keep_value=True, log1p=True, stats={"mean": 1.0, "std": 2.0})
    assert fitted.numeric_names("item") == ["gain", "price"]
    arrays = items(True, fitted, [0.0, np.e - 1.0, None])
    assert arrays["item_cat"][:, 1].tolist() == [1, 1, 0]
    np.testing.assert_allclose(arrays["item_num"][:, 0], [-0.5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(arrays["item_num"][:, 1], [1.0, 1.0, 1.0])


def test_a_default_puts_missing_values_into_the_defaults_bucket() -> None:
    fitted = spec(boundaries=[5.0], default=7.0)
    arrays = items(True, fitted, [None, 1.0])
    assert arrays["item_cat"][:, 1].tolist() == [2, 1]
    absent = FeatureTransform(fitted, strict=True).transform_columns({}, 2, ["item"])
    assert absent["item_cat"][:, 1].tolist() == [2, 2]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (-float("inf"), "not a finite number"),
        ("1000", "expected a number, got str"),
        (True, "expected a number, got bool"),
        ([1.0], "expected a number, got list"),
    ],
)
def test_strict_mode_refuses_bad_numbers_naming_the_field_and_row(value: Any, problem: str) -> None:
    with pytest.raises(FeatureValueError, match=problem) as caught:
        items(True, spec(boundaries=[1.0]), [2.0, value])
    assert (caught.value.field, caught.value.row) == ("candidates.features.gain", 1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "1000", True])
def test_lenient_mode_treats_bad_numbers_as_missing(value: Any) -> None:
    fitted = spec(boundaries=[1.0], keep_value=True, stats={"mean": 4.0, "std": 1.0})
    arrays = items(False, fitted, [2.0, value])
    assert arrays["item_cat"][:, 1].tolist() == [2, 0]
    assert arrays["item_num"][:, 0].tolist() == [-2.0, 0.0]


@pytest.mark.parametrize("strict", MODES)
def test_records_and_columns_give_identical_buckets(strict: bool) -> None:
    fitted = spec(boundaries=[0.0, 3.0], keep_value=True, stats={"mean": 1.0, "std": 1.0})
    gains = [4.0, None, -1, 3]
    transform = FeatureTransform(fitted, strict=strict)
    by_rows = transform.transform_records([{"gain": g} for g in gains], ["item"])
    by_columns = transform.transform_columns({"gain": gains}, 4, ["item"])
    for name in ("item_cat", "item_num"):
        np.testing.assert_array_equal(by_rows[name], by_columns[name])


def test_required_bucketized_feature_must_be_sent() -> None:
    fitted = spec(boundaries=[1.0], required=True)
    with pytest.raises(FeatureValueError, match="required but missing") as caught:
        items(False, fitted, [1.0, None])
    assert caught.value.field == "candidates.features.gain"


def test_a_spike_gets_its_own_bucket_and_the_rest_share_quantiles() -> None:
    # 90 % zeros, then 100 distinct gains: the zeros must not swallow the small gains
    x = np.concatenate([np.zeros(900), np.arange(1.0, 101.0)])
    edges = bucket_boundaries(*np.unique(x, return_counts=True), max_buckets=6)
    assert edges[0] == 1.0  # zero alone in bucket 1; gains from 1 up start bucket 2
    assert len(edges) == 5  # the spike plus 5 equal-frequency buckets of the other 100 rows
    counts = np.bincount(np.searchsorted(edges, x[900:], side="right"))[1:]
    assert counts.min() >= 15
    assert counts.max() <= 25


def test_few_distinct_values_get_one_bucket_each() -> None:
    few = np.unique([3.0, 1.0, 2.0, 2.0, 1.0], return_counts=True)
    assert bucket_boundaries(*few, max_buckets=16) == [2.0, 3.0]
    assert bucket_boundaries(*np.unique([5.0, 5.0], return_counts=True), max_buckets=4) == []


def test_boundaries_fitted_in_batches_or_shards_equal_one_pass() -> None:
    spec = FeatureSpec.model_validate(
        {
            "name": "s",
            "features": [
                {"name": "gain", "side": "item", "kind": "bucketized", "max_buckets": 8}
                | {"keep_value": True, "log1p": True}
            ],
        }
    )
    rng = np.random.default_rng(3)
    x = np.where(rng.random(3000) < 0.6, 0.0, np.round(rng.lognormal(7, 2, 3000)))
    whole = fit_spec(spec, {"gain": x})
    first, second = SpecFitter(spec, max_rows=3000), SpecFitter(spec, max_rows=3000)
    first.update({"gain": x[:1000]})
    first.update({"gain": x[1000:1700]})
    second.update({"gain": x[1700:]})
    first.merge(second)
    sharded, one_pass = first.result().feature("gain"), whole.feature("gain")
    assert isinstance(sharded, BucketizedFeature)
    assert isinstance(one_pass, BucketizedFeature)
    assert sharded.boundaries == one_pass.boundaries
    assert sharded.stats is not None
    assert one_pass.stats is not None
    assert sharded.stats.mean == pytest.approx(one_pass.stats.mean, rel=1e-12)
    assert sharded.boundaries is not None
    assert sharded.boundaries[0] > 0.0  # the zeros' spike is a bucket of its own


def test_fitting_fills_boundaries_and_stats_and_keeps_given_ones(tmp_path: Path) -> None:
    unfitted = FeatureSpec.model_validate(
        {
            "name": "f",
            "features": [
                {"name": "fitted", "side": "item", "kind": "bucketized", "max_buckets": 4}
                | {"keep_value": True},
                {"name": "given", "side": "item", "kind": "bucketized", "boundaries": [50.0]},
            ],
        }
    )
    assert not unfitted.is_fitted
    values = [float(v) for v in range(100)]
    fitted = fit_spec(unfitted, {"fitted": values, "given": values})
    first, second = fitted.feature("fitted"), fitted.feature("given")
    assert isinstance(first, BucketizedFeature)
    assert isinstance(second, BucketizedFeature)
    assert first.boundaries == [25.0, 50.0, 75.0]
    assert first.stats is not None
    assert first.stats.mean == pytest.approx(49.5)
    assert (second.boundaries, second.stats) == ([50.0], None)
    path = tmp_path / "spec.yaml"
    fitted.dump(path)
    assert FeatureSpec.load(path) == fitted


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"boundaries": [1.0, 1.0]}, "strictly increasing"),
        ({"boundaries": [2.0, 1.0]}, "strictly increasing"),
        ({"boundaries": [float("inf")]}, "finite"),
        ({"max_buckets": 1}, "greater than or equal to 2"),
        ({"vocabulary": ["a"]}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_bucketized_features_are_rejected(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**fields)


def test_unfitted_bucketized_feature_has_no_cardinality_yet() -> None:
    unfitted = spec()
    assert not unfitted.is_fitted
    with pytest.raises(ValueError, match="no boundaries yet"):
        unfitted.cardinalities("item")
