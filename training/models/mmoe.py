"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD'18).

E experts shared by all tasks; task k mixes them with its own gate g_k(x) = softmax(W_gk x), so
tasks with little in common can use different experts. Expert first layers and the gates are first
layers over x = [u; i], held by ``SplitInput``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.models.blocks import MLPRest, MultiTaskCore, mix
from training.models.config import Norm


class MMoE(MultiTaskCore):
    """chunks = E expert pre-activations, then one gate's logits (B, E) per task."""

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
        self.first_widths = [expert_hidden[0]] * n_experts + [n_experts] * n_tasks
        self.out_dim = expert_hidden[-1]

    def forward(self, chunks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        experts = [e(x) for e, x in zip(self.experts, chunks[: self.n_experts], strict=True)]
        gates = [torch.softmax(g, dim=-1) for g in chunks[self.n_experts :]]  # T x (B, E)
        return [mix(g, experts) for g in gates], gates
