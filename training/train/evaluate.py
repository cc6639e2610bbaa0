"""Evaluation of a ranker on held-out rows: per-task and derived metrics, losses, gate averages.

The model runs in eval mode, so the position-bias tower is left out exactly as at serving time.
``metrics.json`` (docs/design.md, "Training run directory"):
``{"tasks": {id: {"auc", "logloss", "n"} | {"mse", "mae", "n"}}, "derived": {id: {...}},
"history": [...]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from service.contracts.tasks import DerivedObjective, TaskSpec
from training.models.ranker import MultiTaskRanker, RankerOutput
from training.train.arrays import TrainArrays, split_extras
from training.train.losses import TaskLosses, task_losses
from training.train.metrics import FloatArray, auc, in_space, product_metrics, task_metrics


@dataclass(frozen=True)
class Prediction:
    """Outputs over all rows: training-space ``RankerOutput`` and mean gate weights per task."""

    output: RankerOutput
    gates: dict[str, list[float]]  # task id -> mean weight per expert (MoE models)
    # (n,) the position tower's logit of each row (rows with the training-only features and a
    # model with the tower), else None: see ``logged_aucs``
    position_logit: Tensor | None = None


@torch.no_grad()
def predict(model: MultiTaskRanker, inputs: dict[str, Tensor], batch_size: int) -> Prediction:
    """Eval-mode forward in batches; restores the model's previous mode."""
    n = int(next(iter(inputs.values())).shape[0])
    slices = (
        {k: v[s : s + batch_size] for k, v in inputs.items()} for s in range(0, n, batch_size)
    )
    return predict_batches(model, slices)


