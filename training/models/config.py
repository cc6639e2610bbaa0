"""Typed architecture configuration of a ``MultiTaskRanker`` (presets override these defaults)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ArchName = Literal["shared_bottom", "omoe", "mmoe", "cgc", "ple", "aitm"]
UserEncoder = Literal["attention", "lstm_attention"]
Widths = tuple[int, ...]
# Normalisation of a hidden layer's pre-activation (experts and task towers): none, BatchNorm
# (running statistics in eval mode, which export folds into constants) or LayerNorm.
Norm = Literal["none", "batch", "layer"]


class ArchConfig(BaseModel):
    """Every width of the model. Fields unused by the chosen architecture are ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ArchName = "mmoe"
    # Hidden widths of one expert (Shared-Bottom: the bottom; AITM: each task's encoder);
    # the first layer is fed by [u; i] through SplitInput, the last width is the representation.
    expert_hidden: Widths = Field(default=(32,), min_length=1)
    # OMoE / MMoE: number of experts. CGC / PLE: number of shared experts.
    n_experts: int = Field(default=4, ge=1)
    # CGC / PLE: experts owned by each task.
    n_task_experts: int = Field(default=2, ge=1)
    # PLE: number of extraction levels (1 level is CGC).
    n_levels: int = Field(default=2, ge=1)
    # Per-task tower hidden widths before the output unit (may be empty: a linear head).
    tower_hidden: Widths = (16,)
    # User tower (DUPN): hidden widths of the MLP over [profile; pooled sequences]; last = d_u.
    user_hidden: Widths = Field(default=(32,), min_length=1)
    # User tower: width of the additive attention that pools each behaviour sequence.
    attention_dim: int = Field(default=16, ge=1)
    # User tower: how a behaviour sequence is encoded: "attention" pools the embedded items;
    # "lstm_attention" (DUPN, Ni et al., KDD'18) runs an LSTM over them first and pools its outputs.
    user_encoder: UserEncoder = "attention"
    # lstm_attention: hidden width of the LSTM (the encoded sequence's width).
    lstm_hidden: int = Field(default=16, ge=1)
    # Position-bias shallow tower (YouTube): hidden widths over the training-only features.
    position_hidden: Widths = (8,)
    # Dropout after every hidden activation (training only).
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Normalisation of every hidden pre-activation in experts and task towers: "batch"
    # (BatchNorm; eval mode uses running statistics), "layer" (LayerNorm) or "none". It acts
    # after a first layer over [u; i], never before, so the user/candidate split stays exact.
    norm: Norm = "none"
    # Standard deviation of every embedding table's initial N(0, std^2) rows.
    embedding_init_std: float = Field(default=1.0, gt=0.0)

    @model_validator(mode="after")
    def _positive_widths(self) -> ArchConfig:
        for field in ("expert_hidden", "tower_hidden", "user_hidden", "position_hidden"):
            widths: Widths = getattr(self, field)
            if any(w < 1 for w in widths):
                raise ValueError(f"arch.{field} = {list(widths)}: every width must be >= 1")
        return self
