"""PNG plots of a run: per-task loss and validation metric curves and the monitored value, with
the chosen epoch marked, and, for MoE models, mean gate weight per expert."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

from service.contracts.tasks import TaskSpec

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


DEFAULT_METRIC = {"binary": "auc", "regression": "mse", "rank": "ndcg@10"}


def curve_metric(task: TaskSpec, monitor: str = "") -> str:
    """The validation metric plotted for a task: the monitored one when ``monitor`` names this
    task (``income.logloss``), else AUC (binary), MSE (regression) or NDCG@10 (rank)."""
    named, _, metric = monitor.rpartition(".")
    if named == task.id and metric != "loss":
        return metric
    return DEFAULT_METRIC[task.type]


def _floats(values: Iterable[Any]) -> list[float]:
    """Plot values, None (an undefined metric) as NaN: a gap in the curve."""
    return [math.nan if v is None else float(v) for v in values]


def training_curves_figure(
    history: Sequence[Mapping[str, Any]],
    tasks: Sequence[TaskSpec],
    best_epoch: int,
    monitor: str = "",
) -> Figure:
    """One column per task, training and validation loss per epoch above the task's validation
    metric (``curve_metric``), and a last column with the monitored value that chose the epoch;
    a dashed line marks that epoch on every panel and a star its value on every metric curve."""
    if not history:
        raise ValueError("no epochs in the history: nothing to plot")
    epochs = [h["epoch"] for h in history]
    chosen = epochs.index(best_epoch) if best_epoch in epochs else None
    cols = len(tasks) + 1
    fig, axes = plt.subplots(2, cols, figsize=(3.6 * cols, 6), squeeze=False)

    def star(ax: Any, values: list[float]) -> None:
        if chosen is not None and not math.isnan(values[chosen]):
            ax.plot([best_epoch], [values[chosen]], marker="*", markersize=12, color="C3",
                    linestyle="none", label=f"epoch {best_epoch}: {values[chosen]:.4f}")  # fmt: skip
            ax.legend(fontsize="small")

    for k, task in enumerate(tasks):
        loss, score = axes[0][k], axes[1][k]
        loss.plot(epochs, _floats(h["train_loss"][task.id] for h in history), marker="o",
                  label="train")  # fmt: skip
        loss.plot(epochs, _floats(h["val_loss"][task.id] for h in history), marker="s",
                  label="validation")  # fmt: skip
        loss.set_title(task.id)
        loss.set_ylabel("loss")
        metric = curve_metric(task, monitor)
        values = _floats(h["val"]["tasks"][task.id].get(metric) for h in history)
        score.plot(epochs, values, marker="s", color="C1")
        score.set_ylabel(f"validation {metric.upper()}")
        score.set_xlabel("epoch")
        for ax in (loss, score):
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="chosen epoch")
        loss.legend(fontsize="small")
        star(score, values)
    axes[0][-1].axis("off")
    monitored = axes[1][-1]
    values = _floats(h.get("monitor") for h in history)
    monitored.plot(epochs, values, marker="s", color="C2")
    monitored.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
    monitored.set_title(f"validation {monitor or 'monitored value'}")
    monitored.set_xlabel("epoch")
    star(monitored, values)
    how = f" by validation {monitor}" if monitor else ""
    fig.suptitle(f"{len(history)} epochs, epoch {best_epoch} chosen{how}")
    fig.tight_layout()
    return fig


def plot_training_curves(
    history: Sequence[Mapping[str, Any]],
    tasks: Sequence[TaskSpec],
    best_epoch: int,
    path: Path,
    monitor: str = "",
) -> Path:
    """``training_curves_figure`` as a PNG at ``path``."""
    fig = training_curves_figure(history, tasks, best_epoch, monitor)
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
