"""SplitInput: the first layer of every expert, gate and bottom fed by [u; i], split for serving.

A Linear over the concatenation is ``W @ [u; i] + b = (W_u @ u + b) + W_i @ i`` (DUPN, KDD'18).
The user half runs once per request in the user graph; the candidate graph adds the item half for
each of the N candidates. All first layers share one pair of matrices, so the user graph emits a
single ``user_rep`` (B, sum(widths)); the candidate graph adds each layer's slice of it to that
layer's product with its own rows of W_i (``blocks.layer_products``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.models.blocks import layer_products


class SplitInput(nn.Module):
    """First layers of widths ``widths`` over [u (user_dim); i (item_dim)], held as W_u, W_i, b."""

    def __init__(self, user_dim: int, item_dim: int, widths: Sequence[int]) -> None:
        super().__init__()
        if user_dim < 0 or item_dim < 1:
            raise ValueError(
                f"SplitInput needs user_dim >= 0 and item_dim >= 1, got {user_dim} and {item_dim}"
            )
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"SplitInput widths {list(widths)} must be non-empty and all >= 1")
        self.user_dim, self.item_dim = user_dim, item_dim
        self.widths = list(widths)
        total = sum(self.widths)
        self.weight_user = nn.Parameter(torch.empty(total, user_dim))
        self.weight_item = nn.Parameter(torch.empty(total, item_dim))
        self.bias = nn.Parameter(torch.empty(total))
        # nn.Linear's initialisation over the concatenated fan-in (every layer sees all of [u; i]).
        bound = 1.0 / math.sqrt(user_dim + item_dim)
        for param in (self.weight_user, self.weight_item, self.bias):
            nn.init.uniform_(param, -bound, bound)

    @property
    def out_dim(self) -> int:
        return sum(self.widths)

    def user_part(self, u: Tensor) -> Tensor:
        """(B, user_dim) -> (B, D): ``u @ W_u.T + b``, the bias carried on the user side."""
        if self.user_dim == 0:  # fixed at construction; no user features: the bias alone
            return self.bias.unsqueeze(0).expand(u.shape[0], -1)  # (B, D)
        return u @ self.weight_user.T + self.bias  # (B, D)

    def combine(self, user_part: Tensor, i: Tensor) -> list[Tensor]:
        """user_part (1|N, D) + (N, item_dim) -> the pre-activations of every layer, (N, w_k) each
        (one product per layer: ``layer_products``)."""
        return layer_products(i, self.weight_item, user_part, self.widths)  # (1, D) broadcasts

    def full(self, u: Tensor, i: Tensor) -> list[Tensor]:
        """Unsplit reference: ``[W_u, W_i] @ [u; i] + b`` with the concatenated weight."""
        weight = torch.cat([self.weight_user, self.weight_item], dim=1)  # (D, user_dim + item_dim)
        x = torch.cat([u, i], dim=1)  # (N, user_dim + item_dim)
        return layer_products(x, weight, self.bias, self.widths)
