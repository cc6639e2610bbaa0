"""Data card: a short JSON summary of a training data set (rows, label rates, correlations, Bayes AUC).

Rates are computed per task within its sample space (a row counts for ``convert`` only when its
``click`` label is 1, as in the PLE paper's per-task sample spaces). Label correlations are Pearson
correlations between label columns over all rows. When the generator knows the true probability of a
binary label (the simulator does), the card also states the Bayes-optimal AUC: the AUC of the true
probabilities against the sampled labels, the ceiling any model can reach on that data. When the
generator also knows the true probability marginalised over the training-only features (the display
position, which a served model never sees), the card states that AUC as ``served_bayes_auc``: the
ceiling of a model scored as it is served (mtrank evaluates without the position tower).

The accumulator consumes the data in chunks, so a 10M-row simulator run never holds more than the
true click probabilities (4 bytes a row) besides one chunk.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.contracts.tasks import TaskSpec

FloatArray = npt.NDArray[np.float64]


def auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) statistic; ties count one half.

    Returns NaN when only one class is present.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels: give one score per label")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # Average ranks over ties: each run of equal scores gets the mean of its 1-based ranks.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], sorted_s.size]
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    rank_sum = float(ranks[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


class DataCardAccumulator:
    """Streams label chunks and produces the data card dictionary."""

    def __init__(self, name: str, tasks: list[TaskSpec]) -> None:
        self.name = name
        self.tasks = list(tasks)
        self._ids = [t.id for t in tasks]
        k = len(tasks)
        self._rows = 0
        self._sum = np.zeros(k)
        self._outer = np.zeros((k, k))
        self._space_rows = dict.fromkeys(self._ids, 0)
        self._space_sum = dict.fromkeys(self._ids, 0.0)
        self._space_sq = dict.fromkeys(self._ids, 0.0)
        self._true_probs: dict[str, list[FloatArray]] = {}
        self._true_labels: dict[str, list[npt.NDArray[np.bool_]]] = {}
        self._derived_probs: dict[str, list[npt.NDArray[np.float32]]] = {}
        self._derived_labels: dict[str, list[npt.NDArray[np.bool_]]] = {}
        self._served_probs: dict[str, list[npt.NDArray[np.float32]]] = {}
        self._served_labels: dict[str, list[npt.NDArray[np.bool_]]] = {}

    def update(
        self,
        labels: Mapping[str, npt.ArrayLike],
        true_probabilities: Mapping[str, npt.ArrayLike] | None = None,
        derived: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]] | None = None,
        served: Mapping[str, npt.ArrayLike] | None = None,
    ) -> None:
        """Add one chunk: a label column per task, and optionally true probabilities per binary task,
        (true probability, label) of derived objectives over all rows (ESMM's ctcvr), and ``served``:
        per binary task or derived objective of this chunk, the true probability marginalised over
        the training-only features (what a position-blind model could know at best)."""
        missing = [i for i in self._ids if i not in labels]
        if missing:
            raise ValueError(f"label columns {missing} are missing from the chunk")
        columns = np.stack([np.asarray(labels[i], dtype=np.float64) for i in self._ids], axis=1)
        self._rows += columns.shape[0]
        self._sum += columns.sum(axis=0)
        self._outer += columns.T @ columns  # (K, K)
        for task, values in zip(self.tasks, columns.T, strict=True):
            in_space = self._space(task, labels)
            selected = values[in_space]
            self._space_rows[task.id] += int(selected.size)
            self._space_sum[task.id] += float(selected.sum())
            self._space_sq[task.id] += float(np.square(selected).sum())
        for task_id, probs in (true_probabilities or {}).items():
            if task_id not in self._ids:
                raise ValueError(f"true probabilities given for unknown task {task_id!r}")
            task = self.tasks[self._ids.index(task_id)]
            in_space = self._space(task, labels)
            p = np.asarray(probs, dtype=np.float32)[in_space]
            y = np.asarray(labels[task_id])[in_space] > 0.5
            self._true_probs.setdefault(task_id, []).append(p.astype(np.float64))
            self._true_labels.setdefault(task_id, []).append(y)
        for name, (probs, outcome) in (derived or {}).items():
            self._derived_probs.setdefault(name, []).append(np.asarray(probs, dtype=np.float32))
            self._derived_labels.setdefault(name, []).append(np.asarray(outcome) > 0.5)
        for name, probs in (served or {}).items():
            if name in self._ids:
                task = self.tasks[self._ids.index(name)]
                in_space = self._space(task, labels)
                y = np.asarray(labels[name])[in_space] > 0.5
            elif name in (derived or {}):
                y = np.asarray((derived or {})[name][1]) > 0.5
                in_space = np.ones(y.shape[0], dtype=bool)  # a derived objective: every row
            else:
                raise ValueError(
                    f"served probabilities given for {name!r}: no such task or derived"
                )
            p_served = np.asarray(probs, dtype=np.float32)[in_space]
            self._served_probs.setdefault(name, []).append(p_served)
            self._served_labels.setdefault(name, []).append(y)

    def _served_auc(self, name: str) -> float | None:
        return _finite(
            auc(np.concatenate(self._served_probs[name]), np.concatenate(self._served_labels[name]))
        )

    @staticmethod
    def _space(task: TaskSpec, labels: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.bool_]:
        values = np.asarray(labels[task.id])
        if task.sample_space == "all":
            return np.ones(values.shape[0], dtype=bool)
        return np.asarray(labels[task.sample_space]) > 0.5

    def card(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The data card as a JSON-able dictionary."""
        tasks: dict[str, dict[str, Any]] = {}
        for task in self.tasks:
            n = self._space_rows[task.id]
            mean = self._space_sum[task.id] / n if n else math.nan
            entry: dict[str, Any] = {"type": task.type, "sample_space": task.sample_space, "n": n}
            if task.type == "binary":
                entry["rate"] = _finite(mean)
            else:
                var = self._space_sq[task.id] / n - mean * mean if n else math.nan
                entry["mean"] = _finite(mean)
                entry["std"] = _finite(math.sqrt(max(var, 0.0)) if n else math.nan)
            if task.id in self._true_probs:
                p = np.concatenate(self._true_probs[task.id])
                y = np.concatenate(self._true_labels[task.id])
                entry["bayes_auc"] = _finite(auc(p, y))
            if task.id in self._served_probs:
                entry["served_bayes_auc"] = self._served_auc(task.id)
            tasks[task.id] = entry
        card: dict[str, Any] = {
            "name": self.name,
            "rows": self._rows,
            "tasks": tasks,
            "label_correlations": self._correlations(),
        }
        if self._derived_probs:
            card["derived"] = {
                name: {
                    "bayes_auc": _finite(
                        auc(np.concatenate(probs), np.concatenate(self._derived_labels[name]))
                    )
                }
                for name, probs in self._derived_probs.items()
            }
            for name, entry in card["derived"].items():
                if name in self._served_probs:
                    entry["served_bayes_auc"] = self._served_auc(name)
        card.update(extra or {})
        return card

    def _correlations(self) -> dict[str, dict[str, float | None]]:
        n = max(self._rows, 1)
        mean = self._sum / n
        cov = self._outer / n - np.outer(mean, mean)
        std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / np.outer(std, std)
        return {
            a: {b: _finite(float(corr[i, j])) for j, b in enumerate(self._ids)}
            for i, a in enumerate(self._ids)
        }


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined statistics are written as null."""
    return None if not math.isfinite(value) else round(float(value), 6)


def write_data_card(card: Mapping[str, Any], path: Path) -> None:
    """Write the card as indented JSON."""
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
