"""Multi-task rankers: user tower, split first layers, MTL cores (Shared-Bottom, OMoE, MMoE, CGC,
PLE, AITM), task towers, ESMM and a position-bias tower."""

from training.models.config import ArchConfig, ArchName
from training.models.layout import GroupLayout, InputLayout, default_embedding_dim
from training.models.ranker import MultiTaskRanker, RankerOutput, build_core

__all__ = [
    "ArchConfig",
    "ArchName",
    "GroupLayout",
    "InputLayout",
    "MultiTaskRanker",
    "RankerOutput",
    "build_core",
    "default_embedding_dim",
]
