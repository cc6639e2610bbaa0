"""A small ranker with the split interface of MultiTaskRanker, for exporter tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from service.contracts.tasks import TaskSpec

TASKS = [
    TaskSpec(id="click", type="binary"),
    TaskSpec(id="watch_time", type="regression", sample_space="click", target_transform="log1p"),
]


class ToyRanker(nn.Module):
    """user: 2 categorical, 1 numeric, 1 sequence sharing item_cat's table; item: 1 cat + 2 numeric;
    context: 1 categorical, no numeric. First layer over [u; i] split as W_u·u + b + W_i·i."""

    def __init__(self, squash: bool = True) -> None:
        super().__init__()
        self.squash = squash
        self.user_emb = nn.Embedding(10, 4)
        self.item_emb = nn.Embedding(20, 4)  # shared with the sequence
        self.context_emb = nn.Embedding(5, 2)
        self.first = nn.Linear(2 * 4 + 1 + 4 + 4 + 2 + 2, 16)
        self.heads = nn.Linear(16, 2)
        self.user_width = 2 * 4 + 1 + 4

    def _user(self, user_cat: Tensor, user_num: Tensor, user_seq: Tensor) -> Tensor:
        seq = self.item_emb(user_seq[:, 0])  # (B, L, 4)
        mask = (user_seq[:, 0] > 0).unsqueeze(-1).float()  # (B, L, 1)
        pooled = (seq * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, 4)
        return torch.cat([self.user_emb(user_cat).flatten(1), user_num, pooled], dim=1)

    def _item(
        self, item_cat: Tensor, item_num: Tensor, context_cat: Tensor, context_num: Tensor
    ) -> Tensor:
        parts = [
            self.item_emb(item_cat).flatten(1),
            item_num,
            self.context_emb(context_cat).flatten(1),
        ]
        return torch.cat([*parts, context_num], dim=1)

    def _heads(self, hidden: Tensor) -> Tensor:
        raw = self.heads(torch.relu(hidden))  # (N, 2)
        click = torch.sigmoid(raw[:, 0]) if self.squash else raw[:, 0] * 10
        return torch.stack([click, torch.exp(nn.functional.softplus(raw[:, 1])) - 1.0], dim=1)

    def user_representation(self, user_cat: Tensor, user_num: Tensor, user_seq: Tensor) -> Tensor:
        u = self._user(user_cat, user_num, user_seq)
        return u @ self.first.weight[:, : self.user_width].T + self.first.bias  # (B, 16)

    def score_candidates(
        self,
        user_rep: Tensor,
        item_cat: Tensor,
        item_num: Tensor,
        context_cat: Tensor,
        context_num: Tensor,
    ) -> Tensor:
        i = self._item(item_cat, item_num, context_cat, context_num)
        return self._heads(user_rep + i @ self.first.weight[:, self.user_width :].T)

    def forward_unsplit(
        self,
        user_cat: Tensor,
        user_num: Tensor,
        user_seq: Tensor,
        item_cat: Tensor,
        item_num: Tensor,
        context_cat: Tensor,
        context_num: Tensor,
    ) -> Tensor:
        u = self._user(user_cat, user_num, user_seq)
        i = self._item(item_cat, item_num, context_cat, context_num)
        return self._heads(self.first(torch.cat([u, i], dim=1)))


def toy_arrays(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    seq = rng.integers(0, 20, size=(rows, 1, 5))
    seq[:, :, 3:] = 0  # right padding
    return {
        "user_cat": rng.integers(0, 10, size=(rows, 2)),
        "user_num": rng.normal(size=(rows, 1)).astype(np.float32),
        "user_seq": seq,
        "item_cat": rng.integers(0, 20, size=(rows, 1)),
        "item_num": rng.normal(size=(rows, 2)).astype(np.float32),
        "context_cat": rng.integers(0, 5, size=(rows, 1)),
        "context_num": np.zeros((rows, 0), dtype=np.float32),
    }


def toy_ranker(seed: int = 0, squash: bool = True) -> ToyRanker:
    torch.manual_seed(seed)
    return ToyRanker(squash=squash).eval()
