"""Tiny layouts, tasks and random model arrays for the model tests."""

from __future__ import annotations

import torch
from torch import Tensor

from service.contracts.tasks import TaskSpec
from training.models import ArchConfig, GroupLayout, InputLayout, MultiTaskRanker

TASKS = [
    TaskSpec(id="click", type="binary"),
    TaskSpec(id="convert", type="binary", sample_space="click"),
    TaskSpec(id="watch_time", type="regression", sample_space="click", target_transform="log1p"),
]
SMALL = {
    "expert_hidden": (8, 6),
    "n_experts": 3,
    "n_task_experts": 2,
    "n_levels": 2,
    "tower_hidden": (6,),
    "user_hidden": (5,),
    "attention_dim": 4,
    "position_hidden": (6,),
}
ARCH_NAMES = ["shared_bottom", "omoe", "mmoe", "cgc", "ple", "aitm"]
MOE_NAMES = ["omoe", "mmoe", "cgc", "ple"]


def arch(name: str, **overrides: object) -> ArchConfig:
    return ArchConfig.model_validate({"name": name, **SMALL, **overrides})


def small_layout(*, user: bool = True, sequences: bool = True) -> InputLayout:
    """user: 2 categorical + 1 numeric; item: 2 categorical (each shared by one sequence) + 2
    numeric; context: 1 categorical + 1 numeric; training: 1 categorical (position)."""
    return InputLayout(
        user=GroupLayout((7, 4), (3, 2), 1) if user else GroupLayout(),
        item=GroupLayout((11, 5), (4, 3), 2),
        context=GroupLayout((3,), (2,), 1),
        training=GroupLayout((6,), (2,), 0),
        sequence_columns=(0, 1) if sequences else (),
        max_length=4 if sequences else 0,
    )


def small_ranker(name: str, seed: int = 0, **kwargs: object) -> MultiTaskRanker:
    torch.manual_seed(seed)
    layout = kwargs.pop("layout", None) or small_layout()
    return MultiTaskRanker(layout, TASKS, arch(name), **kwargs)  # type: ignore[arg-type]


def random_batch(layout: InputLayout, rows: int, seed: int = 0) -> dict[str, Tensor]:
    """Model arrays with indices in range, right-padded sequences and some all-padding rows."""
    gen = torch.Generator().manual_seed(seed)

    def cat(cards: tuple[int, ...]) -> Tensor:
        cols = [torch.randint(0, c, (rows,), generator=gen) for c in cards]
        return torch.stack(cols, dim=1) if cols else torch.zeros((rows, 0), dtype=torch.int64)

    def num(n: int) -> Tensor:
        return torch.randn(rows, n, generator=gen)

    seqs = []
    for column in layout.sequence_columns:
        card = layout.item.cardinalities[column]
        ids = torch.randint(1, card, (rows, layout.max_length), generator=gen)
        lengths = torch.randint(0, layout.max_length + 1, (rows, 1), generator=gen)
        seqs.append(ids * (torch.arange(layout.max_length) < lengths))  # 0 after the length
    user_seq = torch.stack(seqs, dim=1) if seqs else torch.zeros((rows, 0, 0), dtype=torch.int64)
    return {
        "user_cat": cat(layout.user.cardinalities),
        "user_num": num(layout.user.n_numeric),
        "user_seq": user_seq,
        "item_cat": cat(layout.item.cardinalities),
        "item_num": num(layout.item.n_numeric),
        "context_cat": cat(layout.context.cardinalities),
        "context_num": num(layout.context.n_numeric),
        "train_cat": cat(layout.training.cardinalities),
        "train_num": num(layout.training.n_numeric),
    }


USER_KEYS = ("user_cat", "user_num", "user_seq")
CANDIDATE_KEYS = ("item_cat", "item_num", "context_cat", "context_num")


def served(model: MultiTaskRanker, batch: dict[str, Tensor]) -> Tensor:
    """Row-wise split scoring: each row's user_rep with that row's candidate (N user reps)."""
    rep = model.user_representation(*(batch[k] for k in USER_KEYS))
    return model.score_candidates(rep, *(batch[k] for k in CANDIDATE_KEYS))


def unsplit(model: MultiTaskRanker, batch: dict[str, Tensor]) -> Tensor:
    return model.forward_unsplit(**{k: batch[k] for k in USER_KEYS + CANDIDATE_KEYS})
