"""Loss weighting: how per-task losses L_k become the gradients of one optimisation step.

* ``FixedWeights``: sum_k w_k L_k.
* ``PLESchedule`` (Tang et al., "Progressive Layered Extraction", RecSys'20, eq. 7):
  w_k(t) = w_k,0 * gamma_k^t at epoch t.
* ``DynamicWeightAverage`` (Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR'19):
  w_k(t) = K exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T), r_k(t-1) = L_k(t-1) / L_k(t-2)
  (epoch-mean losses); w_k = 1 for the first two epochs.
* ``UncertaintyWeighting`` (Kendall, Gal & Cipolla, CVPR'18): learnable s_k = log sigma_k^2,
  L = sum_k c_k exp(-s_k) L_k + s_k / 2 with c_k = 1/2 for regression, 1 for classification;
  unclamped, as in the paper.
* ``GradNorm`` (Chen et al., ICML'18): learnable w_k pulled so that the gradient norm of
  w_k L_k on the shared weights W approaches mean_i G_i x r_k^alpha, r_k the task's relative
  inverse training rate; renormalised to sum_k w_k = K after every step.
* ``PCGrad`` (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS'20): each task's
  gradient loses its component along any other task's gradient it conflicts with (negative dot).

Data-parallel runs (``training.train.distributed``) set ``reduce`` to the average over ranks:
GradNorm averages its per-task gradient norms and losses before updating its weights, PCGrad
averages the per-task gradients before projecting them (so every rank applies the projection
of the global batch's gradients, the same on every rank), and ``manual_gradients`` tells the
trainer that PCGrad writes ``.grad`` itself, outside DistributedDataParallel's backward.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def _same(tensor: Tensor) -> Tensor:
    return tensor


class LossWeighting(ABC):
    """Turns (T,) task losses into parameter gradients (``backward``) and reports its weights."""

    manual_gradients = False  # True: backward() sets .grad itself (no DDP backward to sync it)

    def __init__(self, base: Sequence[float]) -> None:
        self.base = torch.tensor(list(base), dtype=torch.float32)  # (T,)
        self.reduce: Callable[[Tensor], Tensor] = _same  # average over ranks in a DDP run

    def parameters(self) -> list[nn.Parameter]:
        """Learnable weighting parameters to optimise with the model (none by default)."""
        return []

    @abstractmethod
    def weights(self) -> Tensor:
        """(T,) current effective weights (detached)."""

    def backward(self, losses: Tensor, extra: Tensor | None = None) -> Tensor:
        """Backpropagate sum_k w_k L_k (+ ``extra``, an unweighted term); return the total."""
        total = (self.weights().to(losses.device) * losses).sum()
        if extra is not None:
            total = total + extra
        torch.autograd.backward(total)
        return total.detach()

    def end_epoch(self, epoch_losses: Sequence[float]) -> None:
        """Called with the epoch's mean training loss per task (unweighted)."""
        del epoch_losses


class FixedWeights(LossWeighting):
    def weights(self) -> Tensor:
        return self.base.clone()


class PLESchedule(LossWeighting):
    """w_k(t) = w_k,0 * gamma_k^t; t counts completed epochs."""

    def __init__(self, base: Sequence[float], gamma: Sequence[float]) -> None:
        super().__init__(base)
        self.gamma = torch.tensor(list(gamma), dtype=torch.float32)
        self.epoch = 0

    def weights(self) -> Tensor:
        return self.base * self.gamma**self.epoch

    def end_epoch(self, epoch_losses: Sequence[float]) -> None:
        del epoch_losses
        self.epoch += 1


