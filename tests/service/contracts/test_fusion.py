"""Fusion formulas recomputed independently with plain Python, presets, validation errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from service.contracts.fusion import (
    FusionConfig,
    FusionSpec,
    Transform,
    UnknownObjectiveError,
    apply_transform,
    derive_objectives,
    fuse,
)
from service.contracts.tasks import DerivedObjective

CLICK = [0.10, 0.40, 0.40, 0.05, 0.90]
CONVERT = [0.50, 0.20, 0.10, 0.90, 0.00]
WATCH = [12.0, 0.0, 300.0, 45.0, 3.0]


def objectives() -> dict[str, np.ndarray]:
    tasks = {
        "click": np.array(CLICK, dtype=np.float32),
        "convert": np.array(CONVERT, dtype=np.float32),
        "watch_time": np.array(WATCH, dtype=np.float32),
    }
    return derive_objectives(tasks, [DerivedObjective(id="ctcvr", product=["click", "convert"])])


def py_rank(values: list[float]) -> list[float]:
    out = []
    for v in values:
        below = sum(1 for w in values if w < v)
        equal = sum(1 for w in values if w == v)
        out.append((below + (equal + 1) / 2) / len(values))
    return out


def py_transform(values: list[float], kind: str) -> list[float]:
    n = len(values)
    if kind == "identity":
        return list(values)
    if kind == "log1p":
        return [math.log(1 + max(v, 0.0)) for v in values]
    if kind == "rank":
        return py_rank(values)
    lo, hi = min(values), max(values)
    if lo == hi:
        return [0.0] * n
    if kind == "minmax":
        return [(v - lo) / (hi - lo) for v in values]
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return [(v - mean) / std for v in values]


def as_floats(values: list[float]) -> list[float]:
    return [float(np.float32(v)) for v in values]  # what the model's float32 outputs hold


def order(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def test_ctcvr_is_the_product_of_click_and_convert() -> None:
    got = objectives()["ctcvr"]
    expected = [a * b for a, b in zip(as_floats(CLICK), as_floats(CONVERT), strict=True)]
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("transform", ["identity", "log1p", "zscore", "minmax", "rank"])
def test_weighted_sum_matches_a_python_recomputation(transform: str) -> None:
    spec = FusionSpec.model_validate(
        {
            "kind": "weighted_sum",
            "terms": {
                "click": {"weight": 1.0},
                "ctcvr": {"weight": 4.0},
                "watch_time": {"weight": 0.2, "transform": transform},
            },
        }
    )
    got = fuse(spec, objectives())
    click, convert, watch = as_floats(CLICK), as_floats(CONVERT), as_floats(WATCH)
    g = py_transform(watch, transform)
    expected = [click[i] + 4.0 * click[i] * convert[i] + 0.2 * g[i] for i in range(len(click))]
    assert got.tolist() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert order(got.tolist()) == order(expected)


def test_power_product_matches_a_python_recomputation() -> None:
    spec = FusionSpec.model_validate(
        {
            "kind": "power_product",
            "epsilon": 1e-3,
            "terms": {
                "click": {"weight": 0.7},
                "watch_time": {"weight": 0.3, "transform": "log1p"},
            },
        }
    )
    got = fuse(spec, objectives())
    click, watch = as_floats(CLICK), as_floats(WATCH)
    expected = [(click[i] + 1e-3) ** 0.7 * (math.log1p(watch[i]) + 1e-3) ** 0.3 for i in range(5)]
    assert got.tolist() == pytest.approx(expected, rel=1e-9)
    assert order(got.tolist()) == order(expected)


def test_power_product_clips_negative_inputs_to_zero_before_epsilon() -> None:
    spec = FusionSpec.model_validate(
        {"kind": "power_product", "epsilon": 0.01, "terms": {"x": {"weight": 2.0}}}
    )
    got = fuse(spec, {"x": np.array([-5.0, 0.0, 0.5])})
    assert got.tolist() == pytest.approx([0.01**2, 0.01**2, 0.51**2])


def test_power_product_refuses_zscore() -> None:
    with pytest.raises(ValueError, match="zscore"):
        FusionSpec.model_validate(
            {"kind": "power_product", "terms": {"click": {"weight": 1, "transform": "zscore"}}}
        )


def test_rank_is_a_percentile_with_averaged_ties() -> None:
    got = apply_transform(np.array([3.0, 1.0, 3.0, 2.0]), "rank")
    assert got.tolist() == [3.5 / 4, 1 / 4, 3.5 / 4, 2 / 4]
    assert got.min() > 0
    assert got.max() <= 1


@pytest.mark.parametrize("transform", ["zscore", "minmax"])
def test_constant_columns_normalise_to_zero(transform: Transform) -> None:
    got = apply_transform(np.full(4, 0.1), transform)  # 0.1 is not exact: mean/std round off
    assert got.tolist() == [0.0] * 4


def test_log1p_treats_negative_values_as_zero() -> None:
    assert apply_transform(np.array([-0.5, 0.0, math.e - 1]), "log1p").tolist() == pytest.approx(
        [0.0, 0.0, 1.0]
    )


def test_unknown_objective_is_named_with_its_field() -> None:
    spec = FusionSpec.model_validate({"terms": {"click": {"weight": 1}, "like": {"weight": 2}}})
    with pytest.raises(UnknownObjectiveError, match=r"fusion\.terms\.like") as info:
        spec.validate_objectives(["click", "convert", "ctcvr"])
    assert info.value.objective == "like"
    assert "click, convert, ctcvr" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"terms": {}}, "at least 1"),
        ({"terms": {"click": {"weight": float("nan")}}}, "finite"),
        ({"terms": {"click": {"weight": 1, "transform": "sqrt"}}}, "transform"),
        ({"terms": {"Click": {"weight": 1}}}, "objective id"),
        ({"kind": "max", "terms": {"click": {"weight": 1}}}, "kind"),
        ({"terms": {"click": {"weight": 1, "bias": 2}}}, "bias"),
        ({"kind": "power_product", "epsilon": 0, "terms": {"c": {"weight": 1}}}, "epsilon"),
    ],
)
def test_invalid_specs_are_refused_with_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FusionSpec.model_validate(spec)


def test_config_loads_presets_and_validates_against_objectives(tmp_path: Path) -> None:
    path = tmp_path / "fusion.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "default": "balanced",
                "presets": {
                    "balanced": {"kind": "weighted_sum", "terms": {"click": {"weight": 1.0}}},
                    "watch": {
                        "kind": "power_product",
                        "terms": {"click": {"weight": 1.0}, "watch_time": {"weight": 0.5}},
                    },
                },
            }
        )
    )
    config = FusionConfig.load(path)
    assert config.preset() is config.presets["balanced"]
    assert config.preset("watch").kind == "power_product"
    config.validate_objectives(["click", "watch_time"])
    with pytest.raises(UnknownObjectiveError, match=r"presets\.watch\.terms\.watch_time"):
        config.validate_objectives(["click", "convert"])


def test_config_with_unknown_default_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fusion.yaml"
    path.write_text("default: nope\npresets: {a: {terms: {click: {weight: 1}}}}\n")
    with pytest.raises(ValueError, match=r"fusion\.yaml.*default preset 'nope'"):
        FusionConfig.load(path)


def test_config_errors_name_the_invalid_field(tmp_path: Path) -> None:
    path = tmp_path / "fusion.yaml"
    path.write_text("default: a\npresets: {a: {terms: {click: {weight: .inf}}}}\n")
    with pytest.raises(ValueError, match=r"presets\.a\.terms\.click\.weight: .*finite"):
        FusionConfig.load(path)


def test_config_that_is_not_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fusion.yaml"
    path.write_text("default: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        FusionConfig.load(path)


def test_publish_default_fusion_fits_the_contract() -> None:
    from service.contracts.tasks import TaskSpec
    from training.export.publish import default_fusion  # imports torch: keep it local

    tasks = [
        TaskSpec(id="click", type="binary"),
        TaskSpec(id="convert", type="binary", sample_space="click"),
        TaskSpec(id="watch_time", type="regression", target_transform="log1p"),
    ]
    derived = [DerivedObjective(id="ctcvr", product=["click", "convert"])]
    config = FusionConfig.from_data(default_fusion(tasks, derived))
    config.validate_objectives(["click", "convert", "watch_time", "ctcvr"])
    assert config.preset().terms["watch_time"].transform == "log1p"


def test_overflowing_power_product_is_an_error_not_infinity() -> None:
    spec = FusionSpec.model_validate({"kind": "power_product", "terms": {"x": {"weight": 1000.0}}})
    with pytest.raises(ValueError, match="non-finite"):
        fuse(spec, {"x": np.array([1e6, 2.0])})
