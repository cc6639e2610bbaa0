"""The fusion search's plot: every candidate on two metrics, the Pareto front, default and chosen."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_front(
    points: npt.NDArray[np.float64],
    front: npt.NDArray[np.int64],
    default: tuple[float, float],
    chosen: tuple[float, float],
    names: tuple[str, str],
    path: Path,
) -> Path:
    """Scatter of (n, 2) candidate metrics with the front as a line; higher is better on both."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter(points[:, 0], points[:, 1], s=10, color="0.7", label=f"{len(points)} candidates")
    ax.plot(points[front, 0], points[front, 1], "-o", color="tab:red", ms=4, label="Pareto front")
    ax.scatter(*default, marker="*", s=220, color="tab:blue", zorder=5, label="default preset")
    ax.scatter(*chosen, marker="*", s=220, color="tab:green", zorder=6, label="chosen (target)")
    ax.set_xlabel(f"{names[0]} (higher is better)")
    ax.set_ylabel(f"{names[1]} (higher is better)")
    ax.set_title("fusion search: trade-off on the search requests")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
