"""Per-task losses with sample-space masks, ESMM's pCTCVR loss and AITM's calibrator.

Sample spaces (PLE, Tang et al., RecSys'20, section 4.4): task k's loss is
L_k = sum_i delta_k^i l_k(y_k^i, p_k^i) / sum_i delta_k^i, where delta_k^i = 1 iff row i is in the
task's sample space (``sample_space: all`` or the named binary task's label is 1) and has a finite
label. A row outside the space contributes zero loss and zero gradient; a batch without any
in-space row gives 0 (never NaN).

ESMM (Ma et al., SIGIR'18): the cvr task is not fitted on clicked rows; pCTCVR = pCTR x pCVR is
fitted against click AND convert on every impression, which removes the sample-selection bias.
ESM² (Wen et al., SIGIR'20) fits two such products on every impression: pCTAVR = pCTR x p(action
| click) against click AND action, and pCTCVR = pCTR x pCVR against click AND purchase, pCVR being
the model's decomposed p(purchase | click) (``training.models.esm2``).

Sample weights (dataset.yaml ``sample_weights``): with per-row weights w, a task's loss is
sum_i delta_i w_i l_i / sum_i delta_i w_i. Rank tasks use ``training.train.ranking``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from service.contracts.tasks import TaskSpec
from training.models.aitm import calibration_penalty
from training.models.ranker import RankerOutput
from training.train.config import DEFAULT_LOSS, LossKind
from training.train.ranking import rank_loss

LOG_EPS = 1e-7


@dataclass(frozen=True)
class TaskLosses:
    """How each task (in model order) is scored."""

    tasks: list[TaskSpec]
    kinds: list[LossKind]  # one per task
    huber_delta: float = 1.0
    esmm: tuple[int, int] | None = None  # (ctr index, cvr index): cvr trained through pCTCVR
    esm2: tuple[int, int, int] | None = None  # (ctr, action, cvr): both trained through products

    def __post_init__(self) -> None:
        if len(self.kinds) != len(self.tasks):
            raise ValueError(f"{len(self.kinds)} loss kinds for {len(self.tasks)} tasks")
        for task, kind in zip(self.tasks, self.kinds, strict=True):
            allowed = [k for k, t in LOSS_TYPES.items() if t == task.type]
            if kind not in allowed:
                raise ValueError(
                    f"task {task.id!r} ({task.type}) cannot use loss {kind!r}: use one of {allowed}"
                )

    def products(self) -> dict[int, tuple[int, int]]:
        """Task index -> (ctr, task) pair trained through pCTR x p(task | click) (ESMM, ESM²)."""
        pairs = {}
        if self.esmm is not None:
            pairs[self.esmm[1]] = self.esmm
        if self.esm2 is not None:
            ctr, action, cvr = self.esm2
            pairs[action], pairs[cvr] = (ctr, action), (ctr, cvr)
        return pairs


LOSS_TYPES: dict[str, str] = {"huber": "regression"} | {k: t for t, k in DEFAULT_LOSS.items()}
LOSS_TYPES |= {"ranknet": "rank", "bpr": "rank"}


def sample_space_masks(tasks: Sequence[TaskSpec], labels: Tensor) -> Tensor:
    """(B, T) labels in natural units (NaN = unknown) -> (B, T) bool: row in the task's space."""
    ids = [t.id for t in tasks]
    finite = torch.isfinite(labels)  # (B, T)
    columns = []
    for k, task in enumerate(tasks):
        in_space = finite[:, k]
        if task.sample_space != "all":
            parent = labels[:, ids.index(task.sample_space)]
            in_space = in_space & (parent == 1.0)
        columns.append(in_space)
    return torch.stack(columns, dim=1)


def training_targets(tasks: Sequence[TaskSpec], labels: Tensor) -> Tensor:
    """Labels in the model's training space (log1p where the task says so), unknown -> 0."""
    clean = torch.nan_to_num(labels, nan=0.0, posinf=0.0, neginf=0.0)  # (B, T)
    columns = [
        torch.log1p(clean[:, k].clamp_min(0.0)) if t.target_transform == "log1p" else clean[:, k]
        for k, t in enumerate(tasks)
    ]
    return torch.stack(columns, dim=1)


