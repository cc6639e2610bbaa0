"""What a fusion is judged by: per-request ranking metrics of logged outcomes, and a target.

A metric names a logged label column and how the fused order is scored on it, per request:

* ``ndcg@K:LABEL``: NDCG@K with the label as a linear gain (e.g. ``ndcg@10:click``), averaged over
  requests where the label has any positive value;
* ``top@K:LABEL``: the expected value of the top K, the mean over requests of the label summed over
  the K best-scored candidates (e.g. ``top@10:watch_time`` seconds watched in the first ten slots).

A target is a weighted list of metrics, ``"ndcg@10:click=1,top@10:watch_time=0.5"``; a fusion
scores sum_m w_m * metric_m / metric_m(reference), the reference being the version's default
preset, so the weights compare relative changes and metrics of any scale can be mixed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.train.metrics import dcg, ranked

Floats = npt.NDArray[np.float64]
METRIC = re.compile(r"^(ndcg|top)@(\d+):([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class Metric:
    kind: str  # "ndcg" or "top"
    k: int
    label: str

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.k}:{self.label}"


def parse_metric(text: str) -> Metric:
    match = METRIC.match(text.strip())
    if match is None or int(match.group(2)) < 1:
        raise ValueError(
            f"metric {text!r}: use ndcg@K:LABEL or top@K:LABEL with K >= 1 (e.g. ndcg@10:click)"
        )
    return Metric(match.group(1), int(match.group(2)), match.group(3))


def parse_target(text: str) -> list[tuple[Metric, float]]:
    """``"ndcg@10:click=1,top@5:watch_time=0.5"`` -> [(metric, weight), ...] (weight 1 if absent)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, weight = part.partition("=")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"target {part!r}: the weight after '=' must be a number") from None
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"target {part!r}: weights must be finite and >= 0")
        out.append((parse_metric(name), value))
    if not out or all(w == 0 for _, w in out):
        raise ValueError(f"target {text!r} names no metric with a positive weight")
    return out


class Evaluator:
    """Scores fused orders of a fixed set of requests on a fixed set of metrics."""

    def __init__(
        self, index: npt.NDArray[np.int64], labels: Mapping[str, Floats], metrics: Sequence[Metric]
    ) -> None:
        missing = sorted({m.label for m in metrics} - set(labels))
        if missing:
            raise ValueError(
                f"metrics name label columns {missing} the log lacks: {sorted(labels)}"
            )
        self.metrics = list(dict.fromkeys(metrics))
        self.index = index
        self.labels = {m.label: np.nan_to_num(labels[m.label]) for m in self.metrics}
        self.ideal = {
            m: dcg(ranked(index, self.labels[m.label], self.labels[m.label]), m.k)
            for m in self.metrics
            if m.kind == "ndcg"
        }

    def __call__(self, scores: Floats) -> dict[str, float]:
        """Every metric of the order ``scores`` (one per row) induces within each request."""
        out = {}
        for metric in self.metrics:
            gains = ranked(self.index, scores, self.labels[metric.label])
            if metric.kind == "top":
                out[metric.name] = float(gains[:, : metric.k].sum(axis=1).mean())
                continue
            ideal = self.ideal[metric]
            counted = ideal > 0
            value = dcg(gains, metric.k)[counted] / ideal[counted]
            out[metric.name] = float(value.mean()) if counted.any() else 0.0
        return out


def target_value(
    values: Mapping[str, float],
    reference: Mapping[str, float],
    target: Sequence[tuple[Metric, float]],
) -> float:
    """sum_m w_m * value_m / reference_m (a reference of 0 counts the raw value)."""
    total = 0.0
    for metric, weight in target:
        base = reference[metric.name]
        total += weight * (values[metric.name] / base if base > 0 else values[metric.name])
    return total
