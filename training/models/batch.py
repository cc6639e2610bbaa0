"""Checks a batch of model arrays against the layout a ranker was built from (training path only).

Errors name the array and say what is wrong, instead of an index error deep inside an embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from training.models.layout import GroupLayout, InputLayout

GROUP_ARRAYS = {
    "user": ("user_cat", "user_num"),
    "item": ("item_cat", "item_num"),
    "context": ("context_cat", "context_num"),
    "training": ("train_cat", "train_num"),
}


def model_arrays(
    layout: InputLayout, batch: Mapping[str, Tensor], dtype: torch.dtype, with_training: bool
) -> dict[str, Tensor]:
    """Check a batch of model arrays against the layout; empty groups may be absent from it."""
    names = [n for pair in GROUP_ARRAYS.values() for n in pair] + ["user_seq"]
    present = [n for n in names if n in batch]
    if not present:
        raise ValueError(f"the batch holds none of the model arrays {names}")
    rows = int(batch[present[0]].shape[0])
    out: dict[str, Tensor] = {}
    for side, (cat, num) in GROUP_ARRAYS.items():
        group: GroupLayout = getattr(layout, side)
        required = side != "training" or with_training
        out[cat] = _array(batch, cat, (rows, group.n_categorical), torch.int64, required)
        out[num] = _array(batch, num, (rows, group.n_numeric), dtype, required)
        _check_indices(cat, out[cat], group.cardinalities)
    seq_cards = [layout.item.cardinalities[c] for c in layout.sequence_columns]
    seq = _array(batch, "user_seq", (rows, len(seq_cards), layout.max_length), torch.int64, True)
    for s, card in enumerate(seq_cards):
        _check_indices(f"user_seq[:, {s}]", seq[:, s, :], [card] * int(seq.shape[2]))
    out["user_seq"] = seq
    return out


def _array(
    batch: Mapping[str, Tensor],
    name: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    required: bool,
) -> Tensor:
    columns = shape[1]
    if name not in batch:
        if columns and required:
            raise ValueError(f"the batch lacks {name!r}, which the model needs ({columns} columns)")
        return torch.zeros((shape[0], 0, *shape[2:]), dtype=dtype)
    array = batch[name]
    if array.dim() != len(shape) or array.shape[0] != shape[0] or array.shape[1] != columns:
        raise ValueError(
            f"{name} has shape {tuple(array.shape)}; the model expects ({shape[0]}, {columns}"
            f"{', L' if len(shape) == 3 else ''}) as built from its feature spec"
        )
    return array


def _check_indices(name: str, idx: Tensor, cardinalities: Sequence[int]) -> None:
    if not cardinalities or idx.numel() == 0:
        return
    bad = (idx < 0) | (idx >= torch.tensor(cardinalities))  # (B, C)
    if bool(bad.any()):
        row, col = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"{name} column {col} holds index {int(idx[row, col])}, outside [0, {cardinalities[col]}): "
            "the arrays were not made with the feature spec this model was built from"
        )
