"""InputLayout: validated shapes of the model arrays, built directly or from a fitted spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from service.contracts.feature_spec import BucketizedFeature, FeatureSpec
from service.contracts.fitting import fit_spec
from service.contracts.transform import FeatureTransform
from tests.training.models.small import TASKS, arch
from training.models import GroupLayout, InputLayout, MultiTaskRanker, default_embedding_dim


def test_default_embedding_dim_grows_with_cardinality_up_to_16() -> None:
    assert default_embedding_dim(2) == 7
    assert default_embedding_dim(50) == 16
    assert default_embedding_dim(10**6) == 16
    assert GroupLayout((2, 50)).embedding_dims == (7, 16)


def test_group_width_is_embeddings_plus_numerics() -> None:
    group = GroupLayout((10, 4), (3, 2), 5)
    assert (group.n_categorical, group.width, group.is_empty) == (2, 10, False)
    assert GroupLayout().is_empty


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cardinalities": (3, 4), "embedding_dims": (2,)}, "1 embedding dims for 2"),
        ({"cardinalities": (0,)}, "must all be >= 1"),
        ({"cardinalities": (3,), "embedding_dims": (0,)}, "must all be >= 1"),
        ({"n_numeric": -1}, "n_numeric = -1"),
    ],
)
def test_inconsistent_group_is_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroupLayout(**kwargs)


def test_sequence_must_share_an_existing_item_column() -> None:
    with pytest.raises(ValueError, match="shares item_cat column 1, but the item side has 1"):
        InputLayout(item=GroupLayout((5,)), sequence_columns=(1,), max_length=3)
    with pytest.raises(ValueError, match="need a length >= 1"):
        InputLayout(item=GroupLayout((5,)), sequence_columns=(0,))


def test_layout_without_item_or_context_features_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one item or context feature"):
        InputLayout(user=GroupLayout((5,)))


@dataclass
class FakeFeature:
    name: str
    side: str
    kind: str
    cardinality: int = 0
    embedding_dim: int | None = None
    max_length: int = 0
    item_feature: str = ""


@dataclass
class FakeSpec:
    """The FeatureSpec helpers of docs/design.md over a plain feature list."""

    features: list[FakeFeature] = field(default_factory=list)
    name: str = "fake"
    is_fitted: bool = True

    def features_of(self, side: str, kind: str) -> list[FakeFeature]:
        return [f for f in self.features if f.side == side and f.kind == kind]

    def categorical_columns(self, side: str) -> list[FakeFeature]:
        return self.features_of(side, "categorical")

    def cardinalities(self, side: str) -> list[int]:
        return [f.cardinality for f in self.categorical_columns(side)]

    def numeric_names(self, side: str) -> list[str]:
        return [f.name for f in self.features_of(side, "numeric")]

    def sequences(self) -> list[FakeFeature]:
        return self.features_of("user", "sequence")


def design_example() -> FakeSpec:
    return FakeSpec(
        [
            FakeFeature("user_id", "user", "categorical", 50001, 16),
            FakeFeature("user_age", "user", "categorical", 101),
            FakeFeature("user_activity", "user", "numeric"),
            FakeFeature("history", "user", "sequence", max_length=30, item_feature="item_id"),
            FakeFeature("item_cat", "item", "categorical", 40, 4),
            FakeFeature("item_id", "item", "categorical", 20001, 16),
            FakeFeature("item_price", "item", "numeric"),
            FakeFeature("hour", "context", "categorical", 25),
            FakeFeature("position", "training", "categorical", 11),
        ]
    )


def test_from_spec_reads_groups_in_spec_order_and_the_shared_table() -> None:
    layout = InputLayout.from_spec(design_example())
    assert layout.user == GroupLayout((50001, 101), (16, default_embedding_dim(101)), 1)
    assert layout.item == GroupLayout((40, 20001), (4, 16), 1)
    assert layout.context == GroupLayout((25,), (default_embedding_dim(25),), 0)
    assert layout.training == GroupLayout((11,), (default_embedding_dim(11),), 0)
    assert (layout.sequence_columns, layout.max_length) == ((1,), 30)


def test_from_spec_rejects_unfitted_specs_and_dangling_sequences() -> None:
    spec = design_example()
    spec.is_fitted = False
    with pytest.raises(ValueError, match="not fitted"):
        InputLayout.from_spec(spec)
    spec = design_example()
    spec.features[3].item_feature = "user_id"
    with pytest.raises(ValueError, match="'history' uses item feature 'user_id'"):
        InputLayout.from_spec(spec)


def test_layout_from_a_real_fitted_spec_fits_the_transforms_arrays() -> None:
    """Bucketized features add an embedded ``item_cat`` column and, with keep_value, a numeric."""
    spec = FeatureSpec.model_validate(
        {
            "name": "tiny",
            "features": [
                {"name": "user_id", "side": "user", "kind": "categorical", "encoding": "hash"}
                | {"buckets": 50, "embedding_dim": 4},
                {"name": "user_age", "side": "user", "kind": "categorical", "encoding": "vocab"},
                {"name": "user_activity", "side": "user", "kind": "numeric"},
                {"name": "history", "side": "user", "kind": "sequence", "max_length": 3}
                | {"item_feature": "item_id"},
                {"name": "item_id", "side": "item", "kind": "categorical", "encoding": "hash"}
                | {"buckets": 20, "embedding_dim": 4},
                {"name": "item_price", "side": "item", "kind": "numeric", "log1p": True},
                {"name": "item_age", "side": "item", "kind": "bucketized", "max_buckets": 3}
                | {"keep_value": True, "embedding_dim": 3},
                {"name": "hour", "side": "context", "kind": "categorical", "encoding": "vocab"},
                {"name": "position", "side": "training", "kind": "categorical"}
                | {"encoding": "vocab"},
            ],
        }
    )
    columns: dict[str, list[Any]] = {
        "user_id": ["u1", "u2", "u3", "u1"],
        "user_age": [20, 30, 20, 40],
        "user_activity": [0.5, 1.5, 2.5, 3.5],
        "history": [["i1", "i2"], [], ["i3", "i1", "i2", "i4"], ["i9"]],
        "item_id": ["i1", "i2", "i3", "i4"],
        "item_price": [1.0, 10.0, 100.0, 5.0],
        "item_age": [1, 5, 9, 30],
        "hour": [1, 2, 3, 1],
        "position": [0, 1, 2, 3],
    }
    fitted = fit_spec(spec, columns)
    layout = InputLayout.from_spec(fitted)
    assert layout.user.cardinalities == (51, 4)  # 50 buckets + missing; 3 ages + unknown
    assert layout.user.embedding_dims[0] == 4
    assert (layout.item.n_numeric, layout.sequence_columns, layout.max_length) == (2, (0,), 3)
    age = fitted.feature("item_age")
    assert isinstance(age, BucketizedFeature)
    assert layout.item.cardinalities[1] == age.cardinality == len(age.boundaries or []) + 2
    assert layout.item.embedding_dims[1] == 3
    arrays = FeatureTransform(fitted, strict=False).transform_columns(
        columns, 4, sides=["user", "item", "context", "training"]
    )
    model = MultiTaskRanker(layout, TASKS, arch("mmoe"), position_bias_tasks=["click"])
    out = model({k: torch.from_numpy(v) for k, v in arrays.items()})
    assert out.pred.shape == (4, 3)
