"""Batches for the trainer: this rank's share of every epoch, and of the validation rows.

A feed yields ``(inputs, labels)`` batches. With W ranks, ``batch_size`` stays the global batch:
each rank gets ``batch_size // W`` rows of it, so one DDP step averages the same number of rows as
one step of a single process, and every rank yields the same number of batches (DDP needs every
rank in every step).

* ``ArrayFeed``: rows held in memory (``TrainArrays``). The epoch order is the single-process
  order (``randperm`` seeded by ``seed + epoch``); rank r takes rows ``r, r + W, ...`` of each
  global batch. Validation: rank r scores rows ``r, r + W, ...``.
* ``training.train.stream_feed.StreamFeed``: rows streamed from Parquet row groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
from torch import Tensor

from service.contracts.tasks import TaskSpec
from training.train.arrays import TrainArrays, batch_indices
from training.train.distributed import Shard
from training.train.losses import sample_space_masks, training_targets

Batch = tuple[dict[str, Tensor], Tensor]


class Feed(Protocol):
    def epoch(self, epoch: int) -> Iterator[Batch]:
        """This rank's training batches of one epoch."""
        ...

    def validation(self, batch_size: int) -> Iterator[Batch]:
        """This rank's validation rows, in batches."""
        ...

    def target_means(self) -> list[float | None]:
        """Per task: mean training-space target over the training rows in its sample space."""
        ...


def target_sums(tasks: list[TaskSpec], labels: Tensor) -> tuple[Tensor, Tensor]:
    """(T,) float64 sums of training-space targets and (T,) row counts, in each sample space."""
    masks = sample_space_masks(tasks, labels)  # (n, T)
    targets = training_targets(tasks, labels).double()  # (n, T)
    return (targets * masks).sum(dim=0), masks.sum(dim=0).double()


def means_of(sums: Tensor, counts: Tensor) -> list[float | None]:
    return [float(s / c) if c > 0 else None for s, c in zip(sums, counts, strict=True)]


class ArrayFeed:
    """In-memory training and validation arrays, sharded by row."""

    def __init__(
        self,
        train: TrainArrays,
        val: TrainArrays,
        tasks: list[TaskSpec],
        *,
        batch_size: int,
        seed: int,
        shard: Shard | None = None,
    ) -> None:
        shard = shard or Shard()
        if shard.world > 1 and batch_size < shard.world:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the {shard.world} ranks: every rank "
                "needs rows of every batch; raise batch_size"
            )
        ranked = [t.id for t in tasks if t.type == "rank"]
        if shard.world > 1 and ranked:  # a rank's share of a batch would cut requests apart
            raise ValueError(
                f"rank tasks {ranked} compare the items of one request, which data-parallel "
                "batches would split across ranks: train them in one process (python -m training "
                "train, without torchrun)"
            )
        self.train, self.val, self.tasks = train, val, tasks
        self.batch_size, self.seed, self.shard = batch_size, seed, shard

    def epoch(self, epoch: int) -> Iterator[Batch]:
        batches = batch_indices(  # rank tasks: whole requests per batch
            self.train,
            self.batch_size,
            torch.Generator().manual_seed(self.seed + epoch),
            whole_groups=any(t.type == "rank" for t in self.tasks),
        )
        rank, world = self.shard.rank, self.shard.world
        for index in batches:
            if len(index) < 2 * world:  # a last batch too small to give every rank two rows
                break  # (BatchNorm cannot normalise a single row)
            yield self.train.rows(index[rank::world])

    def validation(self, batch_size: int) -> Iterator[Batch]:
        rows = torch.arange(self.shard.rank, len(self.val), self.shard.world)
        for index in torch.split(rows, batch_size):
            yield self.val.rows(index)

    def target_means(self) -> list[float | None]:
        return means_of(*target_sums(self.tasks, self.train.labels))
