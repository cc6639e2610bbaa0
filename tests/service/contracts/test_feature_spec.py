"""FeatureSpec: the YAML contract, its validation and the layout helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.contracts.feature_spec import (
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    NumericStats,
    SequenceFeature,
)

DESIGN_EXAMPLE = """
name: simulator
features:
  - {name: user_id,    side: user,     kind: categorical, encoding: hash, buckets: 50000, embedding_dim: 16}
  - {name: user_age,   side: user,     kind: categorical, encoding: vocab, max_vocab: 100}
  - {name: user_activity, side: user,  kind: numeric, default: null, clip: auto, log1p: false}
  - {name: history,    side: user,     kind: sequence, max_length: 30, item_feature: item_id}
  - {name: item_id,    side: item,     kind: categorical, encoding: hash, buckets: 20000, embedding_dim: 16}
  - {name: item_price, side: item,     kind: numeric, log1p: true, clip: auto}
  - {name: hour,       side: context,  kind: categorical, encoding: vocab}
  - {name: position,   side: training, kind: categorical, encoding: vocab}
"""


def spec_dict(*features: dict[str, Any]) -> dict[str, Any]:
    item = {"name": "item_id", "side": "item", "kind": "categorical", "encoding": "hash"}
    return {"name": "t", "features": [item | {"buckets": 10}, *features]}


@pytest.fixture
def design_spec(tmp_path: Path) -> FeatureSpec:
    path = tmp_path / "spec.yaml"
    path.write_text(DESIGN_EXAMPLE)
    return FeatureSpec.load(path)


def test_design_example_loads_with_kinds_sides_and_defaults(design_spec: FeatureSpec) -> None:
    age = design_spec.feature("user_age")
    assert isinstance(age, CategoricalFeature)
    assert (age.max_vocab, age.min_count, age.vocabulary, age.required) == (100, 1, None, False)
    price = design_spec.feature("item_price")
    assert isinstance(price, NumericFeature)
    assert (price.clip, price.log1p, price.normalize, price.default) == (
        "auto",
        True,
        "standard",
        None,
    )
    history = design_spec.feature("history")
    assert isinstance(history, SequenceFeature)
    assert design_spec.item_feature_of(history).name == "item_id"
    assert not design_spec.is_fitted


def test_helpers_list_features_by_side_and_kind_in_spec_order(design_spec: FeatureSpec) -> None:
    assert [f.name for f in design_spec.features_of("user", "categorical")] == [
        "user_id",
        "user_age",
    ]
    assert design_spec.numeric_names("item") == ["item_price"]
    assert design_spec.numeric_names("context") == []
    assert [s.name for s in design_spec.sequences()] == ["history"]
    assert design_spec.cardinalities("item") == [20001]
    with pytest.raises(ValueError, match="'hour' has no vocabulary yet: fit the spec"):
        design_spec.cardinalities("context")


def test_fitted_when_every_vocabulary_and_numeric_stats_are_present() -> None:
    fitted = FeatureSpec.model_validate(
        spec_dict(
            {"name": "age", "side": "user", "kind": "categorical", "vocabulary": ["20", "30"]},
            {"name": "x", "side": "user", "kind": "numeric", "stats": {"mean": 1.0, "std": 2.0}},
        )
    )
    assert fitted.is_fitted
    assert fitted.cardinalities("user") == [3]
    assert fitted.cardinalities("item") == [11]


def test_dump_then_load_round_trips(design_spec: FeatureSpec, tmp_path: Path) -> None:
    fitted_age = design_spec.feature("user_age").model_copy(update={"vocabulary": ["7", "é"]})
    features = [fitted_age if f.name == "user_age" else f for f in design_spec.features]
    spec = design_spec.model_copy(update={"features": features})
    path = tmp_path / "out.yaml"
    spec.dump(path)
    assert FeatureSpec.load(path) == spec
    assert FeatureSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (
            {"name": "x", "side": "user", "kind": "categorical", "encoding": "hash"},
            "needs 'buckets'",
        ),
        (
            {"name": "x", "side": "user", "kind": "categorical", "buckets": 3},
            "'buckets' applies to encoding 'hash' only",
        ),
        (
            {"name": "x", "side": "user", "kind": "categorical", "vocabulary": ["a", "a"]},
            "duplicate values",
        ),
        ({"name": "x", "side": "user", "kind": "numeric", "clip": [3, 1]}, "lo <= hi"),
        ({"name": "x", "side": "user", "kind": "numeric", "colour": "red"}, "Extra inputs"),
        ({"name": "x", "side": "user", "kind": "numeric", "default": "nan"}, "finite number"),
        ({"name": "x", "side": "user", "kind": "numeric", "stats": {"mean": 0, "std": 0}}, "std"),
        ({"name": "x", "side": "user", "kind": "bogus"}, "does not match any of the expected tags"),
        ({"name": "x", "side": "shop", "kind": "numeric"}, "side"),
        (
            {
                "name": "s",
                "side": "item",
                "kind": "sequence",
                "max_length": 3,
                "item_feature": "item_id",
            },
            "must be on the user side",
        ),
        (
            {
                "name": "s",
                "side": "user",
                "kind": "sequence",
                "max_length": 3,
                "item_feature": "nope",
            },
            "item_feature 'nope' must name an item categorical",
        ),
        (
            {
                "name": "s",
                "side": "user",
                "kind": "sequence",
                "max_length": 0,
                "item_feature": "item_id",
            },
            "max_length",
        ),
        ({"name": "item_id", "side": "user", "kind": "numeric"}, "duplicate feature names"),
    ],
)
def test_invalid_specs_are_rejected_with_the_reason(feature: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FeatureSpec.model_validate(spec_dict(feature))


def test_sequence_must_point_at_an_item_side_feature() -> None:
    user_cat = {
        "name": "u",
        "side": "user",
        "kind": "categorical",
        "encoding": "hash",
        "buckets": 4,
    }
    seq = {"name": "s", "side": "user", "kind": "sequence", "max_length": 3, "item_feature": "u"}
    with pytest.raises(ValidationError, match="must name an item categorical"):
        FeatureSpec.model_validate(spec_dict(user_cat, seq))


def test_load_names_the_file_on_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfeatures: [{name: a, side: user, kind: numeric, clip: 3}]\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: invalid feature spec"):
        FeatureSpec.load(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        FeatureSpec.load(bad)
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        FeatureSpec.load(bad)


def test_stats_and_spec_are_immutable() -> None:
    stats = NumericStats(mean=0.0, std=1.0)
    with pytest.raises(ValidationError):
        stats.mean = 2.0  # type: ignore[misc]
