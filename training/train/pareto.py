"""PE-LTR: Pareto-efficient task weights (Lin et al., "A Pareto-Efficient Algorithm for Multiple
Objective Optimization in E-Commerce Recommendation", RecSys'19; seed 001, section 8).

At every step the weights solve the KKT conditions of a Pareto-stationary point: the minimum-norm
combination of the task gradients on the shared parameters,

    min_w || sum_k w_k grad_theta L_k ||^2   s.t.  sum_k w_k = 1,  w_k >= c_k,

with lower bounds c_k that keep every task in play. The paper's PECsolver, followed here: write
w = c + w_hat, solve the relaxed problem (equality constraint only) in closed form through its KKT
linear system, then project w_hat onto {w_hat >= 0, sum w_hat = 1 - sum c} (Euclidean projection on a
scaled simplex). The step then backpropagates T * sum_k w_k L_k (weights sum to 1; the factor T keeps
the loss scale of T equal fixed weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from training.train.weighting import LossWeighting, flat_grads

Floats = npt.NDArray[np.float64]


def project_to_simplex(values: Floats, total: float) -> Floats:
    """Euclidean projection of ``values`` onto {x >= 0, sum x = total} (sort-based, exact)."""
    if total <= 0.0:
        return np.zeros_like(values)
    ordered = np.sort(values)[::-1]
    cumulative = np.cumsum(ordered) - total
    index = np.arange(1, len(values) + 1)
    rho = int(np.nonzero(ordered - cumulative / index > 0)[0][-1])
    theta = cumulative[rho] / (rho + 1)
    projected: Floats = np.maximum(values - theta, 0.0)
    return projected


def pe_ltr_weights(grads: Floats, bounds: Sequence[float]) -> Floats:
    """PECsolver: (T, P) task gradients and (T,) lower bounds -> (T,) weights summing to 1.

    A task whose gradient is exactly zero (no row of its sample space in the batch) would take all
    the free weight (its norm is 0); it gets its lower bound only and the others share the rest.
    """
    c = np.asarray(bounds, dtype=np.float64)
    t = grads.shape[0]
    if c.shape != (t,) or (c < 0).any() or c.sum() >= 1.0:
        raise ValueError(f"PE-LTR needs {t} bounds >= 0 summing to less than 1, got {list(c)}")
    active = np.abs(grads).sum(axis=1) > 0
    weights: Floats = c.copy()
    if not active.any():
        weights += (1.0 - c.sum()) / t
        return weights
    slack = 1.0 - float(c.sum())
    weights[active] += _min_norm_free_part(grads[active], c[active], slack)
    return weights


def _min_norm_free_part(grads: Floats, c: Floats, slack: float) -> Floats:
    """w_hat >= 0 with sum ``slack``: relaxed KKT solution, then projected (the PECsolver)."""
    t = grads.shape[0]
    gram = grads @ grads.T  # (T, T)
    # KKT of min (w_hat + c)^T G (w_hat + c) s.t. 1^T w_hat = slack:
    # [[2G, 1], [1^T, 0]] [w_hat; lambda] = [-2 G c; slack]
    system = np.zeros((t + 1, t + 1))
    system[:t, :t] = 2.0 * gram
    system[:t, t] = 1.0
    system[t, :t] = 1.0
    rhs = np.concatenate([-2.0 * gram @ c, [slack]])
    relaxed = np.linalg.lstsq(system, rhs, rcond=None)[0][:t]  # G may be singular
    if not np.isfinite(relaxed).all():
        relaxed = np.full(t, slack / t)
    return project_to_simplex(relaxed, slack)


class ParetoWeighting(LossWeighting):
    """PE-LTR weights recomputed every step from the task gradients on ``shared`` parameters."""

    def __init__(self, bounds: Sequence[float], shared: Sequence[Tensor]) -> None:
        super().__init__([1.0] * len(bounds))
        if not shared:
            raise ValueError("PE-LTR needs shared parameters to compare the task gradients on")
        self.bounds = list(bounds)
        self.shared = list(shared)
        slack = (1.0 - sum(self.bounds)) / len(bounds)  # before the first step: bounds + equal
        self.current = torch.tensor([c + slack for c in self.bounds], dtype=torch.float32)

    def weights(self) -> Tensor:
        return self.current.clone()

    def backward(self, losses: Tensor, extra: Tensor | None = None) -> Tensor:
        grads = torch.stack([flat_grads(losses[k], self.shared) for k in range(len(losses))])
        grads = self.reduce(grads)  # a data-parallel run: the global batch's, the same on all ranks
        solved = pe_ltr_weights(grads.double().cpu().numpy(), self.bounds)
        self.current = torch.from_numpy(solved).to(losses.dtype)
        total = len(losses) * (self.current * losses).sum()
        if extra is not None:
            total = total + extra
        torch.autograd.backward(total)
        return total.detach()