@torch.no_grad()
def predict_batches(
    model: MultiTaskRanker,
    batches: Iterable[dict[str, Tensor]],
    *,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> Prediction:
    """Eval-mode forward over batches (moved to the model's device); with ``gather`` (a
    distributed run's ``Distributed.gather``), every rank's rows concatenated in rank order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, preds, ctcvrs, positions = [], [], [], []
    gate_sums: dict[str, Tensor] = {}
    n = 0
    try:
        for batch in batches:
            moved = {k: v.to(device) for k, v in batch.items()}
            out = model(moved)
            if "train_cat" in moved or "train_num" in moved:
                position = model.position_logit(moved)
                if position is not None:
                    positions.append(position.cpu())
            n += int(out.pred.shape[0])
            logits.append(out.logits.cpu())
            preds.append(out.pred.cpu())
            if out.ctcvr is not None:
                ctcvrs.append(out.ctcvr.cpu())
            for task_id, gate in out.gates.items():  # (B, E)
                gate_sums[task_id] = gate_sums.get(task_id, 0) + gate.sum(dim=0).cpu()
    finally:
        model.train(was_training)
    width = len(model.tasks)
    output = RankerOutput(
        torch.cat(logits) if logits else torch.zeros(0, width),
        torch.cat(preds) if preds else torch.zeros(0, width),
        {},
        torch.cat(ctcvrs) if ctcvrs else (torch.zeros(0) if model.esmm else None),
    )
    position_logit = torch.cat(positions) if positions and len(positions) == len(logits) else None
    if gather is not None:
        output = RankerOutput(
            gather(output.logits),
            gather(output.pred),
            {},
            gather(output.ctcvr) if output.ctcvr is not None else None,
        )
        position_logit = gather(position_logit) if position_logit is not None else None
        totals = gather(torch.tensor([float(n)]))
        n = int(totals.sum())
        gate_sums = {k: gather(v[None, :]).sum(dim=0) for k, v in sorted(gate_sums.items())}
    gates = {k: (v / max(n, 1)).tolist() for k, v in gate_sums.items()}
    return Prediction(output, gates, position_logit)


def validation_losses(
    prediction: Prediction,
    labels: Tensor,
    spec: TaskLosses,
    weights: Tensor | None = None,
    groups: Tensor | None = None,
) -> list[float]:
    """Per-task losses of the eval-mode outputs (same masks and sample weights as training)."""
    return [float(v) for v in task_losses(prediction.output, labels, spec, weights, groups)]


def weight_columns(weights: Tensor | None) -> list[FloatArray | None] | None:
    """(n, T) sample weights -> per task float64 weights, None for an unweighted task (all 1)."""
    if weights is None:
        return None
    values = weights.numpy().astype(np.float64)
    return [None if (values[:, k] == 1).all() else values[:, k] for k in range(values.shape[1])]


def compute_metrics(
    tasks: Sequence[TaskSpec],
    derived: Sequence[DerivedObjective],
    labels: dict[str, FloatArray],
    pred: FloatArray,
    weights: Sequence[FloatArray | None] | None = None,
    groups: npt.NDArray[np.int64] | None = None,
) -> dict[str, Any]:
    """``{"tasks": {...}, "derived": {...}}`` from training-space predictions (n, T); per task its
    sample weights (None: unweighted) and the rows' request codes (rank tasks)."""
    by_id = {t.id: t for t in tasks}
    per_task = weights or [None] * len(tasks)
    out_tasks = {
        t.id: task_metrics(t, labels, pred[:, k], per_task[k], groups) for k, t in enumerate(tasks)
    }
    probs = {t.id: pred[:, k] for k, t in enumerate(tasks) if t.type == "binary"}
    out_derived = {
        d.id: product_metrics(list(d.product), labels, probs)
        for d in derived
        if all(by_id[t].type == "binary" for t in d.product)
    }
    return {"tasks": out_tasks, "derived": out_derived}


def evaluate_arrays(
    model: MultiTaskRanker,
    data: TrainArrays,
    tasks: Sequence[TaskSpec],
    derived: Sequence[DerivedObjective],
    batch_size: int,
) -> tuple[dict[str, Any], Prediction]:
    """Metrics of a model on rows (labels in natural units) and the raw prediction."""
    batches = (data.rows(slice(s, s + batch_size)) for s in range(0, len(data), batch_size))
    scored = evaluate_batches(model, batches, tasks, derived)
    return scored.metrics, scored.prediction


@dataclass(frozen=True)
class Scored:
    """What ``evaluate_batches`` saw: metrics, prediction, and the rows' labels, sample weights
    and request codes (every rank's, in rank order, when gathered)."""

    metrics: dict[str, Any]
    prediction: Prediction
    labels: Tensor  # (n, T)
    weights: Tensor | None  # (n, T)
    groups: Tensor | None  # (n,)


def evaluate_batches(
    model: MultiTaskRanker,
    batches: Iterable[tuple[dict[str, Tensor], Tensor]],
    tasks: Sequence[TaskSpec],
    derived: Sequence[DerivedObjective],
    *,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> Scored:
    """Metrics over ``(inputs, labels)`` batches; with ``gather``, over every rank's rows (exact
    AUC, not a mean of per-rank AUCs)."""
    labels: list[Tensor] = []
    extras: list[tuple[Tensor | None, Tensor | None]] = []

    def inputs() -> Iterator[dict[str, Tensor]]:
        for x, y in batches:
            labels.append(y)
            model_inputs, weights, groups = split_extras(x)
            extras.append((weights, groups))
            yield model_inputs

    prediction = predict_batches(model, inputs(), gather=gather)
    same = gather or (lambda t: t)
    y = same(torch.cat(labels) if labels else torch.zeros(0, len(tasks)))

    def joined(i: int) -> Tensor | None:  # sample weights / request codes
        parts = [part for part in (e[i] for e in extras) if part is not None]
        return same(torch.cat(parts)) if parts else None

    w, g = joined(0), joined(1)
    columns = {t.id: y[:, k].numpy().astype(np.float64) for k, t in enumerate(tasks)}
    pred = prediction.output.pred.numpy().astype(np.float64)
    codes = None if g is None else g.numpy()
    metrics = compute_metrics(tasks, derived, columns, pred, weight_columns(w), codes)
    for task_id, value in logged_aucs(model, prediction, columns).items():
        metrics["tasks"][task_id]["auc_logged"] = value
    return Scored(metrics, prediction, y, w, g)


def logged_aucs(
    model: MultiTaskRanker, prediction: Prediction, labels: dict[str, FloatArray]
) -> dict[str, float | None]:
    """AUC of each position-biased task's score *with* the position tower's logit: how well the
    model explains the logged labels, which were drawn at the displayed position. ``auc`` is the
    served score's (no position, as ``/rank`` ranks); a data card's Bayes-optimal AUC computed
    with the position compares with ``auc_logged``, its position-free one with ``auc``."""
    if prediction.position_logit is None:
        return {}
    bias = prediction.position_logit.numpy().astype(np.float64)
    out: dict[str, float | None] = {}
    for k in model.position_columns:
        task = model.tasks[k]
        mask = in_space(task, labels)
        scores = prediction.output.logits[:, k].numpy().astype(np.float64) + bias
        out[task.id] = auc(labels[task.id][mask], scores[mask])
    return out
