"""ESM²: Entire Space Multi-task Model via post-click behaviour decomposition (Wen et al.,
"Entire Space Multi-Task Modeling via Post-Click Behavior Decomposition for Conversion Rate
Prediction", SIGIR 2020; seed 001, section 7.2).

The purchase funnel is impression -> click -> {direct action (DAction: add-to-cart, wish-list),
other action (OAction)} -> purchase. Four outputs share the embeddings and the multi-task core:

    Y1 = p(click | impression)             the ctr task's head
    Y2 = p(DAction | click)                the action task's head
    Y3 = p(purchase | DAction)             the cvr task's head
    Y4 = p(purchase | OAction)             an extra head on the cvr task's representation

and the served conversion rate is their decomposition pCVR = Y2 Y3 + (1 - Y2) Y4. The losses
(``training.train.losses``) fit pCTR, pCTAVR = Y1 Y2 and pCTCVR = Y1 pCVR on every impression; the
data set's derived objectives serve ``ctavr`` and ``ctcvr`` as products of the served outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _log_sigmoid(x: Tensor) -> Tensor:
    return -F.softplus(-x)  # log(sigmoid(x)), stable, exported as Softplus


def decomposed_cvr_logit(action: Tensor, direct: Tensor, other: Tensor) -> Tensor:
    """logit(pCVR) from the logits of Y2, Y3 and Y4, in log space:
    log pCVR = logsumexp(log Y2 + log Y3, log(1 - Y2) + log Y4) and the same for 1 - pCVR."""
    on, off = _log_sigmoid(action), _log_sigmoid(-action)
    log_p = torch.logsumexp(torch.stack([on + _log_sigmoid(direct), off + _log_sigmoid(other)]), 0)
    log_q = torch.logsumexp(
        torch.stack([on + _log_sigmoid(-direct), off + _log_sigmoid(-other)]), 0
    )
    return log_p - log_q
