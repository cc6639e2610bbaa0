"""Training-only auxiliary subnets built from the config: DeepMCP's matching and correlation
subnets (``training.models.deepmcp``), whose loss the trainer adds to the task losses."""

from __future__ import annotations

from collections.abc import Sequence

from service.contracts.tasks import TaskSpec
from training.models.deepmcp import DeepMCPHeads
from training.models.ranker import MultiTaskRanker
from training.train.config import TrainConfig


def build_deepmcp(
    config: TrainConfig, tasks: Sequence[TaskSpec], model: MultiTaskRanker
) -> tuple[DeepMCPHeads | None, int]:
    """DeepMCP's auxiliary subnets (and the task column the matching subnet fits), when on."""
    mcp = config.deepmcp
    if mcp is None:
        return None, 0
    candidates = [t.id for t in tasks if t.type == "binary" and t.sample_space == "all"]
    task = mcp.task or (candidates[0] if candidates else None)
    if task not in candidates:
        raise ValueError(
            f"deepmcp.task {task!r} must be a binary task over every impression: {candidates}"
        )
    heads = DeepMCPHeads(
        model,
        dim=mcp.dim,
        hidden=mcp.hidden,
        window=mcp.window,
        negatives=mcp.negatives,
        matching_weight=mcp.matching_weight,
        correlation_weight=mcp.correlation_weight,
    )
    return heads, [t.id for t in tasks].index(task)
