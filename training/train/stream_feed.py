"""Training from a Parquet log read row group by row group (``training.data.stream``).

Memory holds one row group plus ``streaming.shuffle_rows`` transformed rows, whatever the log's
size. A run's parts (train, validation, test) are ``StreamPart``s: a log and a ``RowSelector``
(the random split by ``training.data.row_split``, a split column, or every row of another log).

* ``fit_pass``: one read of the training rows fits the feature spec (``SpecFitter``, exact),
  checks the labels, sums each task's target for the output biases and counts each row group's
  training rows; ranks read disjoint row groups and merge what they found.
* ``StreamFeed``: an epoch reads the row groups in an order shuffled by ``seed + epoch``. With
  at least two row groups per rank, rank r reads every W-th of them; with fewer, every rank reads
  them all and keeps rows ``i % W == r``. Rows are shuffled in blocks of ``shuffle_rows``. Every
  rank yields ``min over ranks of (its training rows // (batch_size // W))`` batches (one process:
  every row, the last batch partial), so ranks step together; the few rows past that differ each
  epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from service.contracts.feature_spec import FeatureSpec
from service.contracts.fitting import SpecFitter
from training.data.computed import computed_columns, weight_and_group_columns
from training.data.dataset import Dataset
from training.data.loader import check_labels
from training.data.row_split import row_uniforms
from training.data.stream import ImpressionLog, Unit
from training.train.arrays import TrainArrays, frame_columns, label_matrix, to_arrays
from training.train.distributed import Distributed, Shard
from training.train.feed import Batch, means_of, target_sums
from training.train.progress import wanted

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowSelector:
    """Which rows of a log belong to a part: every row, the rows whose ``row_uniforms`` fall in
    ``[lo, hi)`` (the random split), or the rows whose ``column`` says ``value`` (a split column);
    only rows before ``max_rows`` (the run's row cap) in any case."""

    kind: Literal["all", "hash", "column"] = "all"
    seed: int = 0
    lo: float = 0.0
    hi: float = 1.0
    column: str | None = None
    value: str | None = None
    max_rows: int | None = None

    def mask(self, unit: Unit, frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        if self.kind == "hash":
            u = row_uniforms(self.seed, unit.start, unit.rows)
            chosen = (u >= self.lo) & (u < self.hi)
        elif self.kind == "column":
            assert self.column is not None
            values = frame[self.column].astype(str).str.strip().str.lower().to_numpy()
            chosen = values == self.value
        else:
            chosen = np.ones(unit.rows, dtype=np.bool_)
        if self.max_rows is not None:
            chosen &= np.arange(unit.start, unit.start + unit.rows) < self.max_rows
        return chosen


@dataclass(frozen=True)
class StreamPart:
    """The rows of one part of a run (train, validation, test): a log, the data set it belongs to
    (computed columns, tasks) and which of its rows."""

    log: ImpressionLog
    dataset: Dataset
    rows: RowSelector

    def frames(self, units: list[Unit]) -> Iterator[tuple[pd.DataFrame, npt.NDArray[np.int64]]]:
        """The part's rows of each unit (with the data set's computed columns) and their global
        row indices."""
        for unit in units:
            frame = read_chunk(self.log, unit, self.dataset)
            mask = self.rows.mask(unit, frame)
            if mask.any():
                index = np.arange(unit.start, unit.start + unit.rows)[mask]
                yield frame[mask].reset_index(drop=True), index


@dataclass
class FitStats:
    """What the fitting pass found, merged over ranks."""

    spec: FeatureSpec  # fitted
    sums: Tensor  # (T,) training-space target sums over each task's sample space
    counts: Tensor  # (T,)
    train_rows: dict[int, npt.NDArray[np.int64]]  # unit -> training rows by global index % W


def read_chunk(log: ImpressionLog, unit: Unit, dataset: Dataset) -> pd.DataFrame:
    """A unit's rows with the columns the data set computes (dataset.yaml's ``columns`` and
    ``sample_weights``; ``group`` data sets train in memory, see ``stream_run``)."""
    frame = log.read(unit)
    source = f"{dataset.source or dataset.dir} (row group {unit.row_group} of {unit.file})"
    computed_columns(frame, dataset.meta.columns, source)
    weight_and_group_columns(frame, dataset.meta.sample_weights, None, source)
    return frame


def fit_pass(part: StreamPart, dist: Distributed, *, progress: bool | None = False) -> FitStats:
    """Fit the spec on the part's rows in one read, each rank reading its share of units
    (``progress``: a bar on rank 0; None: only on a terminal)."""
    spec, tasks, log = part.dataset.spec, part.dataset.tasks, part.log
    fitter = SpecFitter(spec, max_rows=log.num_rows)
    sums, counts = torch.zeros(len(tasks), dtype=torch.float64), torch.zeros(len(tasks))
    counts = counts.double()
    table: dict[int, npt.NDArray[np.int64]] = {}
    mine = log.units[dist.rank :: dist.world]
    show = wanted(progress) and dist.is_main
    for unit in tqdm(mine, desc="fitting", unit="row groups", disable=not show, leave=False):
        frame = read_chunk(log, unit, part.dataset)
        check_labels(frame, tasks, f"{unit.file} (row group {unit.row_group})")
        train = part.rows.mask(unit, frame)
        rows = np.arange(unit.start, unit.start + unit.rows)[train]
        table[unit.index] = np.bincount(rows % dist.world, minlength=dist.world)
        chosen = frame[train].reset_index(drop=True)
        if len(chosen):
            fitter.update(frame_columns(chosen))
            s, c = target_sums(tasks, label_matrix(chosen, tasks))
            sums, counts = sums + s, counts + c
    shards = dist.merge_objects((fitter, sums, counts, table))
    fitter, sums, counts, table = shards[0]
    for other in shards[1:]:
        fitter.merge(other[0])
        sums, counts = sums + other[1], counts + other[2]
        table |= other[3]
    rows_seen = sum(int(v.sum()) for v in table.values())
    logger.info("fitted the feature spec on %d training rows of %d", rows_seen, log.num_rows)
    return FitStats(fitter.result(), sums, counts, table)


def concat(parts: list[TrainArrays]) -> TrainArrays:
    inputs = {k: torch.cat([p.inputs[k] for p in parts]) for k in parts[0].inputs}
    return TrainArrays(inputs, torch.cat([p.labels for p in parts]))


class StreamFeed:
    """This rank's batches of a streamed run (see the module docstring)."""

    def __init__(
        self,
        train: StreamPart,
        validation: StreamPart,
        spec: FeatureSpec,
        *,
        batch_size: int,
        seed: int,
        shuffle_rows: int,
        shard: Shard | None = None,
        stats: FitStats | None = None,
    ) -> None:
        self.train, self.val, self.spec = train, validation, spec
        self.tasks = train.dataset.tasks
        self.batch_size, self.seed, self.shuffle_rows = batch_size, seed, shuffle_rows
        self.shard = shard or Shard()
        self.stats = stats
        self.per_rank = max(1, batch_size // self.shard.world)

    def _by_unit(self, part: StreamPart) -> bool:
        return len(part.log.units) >= 2 * self.shard.world  # else rows interleave by index

    def _mine(self, part: StreamPart, units: list[Unit], rank: int) -> list[Unit]:
        return units[rank :: self.shard.world] if self._by_unit(part) else units

    def _arrays(self, part: StreamPart, units: list[Unit]) -> Iterator[TrainArrays]:
        """This rank's rows of the part in these units, transformed."""
        interleave = not self._by_unit(part) and self.shard.world > 1
        for frame, index in part.frames(units):
            if interleave:
                frame = frame[index % self.shard.world == self.shard.rank]
            if len(frame):
                yield to_arrays(frame.reset_index(drop=True), self.spec, self.tasks)

    def _steps(self, order: list[Unit]) -> int:
        if self.stats is None:
            raise ValueError("a StreamFeed without fit statistics can only read validation rows")
        world, table = self.shard.world, self.stats.train_rows
        totals = []
        for rank in range(world):
            units = self._mine(self.train, order, rank)
            if self._by_unit(self.train):
                totals.append(sum(int(table[u.index].sum()) for u in units))
            else:
                totals.append(sum(int(table[u.index][rank]) for u in units))
        if world == 1:
            return -(-totals[0] // self.per_rank)
        return min(totals) // self.per_rank

    def epoch(self, epoch: int) -> Iterator[Batch]:
        units = self.train.log.units
        permutation = np.random.default_rng([self.seed, epoch]).permutation(len(units))
        order = [units[i] for i in permutation]
        steps = self._steps(order)
        shuffle = torch.Generator().manual_seed(
            self.seed * 1_000_003 + epoch * 997 + self.shard.rank
        )
        buffer: list[TrainArrays] = []
        emitted = 0
        mine = self._mine(self.train, order, self.shard.rank)
        blocks = self._blocks(self._arrays(self.train, mine), buffer)
        for block, last in blocks:
            rows = torch.randperm(len(block), generator=shuffle)
            full = len(rows) if last else len(rows) // self.per_rank * self.per_rank
            for index in torch.split(rows[:full], self.per_rank):
                if emitted == steps:
                    return
                emitted += 1
                yield block.rows(index)
            buffer[:] = [TrainArrays(*block.rows(rows[full:]))] if full < len(rows) else []

    def _blocks(
        self, arrays: Iterator[TrainArrays], buffer: list[TrainArrays]
    ) -> Iterator[tuple[TrainArrays, bool]]:
        """Blocks of at least ``shuffle_rows`` rows (the caller puts a block's leftover rows
        back in ``buffer``); the last block flags itself."""
        for part in arrays:
            buffer.append(part)
            if sum(len(b) for b in buffer) >= self.shuffle_rows:
                yield concat(buffer), False
        if buffer:
            yield concat(buffer), True

    def validation(self, batch_size: int) -> Iterator[Batch]:
        units = self._mine(self.val, self.val.log.units, self.shard.rank)
        for rows in self._arrays(self.val, units):
            for start in range(0, len(rows), batch_size):
                yield rows.rows(slice(start, start + batch_size))

    def target_means(self) -> list[float | None]:
        if self.stats is None:
            raise ValueError("a StreamFeed without fit statistics has no target means")
        return means_of(self.stats.sums, self.stats.counts)
