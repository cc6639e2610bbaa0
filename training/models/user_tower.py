"""The user tower (DUPN, Ni et al., KDD'18): everything that depends on the user alone.

User profile = user categorical embeddings + user numerics. Each behaviour sequence is embedded with
the item side's own table (the same ``nn.Embedding``, so a clicked item and a candidate item share
one vector) and encoded by ``user_encoder``:

* ``attention``: additive attention pooling over the embedded items, the query from the profile;
* ``lstm_attention`` (DUPN's behaviour encoder): an LSTM over the embedded sequence, then the same
  attention pooling over the LSTM's outputs. Sequences are right-padded, so the LSTM's output at
  every real position never sees padding; padded positions are masked out of the attention.

An MLP over [profile; encoded sequences] gives u (B, d_u), which the first layers of the ranker
consume.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.models.blocks import MLP, Embeddings, GroupEncoder
from training.models.config import UserEncoder
from training.models.layout import InputLayout

MASKED_SCORE = -1e9


class AttentionPooling(nn.Module):
    """score_l = v . tanh(W_k e_l + W_q p); softmax over non-padding positions (id != 0)."""

    def __init__(self, item_dim: int, query_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(item_dim, attention_dim, bias=False)
        self.query_dim = query_dim
        if query_dim:
            self.query: nn.Module = nn.Linear(query_dim, attention_dim)
        else:  # no profile: a learned query
            self.query_bias = nn.Parameter(torch.zeros(attention_dim))
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, items: Tensor, ids: Tensor, profile: Tensor) -> Tensor:
        keys = self.key(items)  # (B, L, A)
        query = self.query(profile) if self.query_dim else self.query_bias  # (B, A) or (A,)
        if self.query_dim:
            query = query.unsqueeze(1)  # (B, 1, A)
        scores = self.score(torch.tanh(keys + query)).squeeze(-1)  # (B, L)
        mask = ids > 0  # (B, L) padding and unknown ids are 0
        weights = torch.softmax(scores.masked_fill(~mask, MASKED_SCORE), dim=-1) * mask
        # An all-padding row: softmax is uniform, times the mask is 0 -> pooled zeros, never NaN.
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)  # (B, L)
        return (weights.unsqueeze(-1) * items).sum(dim=1)  # (B, d)


class LSTMAttention(nn.Module):
    """DUPN's sequence encoder: LSTM over (B, L, d) -> (B, L, h), attention-pooled to (B, h)."""

    def __init__(self, item_dim: int, hidden: int, query_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(item_dim, hidden, batch_first=True)
        self.pool = AttentionPooling(hidden, query_dim, attention_dim)
        self.out_dim = hidden

    def forward(self, items: Tensor, ids: Tensor, profile: Tensor) -> Tensor:
        states, _ = self.lstm(items)  # (B, L, h); right padding comes after every real step
        pooled: Tensor = self.pool(states, ids, profile)
        return pooled


class UserTower(nn.Module):
    """(user_cat (B, Cu), user_num (B, Nu), user_seq (B, S, L)) -> u (B, d_u)."""

    def __init__(
        self,
        layout: InputLayout,
        item_embeddings: Embeddings,
        hidden: Sequence[int],
        attention_dim: int,
        dropout: float = 0.0,
        *,
        encoder: UserEncoder = "attention",
        lstm_hidden: int = 16,
        init_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.profile = GroupEncoder(layout.user, init_std)
        self.item_embeddings = item_embeddings  # shared with the item side, not a copy
        self.columns = list(layout.sequence_columns)
        seq_dims = [layout.item.embedding_dims[c] for c in self.columns]
        query = self.profile.out_dim
        if encoder == "lstm_attention":
            self.pools = nn.ModuleList(
                LSTMAttention(d, lstm_hidden, query, attention_dim) for d in seq_dims
            )
            seq_dims = [lstm_hidden] * len(seq_dims)
        else:
            self.pools = nn.ModuleList(AttentionPooling(d, query, attention_dim) for d in seq_dims)
        in_dim = self.profile.out_dim + sum(seq_dims)
        self.mlp = MLP(in_dim, hidden, dropout) if in_dim else None
        self.out_dim = self.mlp.out_dim if self.mlp is not None else 0

    def forward(self, user_cat: Tensor, user_num: Tensor, user_seq: Tensor) -> Tensor:
        profile: Tensor = self.profile(user_cat, user_num)  # (B, Pu)
        parts = [profile]
        for s, (column, pool) in enumerate(zip(self.columns, self.pools, strict=True)):
            ids = user_seq[:, s, :]  # (B, L)
            items = self.item_embeddings.table(column)(ids)  # (B, L, d)
            parts.append(pool(items, ids, profile))  # (B, d)
        if self.mlp is None:  # no user feature at all (fixed by the layout)
            return profile  # (B, 0)
        u: Tensor = self.mlp(torch.cat(parts, dim=1))  # (B, d_u)
        return u
