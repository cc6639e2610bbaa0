"""PLE: Progressive Layered Extraction (Tang et al., RecSys'20).

A stack of CGC extraction levels. Level 1 consumes the split input [u; i] (its first layers live in
``SplitInput``). Level l > 1 consumes level l-1's outputs: task t's experts and gate read task t's
output; the shared experts and the shared gate read the shared output. Every non-final level has
a shared gate mixing all of its experts; the final level has task gates only. The gates reported
per task are the final level's (B, K + S), own experts first.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from training.models.blocks import MultiTaskCore, layer_products
from training.models.cgc import ExtractionLayer
from training.models.config import Norm


def _products(linear: nn.Module, x: Tensor, widths: list[int]) -> list[Tensor]:
    """``linear(x)`` cut into layers of ``widths`` columns, one product per layer."""
    if not isinstance(linear, nn.Linear):  # a ModuleList's items are typed as plain Modules
        raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
    return layer_products(x, linear.weight, linear.bias, widths)


class LevelInput(nn.Module):
    """The first layers of a level > 1: one fused Linear per task input and one for the shared."""

    def __init__(self, layer: ExtractionLayer, in_dim: int, expert_width: int) -> None:
        super().__init__()
        n_all = layer.n_shared + layer.n_tasks * layer.n_own
        self.layer = layer
        self.task_widths = [expert_width] * layer.n_own + [layer.n_own + layer.n_shared]
        self.shared_widths = [expert_width] * layer.n_shared + (
            [n_all] if layer.shared_gate else []
        )
        self.tasks = nn.ModuleList(
            nn.Linear(in_dim, sum(self.task_widths)) for _ in range(layer.n_tasks)
        )
        self.shared = nn.Linear(in_dim, sum(self.shared_widths))

    def forward(self, task_inputs: list[Tensor], shared_input: Tensor) -> list[Tensor]:
        """-> chunks in ``ExtractionLayer`` order."""
        n_own, n_shared = self.layer.n_own, self.layer.n_shared
        shared = _products(self.shared, shared_input, self.shared_widths)
        tasks = [
            _products(proj, x, self.task_widths)
            for proj, x in zip(self.tasks, task_inputs, strict=True)
        ]
        experts = shared[:n_shared] + [chunk for t in tasks for chunk in t[:n_own]]
        return experts + [t[n_own] for t in tasks] + shared[n_shared:]


class PLE(MultiTaskCore):
    """``n_levels`` extraction levels of ``n_shared`` shared and ``n_task_experts`` per-task experts."""

    def __init__(
        self,
        n_tasks: int,
        n_shared: int,
        n_task_experts: int,
        expert_hidden: Sequence[int],
        n_levels: int,
        dropout: float = 0.0,
        norm: Norm = "none",
    ) -> None:
        super().__init__()
        levels = [
            ExtractionLayer(
                n_tasks,
                n_shared,
                n_task_experts,
                expert_hidden,
                dropout,
                norm,
                shared_gate=level < n_levels - 1,
            )
            for level in range(n_levels)
        ]
        self.levels = nn.ModuleList(levels)
        self.inputs = nn.ModuleList(
            LevelInput(layer, expert_hidden[-1], expert_hidden[0]) for layer in levels[1:]
        )
        self.first_widths = levels[0].first_widths
        self.out_dim = expert_hidden[-1]

    def forward(self, chunks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        task_outputs, shared, gates = self.levels[0](chunks)
        for level, level_input in zip(self.levels[1:], self.inputs, strict=True):
            task_outputs, shared, gates = level(level_input(task_outputs, shared))
        return task_outputs, gates
