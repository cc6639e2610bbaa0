"""CGC: Customized Gate Control (Tang et al., "Progressive Layered Extraction (PLE)", RecSys'20).

Experts are split into shared experts and experts owned by each task. Task t's gate mixes only its
own experts and the shared ones, so a task cannot be dragged by another task's experts (the
"seesaw" the paper measures on MMoE). ``ExtractionLayer`` is one such layer; PLE stacks them and
adds a shared gate over all experts whose output feeds the next level's shared experts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.models.blocks import MLPRest, MultiTaskCore, mix
from training.models.config import Norm


class ExtractionLayer(nn.Module):
    """Chunks, in ``first_widths`` order: S shared experts, K experts of task 0, ..., of task T-1,
    T task gates (B, K + S) (own experts first, then shared), optionally the shared gate
    (B, S + T*K) over every expert (shared first, then the tasks' in task order)."""

    def __init__(
        self,
        n_tasks: int,
        n_shared: int,
        n_task_experts: int,
        expert_hidden: Sequence[int],
        dropout: float = 0.0,
        norm: Norm = "none",
        *,
        shared_gate: bool = False,
    ) -> None:
        super().__init__()
        self.n_tasks, self.n_shared, self.n_own = n_tasks, n_shared, n_task_experts
        self.shared_gate = shared_gate
        n_all = n_shared + n_tasks * n_task_experts
        self.experts = nn.ModuleList(MLPRest(expert_hidden, dropout, norm) for _ in range(n_all))
        gate_widths = [n_task_experts + n_shared] * n_tasks + ([n_all] if shared_gate else [])
        self.first_widths = [expert_hidden[0]] * n_all + gate_widths
        self.out_dim = expert_hidden[-1]

    def forward(self, chunks: list[Tensor]) -> tuple[list[Tensor], Tensor | None, list[Tensor]]:
        """-> (T task outputs (B, h), shared output (B, h) or None, T task gates)."""
        n_all = len(self.experts)
        outs = [e(x) for e, x in zip(self.experts, chunks[:n_all], strict=True)]  # (B, h) each
        shared = outs[: self.n_shared]
        task_outputs, gates = [], []
        for t in range(self.n_tasks):
            start = self.n_shared + t * self.n_own
            gate = torch.softmax(chunks[n_all + t], dim=-1)  # (B, K + S)
            task_outputs.append(mix(gate, outs[start : start + self.n_own] + shared))
            gates.append(gate)
        shared_out = None
        if self.shared_gate:
            shared_out = mix(torch.softmax(chunks[n_all + self.n_tasks], dim=-1), outs)
        return task_outputs, shared_out, gates


class CGC(MultiTaskCore):
    """Single-level PLE: shared + task-specific experts, one gate per task over (own + shared)."""

    def __init__(
        self,
        n_tasks: int,
        n_shared: int,
        n_task_experts: int,
        expert_hidden: Sequence[int],
        dropout: float = 0.0,
        norm: Norm = "none",
    ) -> None:
        super().__init__()
        self.layer = ExtractionLayer(
            n_tasks, n_shared, n_task_experts, expert_hidden, dropout, norm
        )
        self.first_widths = self.layer.first_widths
        self.out_dim = self.layer.out_dim

    def forward(self, chunks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        task_outputs, _, gates = self.layer(chunks)
        return task_outputs, gates
