"""Impressions -> tensors: model arrays through the shared feature transform, plus label columns.

Training and serving use the same ``FeatureTransform`` (lenient here: bad values fall back to their
defaults, as the training data is what it is). Labels stay in natural units with NaN for unknown
values; losses and metrics decide which rows count for which task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from service.contracts.feature_spec import FeatureSpec, Side
from service.contracts.fitting import fit_spec
from service.contracts.tasks import TaskSpec
from service.contracts.transform import FeatureTransform

SIDES: tuple[Side, ...] = ("user", "item", "context", "training")


@dataclass(frozen=True)
class TrainArrays:
    """Model arrays (n rows each) and (n, T) float32 labels in task order."""

    inputs: dict[str, Tensor]
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def rows(self, index: Tensor | slice) -> tuple[dict[str, Tensor], Tensor]:
        """The inputs and labels of a batch of rows."""
        return {k: v[index] for k, v in self.inputs.items()}, self.labels[index]

    def label_columns(self, tasks: Sequence[TaskSpec]) -> dict[str, np.ndarray[Any, Any]]:
        """Labels as float64 numpy columns keyed by task id (for metrics)."""
        values = self.labels.numpy().astype(np.float64)
        return {t.id: values[:, k] for k, t in enumerate(tasks)}


def frame_columns(frame: pd.DataFrame) -> dict[str, np.ndarray[Any, Any]]:
    """A frame as the columnar mapping ``fit_spec`` and ``transform_columns`` take."""
    return {str(name): frame[name].to_numpy() for name in frame.columns}


def label_matrix(frame: pd.DataFrame, tasks: Sequence[TaskSpec]) -> Tensor:
    """(n, T) float32 labels; a missing column is an error naming the task."""
    missing = [t.id for t in tasks if t.id not in frame.columns]
    if missing:
        raise ValueError(
            f"the impressions have no label column for tasks {missing}; columns: "
            f"{sorted(map(str, frame.columns))}"
        )
    values = np.stack(
        [pd.to_numeric(frame[t.id], errors="coerce").to_numpy(np.float32) for t in tasks], axis=1
    )
    return torch.from_numpy(values.reshape(len(frame), len(tasks)))


def to_arrays(frame: pd.DataFrame, spec: FeatureSpec, tasks: Sequence[TaskSpec]) -> TrainArrays:
    """Transform impressions with a fitted spec into model arrays and labels."""
    transform = FeatureTransform(spec, strict=False)
    arrays = transform.transform_columns(frame_columns(frame), len(frame), sides=SIDES)
    inputs = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}
    return TrainArrays(inputs, label_matrix(frame, tasks))


def fit_on(frame: pd.DataFrame, spec: FeatureSpec) -> FeatureSpec:
    """The spec with statistics fitted on these (training) rows only."""
    fitted: FeatureSpec = fit_spec(spec, frame_columns(frame))
    return fitted
