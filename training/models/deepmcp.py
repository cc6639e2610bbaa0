"""DeepMCP: Deep Matching, Correlation and Prediction (Ouyang et al., "Representation
Learning-Assisted Click-Through Rate Prediction", IJCAI 2019; seed 001, section 7.3).

Three subnets share the embedding tables; only the prediction subnet (the ranker) is served:

* prediction: the ``MultiTaskRanker`` itself (any core), trained by the task losses;
* matching (user-item): a user tower over [user profile embeddings; context] and an item tower over
  the item embeddings, each an MLP ending in tanh (ReLU would zero many dimensions and the dot
  products with them); ``sigmoid(u . i)`` is fitted to the click label (point-wise, as the paper);
* correlation (item-item): skip-gram over the behaviour sequence: an item and its neighbours within
  ``window`` positions are positive pairs, ``negatives`` random items per pair are negative, item
  vectors through one tanh MLP over the shared item embedding table.

``DeepMCPHeads`` holds the two auxiliary subnets' own layers and computes
L_aux = matching_weight L_match + correlation_weight L_corr from the ranker's embeddings, so the
gradients of both reach the shared tables. The heads live beside the ranker (in the trainer), never
in its state dict: the exported graphs and the checkpoint hold the prediction subnet alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.models.batch import model_arrays
from training.models.blocks import MLP

if TYPE_CHECKING:
    from training.models.ranker import MultiTaskRanker


class TanhTower(nn.Module):
    """MLP (ReLU) then a linear layer to ``dim`` with tanh."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, hidden)
        self.out = nn.Linear(self.mlp.out_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.out(self.mlp(x)))


class DeepMCPHeads(nn.Module):
    """The matching and correlation subnets of a ranker (training only)."""

    def __init__(
        self,
        ranker: MultiTaskRanker,
        *,
        dim: int,
        hidden: tuple[int, ...],
        window: int,
        negatives: int,
        matching_weight: float,
        correlation_weight: float,
    ) -> None:
        super().__init__()
        user_dim = ranker.user_tower.profile.out_dim + ranker.context.out_dim
        self.matching_weight, self.correlation_weight = matching_weight, correlation_weight
        if matching_weight > 0 and user_dim == 0:
            raise ValueError("DeepMCP's matching subnet needs user or context features")
        self.user = TanhTower(user_dim, hidden, dim) if matching_weight > 0 else None
        self.item = TanhTower(ranker.item.out_dim, hidden, dim) if matching_weight > 0 else None
        self.sequence: int | None = None
        self.correlation: TanhTower | None = None
        if correlation_weight > 0:
            if not ranker.layout.sequence_columns:
                raise ValueError(
                    "DeepMCP's correlation subnet needs a behaviour sequence (kind: sequence) in "
                    "the feature spec; set deepmcp.correlation_weight=0 without one"
                )
            self.sequence = ranker.layout.sequence_columns[0]
            item_dim = ranker.layout.item.embedding_dims[self.sequence]
            self.correlation = TanhTower(item_dim, hidden, dim)
        self.window, self.negatives = window, negatives

    def loss(self, ranker: MultiTaskRanker, batch: Mapping[str, Tensor], clicks: Tensor) -> Tensor:
        """matching_weight * L_match + correlation_weight * L_corr for one batch."""
        arrays = model_arrays(ranker.layout, batch, ranker.split.bias.dtype, with_training=False)
        total = ranker.split.bias.new_zeros(())
        if self.user is not None and self.item is not None:
            total = total + self.matching_weight * self.matching_loss(ranker, arrays, clicks)
        if self.correlation is not None:
            total = total + self.correlation_weight * self.correlation_loss(ranker, arrays)
        return total

    def matching_loss(
        self, ranker: MultiTaskRanker, arrays: Mapping[str, Tensor], clicks: Tensor
    ) -> Tensor:
        if self.user is None or self.item is None:
            raise ValueError("the matching subnet is off (matching_weight = 0)")
        profile = ranker.user_tower.profile(arrays["user_cat"], arrays["user_num"])
        context = ranker.context(arrays["context_cat"], arrays["context_num"])
        u = self.user(torch.cat([profile, context], dim=1))  # (B, d)
        i = self.item(ranker.item(arrays["item_cat"], arrays["item_num"]))  # (B, d)
        known = torch.isfinite(clicks)
        values = F.binary_cross_entropy_with_logits(
            (u * i).sum(dim=1), torch.nan_to_num(clicks), reduction="none"
        )
        loss: Tensor = (values * known).sum() / known.sum().clamp_min(1)
        return loss

    def correlation_loss(self, ranker: MultiTaskRanker, arrays: Mapping[str, Tensor]) -> Tensor:
        if self.correlation is None or self.sequence is None:
            raise ValueError("the correlation subnet is off (correlation_weight = 0)")
        slot = ranker.layout.sequence_columns.index(self.sequence)
        ids = arrays["user_seq"][:, slot, :]  # (B, L), right-padded with 0
        table = ranker.item.embeddings.table(self.sequence)
        vectors: Tensor = self.correlation(table(ids))  # (B, L, d)
        losses, counts = [], []
        for offset in range(1, min(self.window, ids.shape[1] - 1) + 1):
            valid = (ids[:, :-offset] > 0) & (ids[:, offset:] > 0)  # (B, L - offset)
            target, context = vectors[:, :-offset], vectors[:, offset:]
            positive = F.logsigmoid((target * context).sum(-1))  # (B, L - offset)
            noise = torch.randint(1, table.num_embeddings, (*valid.shape, self.negatives))
            negative = F.logsigmoid(-(target.unsqueeze(2) * self.correlation(table(noise))).sum(-1))
            losses.append((-(positive + negative.sum(-1)) * valid).sum())
            counts.append(valid.sum())
        if not losses:
            return vectors.new_zeros(())
        return torch.stack(losses).sum() / torch.stack(counts).sum().clamp_min(1)
