"""MultiTaskRanker: user tower + split first layers + a multi-task core + per-task towers.

Composition (DUPN split): u = UserTower(user arrays); i = [item embeddings; item numerics; context
embeddings; context numerics]; the first layer of every expert / gate / bottom is ``SplitInput``
over [u; i]; the core (Shared-Bottom, OMoE, MMoE, CGC, PLE or AITM) gives one representation per
task and a ``Tower`` turns each into one output. Options:

* ESMM (Ma et al., SIGIR'18): the cvr task's output is p(convert | click); ``RankerOutput.ctcvr`` =
  p_ctr x p_cvr is what the trainer fits on the whole impression space.
* ESM² (Wen et al., SIGIR'20, ``training.models.esm2``): (ctr, action, cvr); the cvr task gets a
  second head, p(purchase | other action), and serves the decomposed p(purchase | click).
* NMTR (Gao et al., ICDE'19, ``training.models.nmtr``): binary tasks in cascade order; each task's
  score adds the previous task's.
* Position bias (YouTube "Recommending What Video to Watch Next", RecSys'19): a shallow tower over
  the training-only features whose logit is added to chosen binary tasks' logits while training.
  Serving never sees it (``score_candidates`` has no training features).

Task order in every output is the order of ``tasks``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from service.contracts.tasks import TaskSpec, validate_task_set
from training.models.aitm import AITM
from training.models.batch import model_arrays
from training.models.blocks import MLP, GroupEncoder, MultiTaskCore, Tower
from training.models.cgc import CGC
from training.models.config import ArchConfig
from training.models.esm2 import decomposed_cvr_logit
from training.models.layout import GroupLayout, InputLayout
from training.models.mmoe import MMoE
from training.models.nmtr import cascade_scores
from training.models.omoe import OMoE
from training.models.ple import PLE
from training.models.shared_bottom import SharedBottom
from training.models.split_input import SplitInput
from training.models.user_tower import UserTower


@dataclass(frozen=True)
class RankerOutput:
    logits: Tensor  # (B, T) binary: logit (+ position logit in training); regression: prediction
    pred: Tensor  # (B, T) binary: probability; regression: prediction in training space
    gates: dict[str, Tensor]  # task id -> (B, n_experts) gate weights (MoE models only)
    ctcvr: Tensor | None = None  # (B,) ESMM p_ctr x p_cvr, on the whole impression space


def build_core(arch: ArchConfig, n_tasks: int) -> MultiTaskCore:
    """The multi-task core named by ``arch.name``."""
    hidden, drop, norm = arch.expert_hidden, arch.dropout, arch.norm
    if arch.name == "shared_bottom":
        return SharedBottom(n_tasks, hidden, drop, norm)
    if arch.name == "omoe":
        return OMoE(n_tasks, arch.n_experts, hidden, drop, norm)
    if arch.name == "mmoe":
        return MMoE(n_tasks, arch.n_experts, hidden, drop, norm)
    if arch.name == "cgc":
        return CGC(n_tasks, arch.n_experts, arch.n_task_experts, hidden, drop, norm)
    if arch.name == "ple":
        return PLE(n_tasks, arch.n_experts, arch.n_task_experts, hidden, arch.n_levels, drop, norm)
    return AITM(n_tasks, hidden, drop, norm)


class PositionTower(nn.Module):
    """Shallow tower: training-only features (e.g. display position) -> one bias logit (B,)."""

    def __init__(
        self, group: GroupLayout, hidden: Sequence[int], dropout: float, init_std: float = 1.0
    ) -> None:
        super().__init__()
        self.encoder = GroupEncoder(group, init_std)
        self.mlp = MLP(group.width, hidden, dropout)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, train_cat: Tensor, train_num: Tensor) -> Tensor:
        logit: Tensor = self.out(self.mlp(self.encoder(train_cat, train_num)))  # (B, 1)
        return logit.squeeze(-1)  # (B,)


class MultiTaskRanker(nn.Module):
    """A multi-task ranker over model arrays, servable as a user graph and a candidate graph.

    ``esmm=(ctr, cvr)``: two binary task ids; ``esm2=(ctr, action, cvr)``: three; ``cascade``:
    binary task ids in NMTR's cascade order; ``position_bias_tasks``: binary task ids whose training
    logits get the shallow tower's position logit (needs training-side features in the layout).
    """

    def __init__(
        self,
        layout: InputLayout,
        tasks: Sequence[TaskSpec],
        arch: ArchConfig,
        *,
        esmm: tuple[str, str] | None = None,
        position_bias_tasks: Sequence[str] = (),
        esm2: tuple[str, str, str] | None = None,
        cascade: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.tasks = list(tasks)
        validate_task_set(self.tasks, [])
        self.task_ids = [t.id for t in self.tasks]
        self.layout, self.arch = layout, arch
        self.item = GroupEncoder(layout.item, arch.embedding_init_std)
        self.context = GroupEncoder(layout.context, arch.embedding_init_std)
        self.user_tower = UserTower(
            layout,
            self.item.embeddings,
            arch.user_hidden,
            arch.attention_dim,
            arch.dropout,
            encoder=arch.user_encoder,
            lstm_hidden=arch.lstm_hidden,
            init_std=arch.embedding_init_std,
        )
        self.core = build_core(arch, len(self.tasks))
        item_dim = self.item.out_dim + self.context.out_dim
        self.split = SplitInput(self.user_tower.out_dim, item_dim, self.core.first_widths)
        self.heads = nn.ModuleList(
            Tower(self.core.out_dim, arch.tower_hidden, arch.dropout, arch.norm) for _ in self.tasks
        )
        self.esmm = self._esmm_indices(esmm)
        self.esm2 = self._esm2_indices(esm2)
        self.esm2_other = (  # Y4 = p(purchase | other action), on the cvr task's representation
            Tower(self.core.out_dim, arch.tower_hidden, arch.dropout, arch.norm)
            if self.esm2
            else None
        )
        self.cascade = [self._binary_index(t, "cascade") for t in cascade]
        if len(set(self.cascade)) != len(self.cascade) or len(self.cascade) == 1:
            raise ValueError(f"cascade {list(cascade)} needs two or more distinct tasks")
        self.position_columns = [
            self._binary_index(t, "position_bias_tasks") for t in position_bias_tasks
        ]
        self.position_tower: PositionTower | None = None
        if self.position_columns:
            if layout.training.is_empty:
                raise ValueError(
                    f"position_bias_tasks {list(position_bias_tasks)} need training-only features "
                    "(side: training, e.g. position) in the feature spec; there are none"
                )
            self.position_tower = PositionTower(
                layout.training, arch.position_hidden, arch.dropout, arch.embedding_init_std
            )

    def _binary_index(self, task_id: str, what: str) -> int:
        if (
            task_id not in self.task_ids
            or self.tasks[self.task_ids.index(task_id)].type != "binary"
        ):
            raise ValueError(
                f"{what} names {task_id!r}, which is not a binary task of {self.task_ids}"
            )
        return self.task_ids.index(task_id)

    def _esmm_indices(self, esmm: tuple[str, str] | None) -> tuple[int, int] | None:
        if esmm is None:
            return None
        ctr, cvr = (self._binary_index(t, "esmm") for t in esmm)
        if ctr == cvr:
            raise ValueError(f"esmm needs two different tasks (ctr, cvr), got {esmm}")
        return ctr, cvr

    def _esm2_indices(self, esm2: tuple[str, str, str] | None) -> tuple[int, int, int] | None:
        if esm2 is None:
            return None
        ctr, action, cvr = (self._binary_index(t, "esm2") for t in esm2)
        if len({ctr, action, cvr}) != 3:
            raise ValueError(f"esm2 needs three different tasks (ctr, action, cvr), got {esm2}")
        return ctr, action, cvr

    # --- the two served graphs -------------------------------------------------------------

    def user_representation(self, user_cat: Tensor, user_num: Tensor, user_seq: Tensor) -> Tensor:
        """User graph: (B, Cu), (B, Nu), (B, S, L) -> user_rep (B, D), D = sum of first-layer widths."""
        return self.split.user_part(self.user_tower(user_cat, user_num, user_seq))

    def score_candidates(
        self,
        user_rep: Tensor,
        item_cat: Tensor,
        item_num: Tensor,
        context_cat: Tensor,
        context_num: Tensor,
    ) -> Tensor:
        """Candidate graph: user_rep (1|N, D) + N candidates -> (N, T) in serving units."""
        i = self._item_input(item_cat, item_num, context_cat, context_num)  # (N, item_dim)
        raw, _ = self._heads(self.split.combine(user_rep, i))
        return self._serving(raw)

    # --- training and reference ------------------------------------------------------------

    def forward(self, batch: Mapping[str, Tensor]) -> RankerOutput:
        """Training-space outputs for a batch of model arrays (train_* used only in training)."""
        arrays = model_arrays(
            self.layout, batch, self.split.bias.dtype, self.position_tower is not None
        )
        u = self.user_tower(arrays["user_cat"], arrays["user_num"], arrays["user_seq"])
        i = self._item_input(
            arrays["item_cat"], arrays["item_num"], arrays["context_cat"], arrays["context_num"]
        )
        logits, gates = self._heads(self.split.combine(self.split.user_part(u), i))  # (B, T)
        if self.training and self.position_tower is not None:
            bias = self.position_tower(arrays["train_cat"], arrays["train_num"])  # (B,)
            columns = [
                logits[:, k] + bias if k in self.position_columns else logits[:, k]
                for k in range(len(self.tasks))
            ]
            logits = torch.stack(columns, dim=1)
        pred = torch.stack(
            [
                torch.sigmoid(logits[:, k]) if t.type == "binary" else logits[:, k]
                for k, t in enumerate(self.tasks)
            ],
            dim=1,
        )
        ctcvr = pred[:, self.esmm[0]] * pred[:, self.esmm[1]] if self.esmm else None
        return RankerOutput(logits, pred, dict(zip(self.task_ids, gates, strict=False)), ctcvr)

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
        """Reference for the split: the same (B, T) serving outputs through ``SplitInput.full``."""
        given = {"user_cat": user_cat, "user_num": user_num, "user_seq": user_seq}
        given |= {"item_cat": item_cat, "item_num": item_num}
        given |= {"context_cat": context_cat, "context_num": context_num}
        arrays = model_arrays(self.layout, given, self.split.bias.dtype, with_training=False)
        u = self.user_tower(arrays["user_cat"], arrays["user_num"], arrays["user_seq"])
        i = self._item_input(
            arrays["item_cat"], arrays["item_num"], arrays["context_cat"], arrays["context_num"]
        )
        raw, _ = self._heads(self.split.full(u, i))
        return self._serving(raw)

    def position_logit(self, batch: Mapping[str, Tensor]) -> Tensor | None:
        """The shallow tower's logit (B,) for rows of a batch that holds the training-only
        features; None without a position tower. Added to ``position_columns``' logits, it
        scores a logged impression (the display position included), as training fitted it."""
        if self.position_tower is None:
            return None
        arrays = model_arrays(self.layout, batch, self.split.bias.dtype, with_training=True)
        logit: Tensor = self.position_tower(arrays["train_cat"], arrays["train_num"])
        return logit

    # --- shared pieces -----------------------------------------------------------------------

    def _item_input(
        self, item_cat: Tensor, item_num: Tensor, context_cat: Tensor, context_num: Tensor
    ) -> Tensor:
        parts = []
        if self.item.out_dim:  # fixed by the layout, not by data
            parts.append(self.item(item_cat, item_num))
        if self.context.out_dim:
            parts.append(self.context(context_cat, context_num))
        return torch.cat(parts, dim=1)  # (N, item_dim)

    def _heads(self, chunks: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        reps, gates = self.core(chunks)  # T x (N, h), T x (N, E) or []
        columns = [head(r)[:, 0] for head, r in zip(self.heads, reps, strict=True)]  # T x (N,)
        if self.esm2 is not None and self.esm2_other is not None:
            _, action, cvr = self.esm2
            other = self.esm2_other(reps[cvr])[:, 0]
            columns[cvr] = decomposed_cvr_logit(columns[action], columns[cvr], other)
        if self.cascade:
            columns = cascade_scores(columns, self.cascade)
        return torch.stack(columns, dim=1), gates  # (N, T)

    def _serving(self, raw: Tensor) -> Tensor:
        """Training space -> serving units: sigmoid for binary, expm1 (>= 0) for log1p targets."""
        columns = []
        for k, task in enumerate(self.tasks):
            column = raw[:, k]
            if task.type == "binary":
                column = torch.sigmoid(column)
            elif task.target_transform == "log1p":
                # exp(x) - 1, not expm1: the TorchScript ONNX exporter has no expm1 at opset 17.
                column = (torch.exp(column) - 1.0).clamp_min(0.0)
            columns.append(column)
        return torch.stack(columns, dim=1)  # (N, T)
