"""Impressions -> tensors: model arrays through the shared feature transform, plus label columns.

Training and serving use the same ``FeatureTransform`` (lenient here: bad values fall back to their
defaults, as the training data is what it is). Labels stay in natural units with NaN for unknown
values; losses and metrics decide which rows count for which task.
"""

from __future__ import annotations

import itertools
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
from training.data.computed import GROUP_COLUMN, WEIGHT_PREFIX

SIDES: tuple[Side, ...] = ("user", "item", "context", "training")


# Keys of ``TrainArrays.inputs`` that are not model arrays: they ride along with every row
# selection (batches, shards, validation) and ``split_extras`` takes them out before the model.
SAMPLE_WEIGHTS = "sample_weights"  # (n, T) float32, 1 for unweighted tasks
REQUEST_GROUPS = "request_groups"  # (n,) int64 request codes (the data set's ``group``)


@dataclass(frozen=True)
class TrainArrays:
    """Model arrays (n rows each) and (n, T) float32 labels in task order; ``inputs`` also holds
    the sample weights and request codes when the data set declares them."""

    inputs: dict[str, Tensor]
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def weights(self) -> Tensor | None:
        return self.inputs.get(SAMPLE_WEIGHTS)

    @property
    def groups(self) -> Tensor | None:
        return self.inputs.get(REQUEST_GROUPS)

    def rows(self, index: Tensor | slice) -> tuple[dict[str, Tensor], Tensor]:
        """The inputs and labels of a batch of rows."""
        return {k: v[index] for k, v in self.inputs.items()}, self.labels[index]

    def label_columns(self, tasks: Sequence[TaskSpec]) -> dict[str, np.ndarray[Any, Any]]:
        """Labels as float64 numpy columns keyed by task id (for metrics)."""
        values = self.labels.numpy().astype(np.float64)
        return {t.id: values[:, k] for k, t in enumerate(tasks)}


def split_extras(
    inputs: dict[str, Tensor],
) -> tuple[dict[str, Tensor], Tensor | None, Tensor | None]:
    """(model arrays, sample weights or None, request codes or None) of a batch."""
    model = {k: v for k, v in inputs.items() if k not in (SAMPLE_WEIGHTS, REQUEST_GROUPS)}
    return model, inputs.get(SAMPLE_WEIGHTS), inputs.get(REQUEST_GROUPS)


def batch_indices(
    data: TrainArrays, batch_size: int, generator: torch.Generator, whole_groups: bool
) -> list[Tensor]:
    """Shuffled row batches of ``batch_size``; with ``whole_groups`` (rank tasks) requests are
    shuffled instead and a batch holds whole requests (at least ``batch_size`` rows but the last)."""
    if not whole_groups or data.groups is None:
        return list(torch.split(torch.randperm(len(data), generator=generator), batch_size))
    codes, inverse = torch.unique(data.groups, return_inverse=True)
    shuffled = torch.randperm(len(codes), generator=generator)[inverse]  # a request's new place
    order = torch.argsort(shuffled, stable=True)
    starts = torch.ones(len(order), dtype=torch.bool)
    starts[1:] = shuffled[order][1:] != shuffled[order][:-1]  # first row of each request
    cuts = [0]
    for row in torch.nonzero(starts).flatten().tolist():
        if row - cuts[-1] >= batch_size:
            cuts.append(row)
    cuts.append(len(order))
    return [order[a:b] for a, b in itertools.pairwise(cuts) if b > a]


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
    """Transform impressions with a fitted spec into model arrays and labels (plus the sample
    weights and request codes the data set computed, ``training.data.computed``)."""
    transform = FeatureTransform(spec, strict=False)
    arrays = transform.transform_columns(frame_columns(frame), len(frame), sides=SIDES)
    inputs = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}
    if any(WEIGHT_PREFIX + t.id in frame.columns for t in tasks):
        columns = [
            np.array(frame[WEIGHT_PREFIX + t.id], dtype=np.float32)
            if WEIGHT_PREFIX + t.id in frame.columns
            else np.ones(len(frame), dtype=np.float32)
            for t in tasks
        ]
        weights = np.stack(columns, axis=1).reshape(len(frame), len(tasks))
        inputs[SAMPLE_WEIGHTS] = torch.from_numpy(weights)
    if GROUP_COLUMN in frame.columns:
        inputs[REQUEST_GROUPS] = torch.from_numpy(np.array(frame[GROUP_COLUMN], dtype=np.int64))
    return TrainArrays(inputs, label_matrix(frame, tasks))


def fit_on(frame: pd.DataFrame, spec: FeatureSpec) -> FeatureSpec:
    """The spec with statistics fitted on these (training) rows only."""
    fitted: FeatureSpec = fit_spec(spec, frame_columns(frame))
    return fitted
