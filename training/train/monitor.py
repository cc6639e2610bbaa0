"""The validation quantity that chooses the epoch (``early_stopping.monitor``).

``mean``: the mean AUC of the binary tasks (``metric: auc``, higher is better) or the mean
validation loss (``metric: loss``, lower is better); ``TASK.METRIC``: one task's (or derived
objective's) ``auc``, ``ndcg@5``, ``ndcg@10``, ``mrr`` (higher), ``logloss``, ``mse``, ``mae``
or ``loss`` (lower).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.contracts.tasks import DerivedObjective, TaskSpec
from training.train.config import EarlyStoppingConfig

METRICS_OF = {
    "binary": ("auc", "logloss", "loss"),
    "regression": ("mse", "mae", "loss"),
    "rank": ("ndcg@5", "ndcg@10", "mrr", "loss"),
    "derived": ("auc", "logloss"),
}


@dataclass(frozen=True)
class Monitor:
    """Reads the monitored value from one epoch's validation metrics and losses."""

    task: str | None  # None: the mean over tasks
    metric: str

    @classmethod
    def from_config(cls, config: EarlyStoppingConfig) -> Monitor:
        if config.monitor == "mean":
            return cls(None, config.metric)
        task, _, metric = config.monitor.rpartition(".")
        return cls(task, metric)

    def check(self, tasks: Sequence[TaskSpec], derived: Sequence[DerivedObjective]) -> None:
        """Refuse a monitor naming an unknown task or a metric its task type does not have."""
        if self.task is None:
            return
        kinds = {t.id: t.type for t in tasks} | {d.id: "derived" for d in derived}
        kind = kinds.get(self.task)
        if kind is None:
            raise ValueError(f"monitor {self.name}: no task {self.task!r}; tasks: {list(kinds)}")
        if self.metric not in METRICS_OF[kind]:
            raise ValueError(
                f"monitor {self.name}: a {kind} objective has {list(METRICS_OF[kind])}, "
                f"not {self.metric!r}"
            )

    @property
    def name(self) -> str:
        return f"mean {self.metric}" if self.task is None else f"{self.task}.{self.metric}"

    @property
    def higher_is_better(self) -> bool:
        return self.metric in ("auc", "ndcg@5", "ndcg@10", "mrr")

    def value(self, metrics: Mapping[str, Any], losses: Mapping[str, float]) -> float:
        """The monitored value (NaN when undefined, e.g. an AUC without both classes)."""
        if self.task is None:
            if self.metric == "auc":
                aucs = [m["auc"] for m in metrics["tasks"].values() if m.get("auc") is not None]
                if aucs:
                    return float(np.mean(aucs))
            return float(np.mean(list(losses.values())))  # no binary task: the mean loss
        if self.metric == "loss":
            if self.task not in losses:
                raise ValueError(f"monitor {self.name}: no validation loss for {self.task!r}")
            return float(losses[self.task])
        found = metrics["tasks"].get(self.task) or metrics["derived"].get(self.task)
        if found is None or self.metric not in found:
            raise ValueError(
                f"monitor {self.name}: {self.task!r} has no {self.metric!r} (binary tasks have "
                "auc and logloss, regression tasks mse and mae)"
            )
        value = found[self.metric]
        return math.nan if value is None else float(value)

    def score(self, value: float) -> float:
        """Higher is better; NaN (undefined) ranks below everything."""
        if math.isnan(value):
            return -math.inf
        return value if self.higher_is_better else -value
