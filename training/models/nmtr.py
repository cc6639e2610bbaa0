"""NMTR: Neural Multi-Task Recommendation from multi-behaviour data (Gao et al., ICDE 2019;
"Learning to Recommend with Multiple Cascading Behaviors", TKDE 2019; seed 001, section 7.4).

Behaviours follow a cascade (view -> click -> cart -> buy): a user must click before buying. NMTR
predicts every behaviour with its own interaction function over shared embeddings and makes each
behaviour's score build on the previous one's,

    s_1 = f_1(u, i),    s_t = f_t(u, i) + s_{t-1},    y_t = sigmoid(s_t),

and trains all behaviours jointly, one loss per behaviour over every impression (a multi-task loss).
Here f_t is the task's tower over the multi-task core and s_t its pre-sigmoid score, so a later
behaviour starts from what the earlier one learnt and only models the step in between.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor


def cascade_scores(columns: Sequence[Tensor], order: Sequence[int]) -> list[Tensor]:
    """Per-task (N,) scores with ``s_t += s_{t-1}`` along ``order`` (task indices, cascade order)."""
    out = list(columns)
    for previous, current in itertools.pairwise(order):
        out[current] = out[current] + out[previous]
    return out
