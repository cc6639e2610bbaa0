"""Shared-Bottom (Caruana, "Multitask Learning", 1997): hard parameter sharing.

One bottom MLP over the input feeds every task tower; the towers (in the ranker) are the only
task-specific parameters. The bottom's first layer lives in ``SplitInput``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from training.models.blocks import MLPRest, MultiTaskCore
from training.models.config import Norm


class SharedBottom(MultiTaskCore):
    """chunks = [bottom pre-activation (B, hidden[0])] -> n_tasks x the same (B, hidden[-1])."""

    def __init__(
        self, n_tasks: int, hidden: Sequence[int], dropout: float = 0.0, norm: Norm = "none"
    ) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.bottom = MLPRest(hidden, dropout, norm)
        self.first_widths = [hidden[0]]
        self.out_dim = self.bottom.out_dim

    def forward(self, chunks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        shared = self.bottom(chunks[0])  # (B, h)
        return [shared] * self.n_tasks, []
