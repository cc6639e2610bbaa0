"""PNG plots of a run: per-task loss and validation metric curves with the chosen epoch marked
and, for MoE models, mean gate weight per expert."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

from service.contracts.tasks import TaskSpec

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def _metric_of(task: TaskSpec) -> str:
    return "auc" if task.type == "binary" else "mse"


def plot_training_curves(
    history: Sequence[Mapping[str, Any]],
    tasks: Sequence[TaskSpec],
    best_epoch: int,
    path: Path,
    monitor: str = "",
) -> Path:
    """One column per task: training and validation loss per epoch above the validation AUC
    (binary) or MSE (regression); a dashed line marks the epoch early stopping chose."""
    if not history:
        raise ValueError("no epochs in the history: nothing to plot")
    epochs = [h["epoch"] for h in history]
    cols = len(tasks)
    fig, axes = plt.subplots(2, cols, figsize=(3.6 * cols, 6), squeeze=False)
    for k, task in enumerate(tasks):
        loss, score = axes[0][k], axes[1][k]
        loss.plot(epochs, [h["train_loss"][task.id] for h in history], marker="o", label="train")
        loss.plot(epochs, [h["val_loss"][task.id] for h in history], marker="s", label="validation")
        loss.set_title(task.id)
        loss.set_ylabel("loss")
        metric = _metric_of(task)
        values = [h["val"]["tasks"][task.id].get(metric) for h in history]
        score.plot(epochs, [math.nan if v is None else v for v in values], marker="s", color="C1")
        score.set_ylabel(f"validation {metric.upper()}")
        score.set_xlabel("epoch")
        for ax in (loss, score):
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="chosen epoch")
        loss.legend(fontsize="small")
    chosen = f"epoch {best_epoch} chosen" + (f" by validation {monitor}" if monitor else "")
    fig.suptitle(f"{len(history)} epochs, {chosen}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_gates(gates: Mapping[str, Sequence[float]], path: Path) -> Path:
    """One bar chart per task: its mean gate weight on each expert it can use."""
    if not gates:
        raise ValueError("no gate weights (not a mixture-of-experts model): nothing to plot")
    rows, cols = _grid(len(gates))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (task_id, weights) in zip(axes.flat, gates.items(), strict=False):
        ax.bar(range(len(weights)), list(weights))
        ax.set_title(f"{task_id}: mean gate weight")
        ax.set_xlabel("expert")
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks(range(len(weights)))
    for ax in list(axes.flat)[len(gates) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
