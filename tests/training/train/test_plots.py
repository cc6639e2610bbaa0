"""The training-curves plot: losses, each task's validation metric and the monitored value per
epoch, with the chosen epoch marked."""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from service.contracts.tasks import TaskSpec
from training.train.plots import plot_training_curves, training_curves_figure

TASKS = [TaskSpec(id="income", type="binary"), TaskSpec(id="hours", type="regression")]
AUCS = [0.80, 0.90, 0.85]
LOGLOSSES = [0.50, 0.40, 0.45]
MSES = [2.0, 1.5, 1.6]


def history(monitor: Sequence[float | None]) -> list[dict[str, Any]]:
    return [
        {
            "epoch": k + 1,
            "train_loss": {"income": 0.6 - 0.1 * k, "hours": 2.0 - 0.2 * k},
            "val_loss": {"income": 0.5, "hours": MSES[k]},
            "val": {
                "tasks": {
                    "income": {"auc": AUCS[k], "logloss": LOGLOSSES[k], "n": 10},
                    "hours": {"mse": MSES[k], "mae": 1.0, "n": 10},
                }
            },
            "monitor": monitor[k],
        }
        for k in range(3)
    ]


def curve(ax: Any, marker: str) -> tuple[list[float], list[float]]:
    """(x, y) of the line drawn with ``marker`` on ``ax``."""
    line = next(ln for ln in ax.get_lines() if ln.get_marker() == marker)
    return [float(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()]


def vertical_lines(ax: Any) -> list[float]:
    return [float(ln.get_xdata()[0]) for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def test_each_task_shows_its_validation_metric_per_epoch_with_the_chosen_epoch_marked():
    fig = training_curves_figure(history([0.8, 0.9, 0.85]), TASKS, 2, "mean auc")
    try:
        axes = fig.axes
        income_metric, hours_metric = axes[3], axes[4]  # 2 rows x 3 columns
        assert income_metric.get_ylabel() == "validation AUC"
        assert curve(income_metric, "s") == ([1.0, 2.0, 3.0], AUCS)
        assert curve(income_metric, "*") == ([2.0], [0.90])  # the chosen epoch's value
        assert hours_metric.get_ylabel() == "validation MSE"
        assert curve(hours_metric, "s")[1] == MSES
        for ax in (axes[0], axes[1], income_metric, hours_metric):
            assert vertical_lines(ax) == [2.0]
        assert axes[0].get_title() == "income"
    finally:
        plt.close(fig)


def test_the_last_column_plots_the_monitored_value_that_chose_the_epoch():
    fig = training_curves_figure(history([0.7, None, 0.75]), TASKS, 3, "mean auc")
    try:
        monitored = fig.axes[5]
        assert monitored.get_title() == "validation mean auc"
        x, y = curve(monitored, "s")
        assert x == [1.0, 2.0, 3.0]
        assert (y[0], y[2]) == (0.7, 0.75)
        assert math.isnan(y[1])  # None (undefined) is a gap
        assert curve(monitored, "*") == ([3.0], [0.75])
        assert "epoch 3 chosen by validation mean auc" in fig.texts[0].get_text()
    finally:
        plt.close(fig)


def test_a_monitor_naming_a_task_plots_that_metric_for_the_task():
    fig = training_curves_figure(history(LOGLOSSES), TASKS, 2, "income.logloss")
    try:
        assert fig.axes[3].get_ylabel() == "validation LOGLOSS"
        assert curve(fig.axes[3], "s")[1] == LOGLOSSES
        assert fig.axes[4].get_ylabel() == "validation MSE"  # the other task keeps its default
    finally:
        plt.close(fig)


def test_plot_writes_a_png_and_refuses_an_empty_history(tmp_path: Path):
    path = plot_training_curves(history([0.8, 0.9, 0.85]), TASKS, 2, tmp_path / "p" / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no epochs"):
        training_curves_figure([], TASKS, 1)
