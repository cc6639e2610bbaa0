"""PNG plots of a run: per-task loss curves and, for MoE models, mean gate weight per expert."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def plot_loss_curves(history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """One panel per task: training and validation loss per epoch."""
    if not history:
        raise ValueError("no epochs in the history: nothing to plot")
    task_ids = list(history[0]["train_loss"])
    epochs = [h["epoch"] for h in history]
    rows, cols = _grid(len(task_ids))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, task_id in zip(axes.flat, task_ids, strict=False):
        ax.plot(epochs, [h["train_loss"][task_id] for h in history], marker="o", label="train")
        ax.plot(epochs, [h["val_loss"][task_id] for h in history], marker="s", label="validation")
        ax.set_title(task_id)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
    for ax in list(axes.flat)[len(task_ids) :]:
        ax.axis("off")
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
