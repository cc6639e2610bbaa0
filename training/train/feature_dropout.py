"""Feature dropout: during training, a categorical feature's value is replaced by *missing*.

``feature_dropout: {user_id: 0.5}`` sends each training row's ``user_id`` to index 0 (the learned
row for missing and unknown values) with probability 0.5. An id seen a few dozen times is what a
model memorises first: its embedding fits those rows' noise long before the shared layers have
learned what generalises (the simulator's users have ~40 training impressions each at every size).
Dropping it on some rows makes the rest of the model predict without it, and trains the missing
row a served request falls back to for a new id. Validation, evaluation and serving see every value:
this acts on training batches only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from service.contracts.feature_spec import FeatureSpec, Side

SIDE_ARRAYS: dict[Side, str] = {"user": "user_cat", "item": "item_cat", "context": "context_cat"}


@dataclass(frozen=True)
class DroppedColumn:
    array: str  # the model array holding the feature, e.g. "user_cat"
    column: int  # its column in that array
    rate: float  # probability of replacing a row's value by 0


class FeatureDropout:
    """Replaces chosen categorical columns of a training batch by 0 at their rates."""

    def __init__(self, columns: list[DroppedColumn]) -> None:
        self.columns = columns

    @classmethod
    def from_spec(cls, spec: FeatureSpec, rates: Mapping[str, float]) -> FeatureDropout:
        """Columns of ``spec`` named in ``rates``; a name that is not a categorical or bucketized
        feature of the user, item or context side is an error that lists the ones that are."""
        where: dict[str, tuple[str, int]] = {}
        for side, array in SIDE_ARRAYS.items():
            for k, feature in enumerate(spec.categorical_columns(side)):
                where[feature.name] = (array, k)
        unknown = sorted(set(rates) - set(where))
        if unknown:
            raise ValueError(
                f"feature_dropout names {unknown}, which are not categorical features of the "
                f"user, item or context side; these are: {sorted(where)}"
            )
        return cls([DroppedColumn(*where[name], rate) for name, rate in rates.items() if rate > 0])

    def __bool__(self) -> bool:
        return bool(self.columns)

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """A copy of ``inputs`` with the chosen columns dropped on random rows."""
        if not self.columns:
            return inputs
        out = dict(inputs)
        for dropped in self.columns:
            array = out[dropped.array]
            if array is inputs[dropped.array]:  # copy each array once, never the caller's
                array = out[dropped.array] = array.clone()
            column = array[:, dropped.column]
            drop = torch.rand(column.shape, device=column.device) < dropped.rate
            array[:, dropped.column] = column.masked_fill(drop, 0)
        return out
