"""Per-task evaluation metrics in numpy, computed only on rows in the task's sample space.

AUC is the Mann-Whitney statistic on average ranks (ties count one half), logloss is the mean
binary cross-entropy with probabilities clipped to [1e-7, 1 - 1e-7]; regression tasks report MSE
and MAE in the task's training space (log1p of the label for ``target_transform: log1p``), the
space the model is fitted in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from service.contracts.tasks import TaskSpec

FloatArray = npt.NDArray[np.float64]
PROB_EPS = 1e-7


def average_ranks(values: npt.ArrayLike) -> FloatArray:
    """1-based ranks with ties given their average rank."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start index of each run of equal values, then the run's average 1-based rank.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    run_ranks = (starts + ends + 1) / 2.0  # mean of (start+1 .. end)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """ROC AUC; None when only one class is present."""
    y = np.asarray(labels, dtype=np.float64) == 1.0
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: npt.ArrayLike, probs: npt.ArrayLike) -> float | None:
    """Mean binary cross-entropy; None for no rows."""
    y = np.asarray(labels, dtype=np.float64)
    if len(y) == 0:
        return None
    p = np.clip(np.asarray(probs, dtype=np.float64), PROB_EPS, 1.0 - PROB_EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def mse(targets: npt.ArrayLike, preds: npt.ArrayLike) -> float | None:
    diff = np.asarray(preds, dtype=np.float64) - np.asarray(targets, dtype=np.float64)
    return float(np.mean(diff**2)) if len(diff) else None


def mae(targets: npt.ArrayLike, preds: npt.ArrayLike) -> float | None:
    diff = np.asarray(preds, dtype=np.float64) - np.asarray(targets, dtype=np.float64)
    return float(np.mean(np.abs(diff))) if len(diff) else None


def in_space(task: TaskSpec, labels: dict[str, FloatArray]) -> npt.NDArray[np.bool_]:
    """Rows with a finite label inside the task's sample space."""
    mask = np.isfinite(labels[task.id])
    if task.sample_space != "all":
        mask &= labels[task.sample_space] == 1.0
    return mask


def task_metrics(task: TaskSpec, labels: dict[str, FloatArray], pred: FloatArray) -> dict[str, Any]:
    """{"auc", "logloss", "n"} or {"mse", "mae", "n"}; ``pred`` in training space
    (probabilities for binary tasks), ``labels`` in natural units keyed by task id."""
    mask = in_space(task, labels)
    y, p = labels[task.id][mask], pred[mask]
    if task.type == "binary":
        return {"auc": auc(y, p), "logloss": logloss(y, p), "n": int(mask.sum())}
    if task.target_transform == "log1p":
        y = np.log1p(np.clip(y, 0.0, None))
    return {"mse": mse(y, p), "mae": mae(y, p), "n": int(mask.sum())}


def product_metrics(
    product: list[str], labels: dict[str, FloatArray], probs: dict[str, FloatArray]
) -> dict[str, Any]:
    """AUC/logloss of a derived product of probabilities (e.g. pCTCVR) against the product of the
    labels (unknown labels count as 0) on every row whose first factor is known."""
    mask = np.isfinite(labels[product[0]])
    y = np.ones(int(mask.sum()))
    p = np.ones(int(mask.sum()))
    for task_id in product:
        y *= np.nan_to_num(labels[task_id][mask], nan=0.0) == 1.0
        p *= probs[task_id][mask]
    return {"auc": auc(y, p), "logloss": logloss(y, p), "n": int(mask.sum())}
