"""AITM: Adaptive Information Transfer Multi-task (Xi et al., "Modeling the Sequential Dependence
among Audience Multi-step Conversions with Multi-task Learning in Targeted Display Advertising",
KDD'21).

Tasks form a funnel in the order given (e.g. click -> convert). Each task t has its own encoder
q_t (whose first layer lives in ``SplitInput``). The Adaptive Information Transfer (AIT) module
lets task t attend over what the previous task passes on, p_{t-1} = g_t(z_{t-1}), and its own q_t:

    z_1 = q_1,   z_t = sum_{x in {p_{t-1}, q_t}} w_x h1(x),
    w_x = softmax_x(<h2(x), h3(x)> / sqrt(d)).

The paper's behavioural expectation calibrator, a training-loss term, penalises a later step being
more likely than an earlier one: ``calibration_penalty`` computes it from the per-task
probabilities (``RankerOutput.pred`` of the funnel's binary tasks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.models.blocks import MLPRest, MultiTaskCore
from training.models.config import Norm


class AIT(nn.Module):
    """Attention over [transferred p_{t-1}, own q_t] (B, d) each -> z_t (B, d)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value, self.query, self.key = (nn.Linear(dim, dim) for _ in range(3))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, transferred: Tensor, own: Tensor) -> Tensor:
        x = torch.stack([transferred, own], dim=1)  # (B, 2, d)
        scores = (self.query(x) * self.key(x)).sum(dim=-1) * self.scale  # (B, 2)
        weights = torch.softmax(scores, dim=1)  # (B, 2)
        values: Tensor = self.value(x)  # (B, 2, d)
        return (weights.unsqueeze(-1) * values).sum(dim=1)  # (B, d)


class AITM(MultiTaskCore):
    """chunks = one encoder pre-activation (B, hidden[0]) per task, in funnel order."""

    def __init__(
        self, n_tasks: int, hidden: Sequence[int], dropout: float = 0.0, norm: Norm = "none"
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(MLPRest(hidden, dropout, norm) for _ in range(n_tasks))
        dim = hidden[-1]
        self.transfers = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.ReLU()) for _ in range(n_tasks - 1)
        )
        self.aits = nn.ModuleList(AIT(dim) for _ in range(n_tasks - 1))
        self.first_widths = [hidden[0]] * n_tasks
        self.out_dim = dim

    def forward(self, chunks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        own = [enc(x) for enc, x in zip(self.encoders, chunks, strict=True)]  # T x (B, d)
        z = [own[0]]
        for t, (transfer, ait) in enumerate(zip(self.transfers, self.aits, strict=True), start=1):
            z.append(ait(transfer(z[t - 1]), own[t]))
        return z, []


def calibration_penalty(funnel_probs: Tensor) -> Tensor:
    """AITM's calibrator: mean over rows of sum_t max(p_t - p_{t-1}, 0), for (B, T) probabilities
    of funnel steps in order (a conversion should never be likelier than the click before it)."""
    if funnel_probs.dim() != 2 or funnel_probs.shape[1] < 2:
        raise ValueError(
            f"calibration_penalty needs (B, T >= 2) probabilities, got {tuple(funnel_probs.shape)}"
        )
    return torch.relu(funnel_probs[:, 1:] - funnel_probs[:, :-1]).sum(dim=1).mean()
