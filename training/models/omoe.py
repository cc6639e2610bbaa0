"""OMoE: one-gate mixture of experts, the baseline of MMoE (Ma et al., KDD'18, section 4.3).

E expert MLPs and a single softmax gate shared by every task: all towers see the same mixture.
Each expert's first layer and the gate itself are first layers over [u; i], held by ``SplitInput``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.models.blocks import MLPRest, MultiTaskCore, mix
from training.models.config import Norm


class OMoE(MultiTaskCore):
    """chunks = E expert pre-activations, then the gate logits (B, E)."""

    def __init__(
        self,
        n_tasks: int,
        n_experts: int,
        expert_hidden: Sequence[int],
        dropout: float = 0.0,
        norm: Norm = "none",
    ) -> None:
        super().__init__()
        self.n_tasks, self.n_experts = n_tasks, n_experts
        self.experts = nn.ModuleList(
            MLPRest(expert_hidden, dropout, norm) for _ in range(n_experts)
        )
        self.first_widths = [expert_hidden[0]] * n_experts + [n_experts]
        self.out_dim = expert_hidden[-1]

    def forward(self, chunks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        experts = [e(x) for e, x in zip(self.experts, chunks[: self.n_experts], strict=True)]
        gate = torch.softmax(chunks[self.n_experts], dim=-1)  # (B, E)
        mixed = mix(gate, experts)  # (B, h)
        return [mixed] * self.n_tasks, [gate] * self.n_tasks