class DynamicWeightAverage(LossWeighting):
    """DWA: a task whose loss fell least over the last two epochs gets the most weight."""

    def __init__(self, base: Sequence[float], temperature: float) -> None:
        super().__init__(base)
        self.temperature = temperature
        self.history: list[list[float]] = []
        self.current = torch.ones_like(self.base)

    def weights(self) -> Tensor:
        return self.base * self.current

    def end_epoch(self, epoch_losses: Sequence[float]) -> None:
        self.history.append([float(v) for v in epoch_losses])
        if len(self.history) < 2:
            return
        last = torch.tensor(self.history[-1])
        before = torch.tensor(self.history[-2]).clamp_min(1e-12)
        ratios = last / before  # (T,) r_k(t-1)
        k = len(ratios)
        self.current = k * torch.softmax(ratios / self.temperature, dim=0)


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty: weights exp(-s_k) (x 1/2 for regression) learnt with the model."""

    def __init__(self, regression: Sequence[bool]) -> None:
        super().__init__([1.0] * len(regression))
        self.scale = torch.tensor([0.5 if r else 1.0 for r in regression])  # c_k
        self.log_vars = nn.Parameter(torch.zeros(len(regression)))  # s_k = log sigma_k^2

    def parameters(self) -> list[nn.Parameter]:
        return [self.log_vars]

    def weights(self) -> Tensor:
        return (self.scale * torch.exp(-self.log_vars)).detach()

    def objective(self, losses: Tensor) -> Tensor:
        """sum_k c_k exp(-s_k) L_k + s_k / 2 (Kendall et al., eqs. 7 and 10)."""
        return (self.scale * torch.exp(-self.log_vars) * losses + 0.5 * self.log_vars).sum()

    def backward(self, losses: Tensor, extra: Tensor | None = None) -> Tensor:
        total = self.objective(losses.cpu()).to(losses.device)
        if extra is not None:
            total = total + extra
        torch.autograd.backward(total)
        return total.detach()


def flat_grads(loss: Tensor, params: Sequence[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


class GradNorm(LossWeighting):
    """GradNorm with W = the ``layers`` (weights above the shared first layer, in practice the
    core's) that every task's loss reaches, found on the first step; ``fallback`` (the shared first
    layer) when none is shared by all tasks."""

    def __init__(
        self,
        base: Sequence[float],
        alpha: float,
        lr: float,
        layers: Sequence[Tensor],
        fallback: Sequence[Tensor],
    ) -> None:
        super().__init__(base)
        k = len(self.base)
        self.alpha = alpha
        self.w = nn.Parameter(self.base * k / self.base.sum().clamp_min(1e-12))
        self.optimizer = torch.optim.Adam([self.w], lr=lr)
        self.layers, self.fallback = list(layers), list(fallback)
        self.shared: list[Tensor] | None = None
        self.initial: Tensor | None = None  # L_k(0)

    def weights(self) -> Tensor:
        return self.w.detach().clone()

    def _choose_shared(self, losses: Tensor) -> list[Tensor]:
        reached = [True] * len(self.layers)
        for k in range(len(losses)):
            grads = torch.autograd.grad(
                losses[k], self.layers, retain_graph=True, allow_unused=True
            )
            reached = [
                r and g is not None and bool(g.any()) for r, g in zip(reached, grads, strict=True)
            ]
        shared = [p for p, r in zip(self.layers, reached, strict=True) if r]
        if shared:
            return shared
        if not self.fallback:
            raise ValueError("GradNorm needs shared weights: no layer is reached by every task")
        return self.fallback

    def backward(self, losses: Tensor, extra: Tensor | None = None) -> Tensor:
        if self.shared is None:
            self.shared = self._choose_shared(losses)
        k = len(losses)
        norms = torch.stack(
            [flat_grads(losses[i], self.shared).norm() for i in range(k)]
        )  # (T,) ||grad_W L_k||
        averaged = self.reduce(torch.cat([norms, losses.detach()]).cpu())  # over ranks
        norms, seen = averaged[:k], averaged[k:]
        if self.initial is None:
            self.initial = seen.clone()
        # L_k(0): the first non-zero loss each task produced.
        self.initial = torch.where(self.initial > 0, self.initial, seen)
        grad_norms = self.w * norms  # G_k = ||grad_W w_k L_k||
        ratio = seen / self.initial.clamp_min(1e-12)  # L~_k
        inverse_rate = ratio / ratio.mean().clamp_min(1e-12)  # r_k
        target = (grad_norms.mean() * inverse_rate**self.alpha).detach()
        gradnorm_loss = (grad_norms - target).abs().sum()
        self.optimizer.zero_grad()
        (self.w.grad,) = torch.autograd.grad(gradnorm_loss, [self.w])
        total = (self.w.detach().to(losses.device) * losses).sum()
        if extra is not None:
            total = total + extra
        torch.autograd.backward(total)
        self.optimizer.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-6)
            self.w.mul_(len(self.w) / self.w.sum())
        return total.detach()


class PCGrad(LossWeighting):
    """Projects each task gradient off the gradients it conflicts with, in a random task order."""

    manual_gradients = True

    def __init__(self, base: Sequence[float], params: Sequence[nn.Parameter], seed: int) -> None:
        super().__init__(base)
        self.params = list(params)
        self.generator = torch.Generator().manual_seed(seed)

    def weights(self) -> Tensor:
        return self.base.clone()

    def project(self, grads: Tensor) -> Tensor:
        """(T, P) task gradients -> (P,) sum of the projected gradients (Yu et al., Alg. 1)."""
        projected = grads.clone()
        for i in range(len(grads)):
            for j in torch.randperm(len(grads), generator=self.generator).tolist():
                if j == i:
                    continue
                dot = torch.dot(projected[i], grads[j])
                if dot < 0:
                    norm2 = torch.dot(grads[j], grads[j]).clamp_min(1e-20)
                    projected[i] = projected[i] - dot / norm2 * grads[j]
        return projected.sum(dim=0)

    def backward(self, losses: Tensor, extra: Tensor | None = None) -> Tensor:
        weighted = self.base.to(losses.device) * losses
        rows = [flat_grads(weighted[k], self.params) for k in range(len(losses))]
        if extra is not None:
            rows.append(flat_grads(extra, self.params))
        grads = self.reduce(torch.stack(rows))  # (T [+ 1], P), averaged over ranks
        merged = self.project(grads[: len(losses)])
        if extra is not None:
            merged = merged + grads[len(losses)]
        offset = 0
        for p in self.params:
            n = p.numel()
            part = merged[offset : offset + n].view_as(p)
            p.grad = part.clone() if p.grad is None else p.grad + part
            offset += n
        total = weighted.sum()
        if extra is not None:
            total = total + extra
        return total.detach()


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two flat gradients (used by tests and diagnostics)."""
    denom = float(a.norm() * b.norm())
    return float(torch.dot(a, b)) / denom if denom > 0 else math.nan