def masked_mean(values: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """(Weighted) mean of ``values`` over ``mask``; 0 (zero gradient) when nothing counts."""
    weight = mask.to(values.dtype)
    if weights is None:
        return (values * weight).sum() / weight.sum().clamp_min(1.0)
    weight = weight * weights
    return (values * weight).sum() / weight.sum().clamp_min(1e-12)


def ctcvr_log_probs(ctr_logit: Tensor, cvr_logit: Tensor) -> tuple[Tensor, Tensor]:
    """log p and log(1 - p) of p = sigmoid(a) * sigmoid(b), computed in log space."""
    log_p = F.logsigmoid(ctr_logit) + F.logsigmoid(cvr_logit)
    log_not_p = torch.log((-torch.expm1(log_p)).clamp_min(LOG_EPS))
    return log_p, log_not_p


def task_losses(
    out: RankerOutput,
    labels: Tensor,
    spec: TaskLosses,
    weights: Tensor | None = None,
    groups: Tensor | None = None,
) -> Tensor:
    """(T,) losses of one batch: masked mean per task (ESMM's cvr: pCTCVR on every row).

    ``weights``: (B, T) sample weights; ``groups``: (B,) request codes (needed by rank tasks).
    """
    masks = sample_space_masks(spec.tasks, labels)  # (B, T)
    targets = training_targets(spec.tasks, labels)  # (B, T)
    products = spec.products()
    losses = []
    for k, kind in enumerate(spec.kinds):
        w = None if weights is None else weights[:, k]
        if k in products:
            losses.append(_esmm_loss(out, labels, products[k], w))
            continue
        if spec.tasks[k].type == "rank":
            if groups is None:
                raise ValueError(f"rank task {spec.tasks[k].id!r} needs the rows' request groups")
            row_w = torch.ones_like(targets[:, k]) if w is None else w
            losses.append(
                rank_loss(kind, out.logits[:, k], targets[:, k], groups, masks[:, k], row_w)  # type: ignore[arg-type]
            )
            continue
        if kind == "bce":
            values = F.binary_cross_entropy_with_logits(
                out.logits[:, k], targets[:, k], reduction="none"
            )
        elif kind == "mse":
            values = (out.pred[:, k] - targets[:, k]) ** 2
        else:
            values = F.huber_loss(
                out.pred[:, k], targets[:, k], reduction="none", delta=spec.huber_delta
            )
        losses.append(masked_mean(values, masks[:, k], w))
    return torch.stack(losses)


def _esmm_loss(
    out: RankerOutput, labels: Tensor, esmm: tuple[int, int], weights: Tensor | None
) -> Tensor:
    ctr, cvr = esmm
    click = labels[:, ctr]
    known = torch.isfinite(click)  # every impression with a click label
    positive = ((click == 1.0) & (labels[:, cvr] == 1.0)).to(out.logits.dtype)  # (B,)
    log_p, log_not_p = ctcvr_log_probs(out.logits[:, ctr], out.logits[:, cvr])
    values = -(positive * log_p + (1.0 - positive) * log_not_p)  # (B,)
    return masked_mean(values, known, weights)


def funnel_columns(tasks: Sequence[TaskSpec], esmm: tuple[int, int] | None) -> list[int]:
    """Binary tasks whose output is a probability over every impression, in task order."""
    columns = []
    for k, task in enumerate(tasks):
        if task.type != "binary":
            continue
        if task.sample_space == "all" or (esmm is not None and k == esmm[1]):
            columns.append(k)
    return columns


def calibration_loss(out: RankerOutput, spec: TaskLosses) -> Tensor:
    """AITM's behavioural expectation calibrator over the impression-space funnel probabilities
    (ESMM's cvr step enters as pCTCVR); 0 when fewer than two funnel steps exist."""
    columns = funnel_columns(spec.tasks, spec.esmm)
    if len(columns) < 2:
        return out.pred.new_zeros(())
    probs = [
        out.ctcvr
        if spec.esmm is not None and k == spec.esmm[1] and out.ctcvr is not None
        else out.pred[:, k]
        for k in columns
    ]
    return calibration_penalty(torch.stack(probs, dim=1))
