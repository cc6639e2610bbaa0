"""Learning-to-rank losses over the rows of one request (``type: rank`` tasks, seed 001 §4).

Rows carry a group code (the request, ``__group__``) and a graded relevance label; a batch holds
whole requests (``arrays.batch_indices``). Scores are compared only within a request:

* ``softmax`` (listwise, ListNet's top-one softmax cross-entropy): per request with any relevant
  row, ``-sum_i (y_i / sum_j y_j) log softmax(s)_i``; requests weigh their mean sample weight;
* ``ranknet`` (pairwise, Burges et al. 2005): ``log(1 + exp(-(s_i - s_j)))`` over every pair of one
  request with ``y_i > y_j``;
* ``bpr`` (pairwise, Rendle et al. 2009): the same logistic loss over (relevant, irrelevant) pairs,
  relevance binarised (``y > 0``).

Pairs weigh the sample weight of their more relevant row. Rows outside the task's sample space
(or with an unknown label) take part in no pair and no softmax.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

RankLoss = Literal["softmax", "ranknet", "bpr"]
MASKED = -1e9


def group_matrix(groups: Tensor, *columns: Tensor) -> tuple[Tensor, list[Tensor]]:
    """(B,) group codes and (B,) columns -> a (G, K) row mask and each column as (G, K), where
    K is the largest group; requests keep their rows' order, padding is 0 (mask False)."""
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    group = inverse[order]
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(groups.shape[0]) - starts[group]
    shape = (int(counts.shape[0]), int(counts.max()) if counts.numel() else 0)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[group, position] = True
    out = []
    for column in columns:
        padded = column.new_zeros(shape)
        padded[group, position] = column[order]
        out.append(padded)
    return mask, out


def rank_loss(
    kind: RankLoss, scores: Tensor, labels: Tensor, groups: Tensor, valid: Tensor, weights: Tensor
) -> Tensor:
    """Mean loss over requests (softmax) or pairs (ranknet, bpr); 0 when nothing qualifies."""
    mask, (s, y, w) = group_matrix(groups, scores, torch.nan_to_num(labels), weights)
    _, (ok,) = group_matrix(groups, valid.to(scores.dtype))
    mask = mask & (ok > 0)
    if kind == "softmax":
        y = y * mask
        total = y.sum(dim=1)  # (G,)
        log_p = torch.log_softmax(s.masked_fill(~mask, MASKED), dim=1)
        per_group = -(y / total.clamp_min(1e-12).unsqueeze(1) * log_p).sum(dim=1)  # (G,)
        counted = (total > 0) & (mask.sum(dim=1) > 1)
        group_w = (w * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1) * counted
        return (per_group * group_w).sum() / group_w.sum().clamp_min(1e-12)
    if kind == "bpr":
        y = (y > 0).to(s.dtype)
    pairs = mask.unsqueeze(2) & mask.unsqueeze(1) & (y.unsqueeze(2) > y.unsqueeze(1))  # (G,K,K)
    diff = s.unsqueeze(2) - s.unsqueeze(1)  # s_i - s_j
    pair_w = w.unsqueeze(2).expand_as(diff) * pairs
    return (F.softplus(-diff) * pair_w).sum() / pair_w.sum().clamp_min(1e-12)
