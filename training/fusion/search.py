"""Searching fusion weights: candidates, fast scoring, grid and coordinate ascent, Pareto front.

A candidate is a fusion spec of the contract (``service.contracts.fusion``): a kind, and per
objective a weight and a transform. The transforms ``g_k`` are computed once per objective with the
contract's own ``apply_transform`` over each request's candidates; a candidate's fused scores are
then one product with its weights (weighted sum: ``G @ w``; power product: ``log(max(G, 0) + eps)
@ w``, the log of the contract's product, which orders candidates the same way). Both fusions are
invariant to scaling all weights, so the first term's weight stays 1 and the others move.

* ``grid``: every combination of ``values`` for the other terms' weights;
* ``coordinate``: coordinate ascent from the version's default preset: each weight in turn is
  multiplied or divided by a step (or set to 0) while the target improves; the step halves when
  a full round finds nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.contracts.fusion import FusionKind, FusionSpec, Transform, apply_transform

Floats = npt.NDArray[np.float64]
MAX_GRID = 50_000


@dataclass(frozen=True)
class Candidate:
    kind: FusionKind
    weights: tuple[float, ...]  # one per term, in ``Terms.names`` order

    def spec(self, terms: Terms, epsilon: float) -> FusionSpec:
        return FusionSpec.model_validate(
            {
                "kind": self.kind,
                "epsilon": epsilon,
                "terms": {
                    name: {"weight": w, "transform": terms.transforms[name]}
                    for name, w in zip(terms.names, self.weights, strict=True)
                    if w != 0
                },
            }
        )


@dataclass(frozen=True)
class Terms:
    """The objectives fused, their transforms and transformed values (n rows, T terms)."""

    names: list[str]
    transforms: dict[str, Transform]
    values: Floats  # (n, T) g_k(s_k), per request

    @classmethod
    def build(
        cls,
        objectives: Mapping[str, Floats],
        index: npt.NDArray[np.int64],
        transforms: Mapping[str, Transform],
    ) -> Terms:
        names = list(transforms)
        n = len(next(iter(objectives.values())))
        values = np.zeros((n, len(names)))
        for request in index:
            rows = request[request >= 0]
            for t, name in enumerate(names):
                values[rows, t] = apply_transform(objectives[name][rows], transforms[name])
        return cls(names, dict(transforms), values)

    def scores(self, candidate: Candidate, epsilon: float) -> Floats:
        """Fused scores of every row (power product: their log), in one matrix product."""
        w = np.asarray(candidate.weights)
        if candidate.kind == "weighted_sum":
            fused: Floats = self.values @ w
        else:
            fused = np.log(np.maximum(self.values, 0.0) + epsilon) @ w
        return fused


def grid(kinds: Sequence[FusionKind], n_terms: int, values: Sequence[float]) -> list[Candidate]:
    """Every kind x every combination of ``values`` for terms 2..T (term 1 weighs 1)."""
    size = len(kinds) * len(values) ** (n_terms - 1)
    if size > MAX_GRID:
        raise ValueError(
            f"the grid has {size:,} candidates (more than {MAX_GRID:,}): fuse fewer objectives, "
            "give fewer --grid values or use --method coordinate"
        )
    return [
        Candidate(kind, (1.0, *rest))
        for kind in kinds
        for rest in itertools.product(values, repeat=n_terms - 1)
    ]


def coordinate_ascent(
    score: Callable[[Candidate], float],
    start: Candidate,
    *,
    step: float = 2.0,
    rounds: int = 8,
) -> list[Candidate]:
    """Every candidate tried, starting at ``start``; the best one is the ascent's end point."""
    tried = [start]
    best, best_value = start, score(start)
    factor = step
    for _ in range(rounds):
        improved = False
        for t in range(1, len(start.weights)):
            for change in ("up", "down", "zero"):
                weights = list(best.weights)
                if change == "zero":
                    weights[t] = 0.0
                elif weights[t] == 0:
                    weights[t] = 1.0 / factor if change == "down" else 1.0
                else:
                    weights[t] *= factor if change == "up" else 1.0 / factor
                candidate = Candidate(best.kind, tuple(weights))
                if candidate in tried:
                    continue
                tried.append(candidate)
                value = score(candidate)
                if value > best_value + 1e-12:
                    best, best_value, improved = candidate, value, True
        if not improved:
            factor = np.sqrt(factor)
            if factor < 1.05:
                break
    tried.remove(best)
    tried.append(best)  # the ascent's result last
    return tried


def pareto_front(points: Floats) -> npt.NDArray[np.int64]:
    """Indices of the (n, 2) points no other point beats on both coordinates (higher is better),
    sorted by the first coordinate."""
    order = np.lexsort((-points[:, 1], -points[:, 0]))  # x desc, then y desc
    front, best_y = [], -np.inf
    for i in order:
        if points[i, 1] > best_y:
            front.append(i)
            best_y = points[i, 1]
    return np.array(sorted(front, key=lambda i: points[i, 0]), dtype=np.int64)
