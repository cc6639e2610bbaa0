"""Columns a data set computes when it loads (dataset.yaml's ``columns``, ``sample_weights`` and
``group``), added to the impressions frame so every split and row selection carries them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.data.expressions import Expression

WEIGHT_PREFIX = "__weight__"  # + task id: the task's per-row sample weight
GROUP_COLUMN = "__group__"  # integer code of the request (``group`` column) a row belongs to


def _columns(frame: pd.DataFrame) -> dict[str, npt.NDArray[np.float64]]:
    return {
        str(c): pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64)
        for c in frame.columns
        if frame[c].dtype != object
    }


def computed_columns(frame: pd.DataFrame, columns: Mapping[str, str], source: str) -> None:
    """Add the ``columns:`` of dataset.yaml to the frame, in order (each may read the previous)."""
    for name, text in columns.items():
        if name in frame.columns:
            raise ValueError(
                f"{source}: computed column {name!r} already exists in the impressions; rename it"
            )
        frame[name] = Expression(text).evaluate(_columns(frame), len(frame))


def weight_and_group_columns(
    frame: pd.DataFrame, weights: Mapping[str, str], group: str | None, source: str
) -> None:
    """``__weight__<task>`` from ``sample_weights`` and ``__group__`` codes from ``group``."""
    values = _columns(frame) if weights else {}
    for task_id, text in weights.items():
        weight = Expression(text).evaluate(values, len(frame))
        bad = ~np.isfinite(weight) | (weight < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{source}: sample weight of {task_id!r} ({text!r}) is {weight[row]} at row {row} "
                f"({int(bad.sum())} bad rows); weights must be finite and >= 0"
            )
        frame[WEIGHT_PREFIX + task_id] = weight
    if group is not None:
        if group not in frame.columns:
            raise ValueError(f"{source}: group column {group!r} is not in the impressions")
        codes, _ = pd.factorize(frame[group])
        if (codes < 0).any():
            raise ValueError(f"{source}: group column {group!r} has missing values")
        frame[GROUP_COLUMN] = codes.astype(np.int64)
