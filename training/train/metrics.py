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


def task_metrics(
    task: TaskSpec,
    labels: dict[str, FloatArray],
    pred: FloatArray,
    weights: FloatArray | None = None,
    groups: npt.NDArray[np.int64] | None = None,
) -> dict[str, Any]:
    """{"auc", "logloss", "n"}, {"mse", "mae", "n"} or (rank tasks, by request) {"ndcg@5",
    "ndcg@10", "mrr", "groups", "n"}; ``pred`` in training space (probabilities for binary tasks),
    ``labels`` in natural units keyed by task id. With the task's sample ``weights``, also
    ``weighted_auc`` and ``weighted_logloss`` (binary) or ``weighted_mse`` (regression)."""
    mask = in_space(task, labels)
    y, p = labels[task.id][mask], pred[mask]
    n = int(mask.sum())
    if task.type == "rank":
        if groups is None:
            raise ValueError(f"rank task {task.id!r} needs the rows' request ids (groups)")
        return {**ranking_metrics(groups[mask], y, p), "n": n}
    w = None if weights is None else weights[mask]
    if task.type == "binary":
        out = {"auc": auc(y, p), "logloss": logloss(y, p), "n": n}
        if w is not None:
            q = np.clip(p, PROB_EPS, 1.0 - PROB_EPS)
            out["weighted_auc"] = weighted_auc(y, p, w)
            out["weighted_logloss"] = weighted_mean(-(y * np.log(q) + (1 - y) * np.log1p(-q)), w)
        return out
    if task.target_transform == "log1p":
        y = np.log1p(np.clip(y, 0.0, None))
    out = {"mse": mse(y, p), "mae": mae(y, p), "n": n}
    if w is not None:
        out["weighted_mse"] = weighted_mean((p - y) ** 2, w)
    return out


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


def weighted_auc(
    labels: npt.ArrayLike, scores: npt.ArrayLike, weights: npt.ArrayLike
) -> float | None:
    """ROC AUC with every pair (positive i, negative j) weighing w_i w_j (ties one half)."""
    y = np.asarray(labels, dtype=np.float64) == 1.0
    w = np.asarray(weights, dtype=np.float64)
    pos_w, neg_w = float(w[y].sum()), float(w[~y].sum())
    if pos_w <= 0 or neg_w <= 0:
        return None
    values, inverse = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    neg_at = np.bincount(inverse, weights=w * ~y, minlength=len(values))
    neg_below = np.cumsum(neg_at) - neg_at
    wins = neg_below[inverse] + 0.5 * neg_at[inverse]  # negative weight each positive beats
    return float((w[y] * wins[y]).sum() / (pos_w * neg_w))


def weighted_mean(values: npt.ArrayLike, weights: npt.ArrayLike) -> float | None:
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    return float((np.asarray(values, dtype=np.float64) * w).sum() / total) if total > 0 else None


def request_matrix(groups: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """(n,) request codes -> (R, K) row numbers of each request's rows in row order, -1 padded
    (K = the largest request); requests in order of their codes."""
    g = np.asarray(groups, dtype=np.int64)
    _, inverse, sizes = np.unique(g, return_inverse=True, return_counts=True)
    rows = np.argsort(inverse, kind="stable")
    within = np.arange(len(g)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    index = np.full((len(sizes), int(sizes.max(initial=0))), -1, dtype=np.int64)
    index[inverse[rows], within] = rows
    return index


def ranked(index: npt.NDArray[np.int64], scores: FloatArray, values: FloatArray) -> FloatArray:
    """(R, K) ``values`` of each request's rows in descending ``scores`` order (ties keep the row
    order, as /rank's top-k does); padding sorts last with value 0."""
    pad = index < 0
    safe = np.maximum(index, 0)
    order = np.argsort(-np.where(pad, -np.inf, scores[safe]), axis=1, kind="stable")
    out: FloatArray = np.take_along_axis(np.where(pad, 0.0, values[safe]), order, axis=1)
    return out


def dcg(gains: FloatArray, k: int) -> FloatArray:
    """(R,) DCG@k of ranked (R, K) gains: sum_p gain_p / log2(p + 1), p = 1..k (linear gains)."""
    top = gains[:, :k]
    per_request: FloatArray = (top / np.log2(np.arange(top.shape[1]) + 2.0)).sum(axis=1)
    return per_request


def ranking_metrics(
    groups: npt.ArrayLike,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    ks: tuple[int, ...] = (5, 10),
) -> dict[str, Any]:
    """NDCG@k (linear gains) and MRR (1 / rank of the first row with rel > 0) averaged over
    requests with at least one relevant row; ties in the scores keep the rows' order."""
    y = np.nan_to_num(np.asarray(labels, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64)
    index = request_matrix(groups)
    gains = ranked(index, s, y)
    ideal = ranked(index, y, y)
    relevant = ideal[:, 0] > 0 if len(ideal) and ideal.shape[1] else np.zeros(0, dtype=bool)
    out: dict[str, Any] = {}
    for k in ks:
        ratio = dcg(gains, k)[relevant] / dcg(ideal, k)[relevant]
        out[f"ndcg@{k}"] = float(ratio.mean()) if relevant.any() else None
    first = np.argmax(gains[relevant] > 0, axis=1)  # 0-based rank of the first relevant row
    out["mrr"] = float(np.mean(1.0 / (first + 1.0))) if relevant.any() else None
    out["groups"] = int(relevant.sum())
    return out
