"""Streamed runs: when a run reads its logs in pieces, its parts, and the rows ``evaluate`` and
``publish`` read back from them.

``streaming.mode: auto`` streams when the training log is Parquet with more than
``streaming.above_rows`` rows; the resolved mode ("always" or "never") is what the run's config
records, since it decides the random split's rule: ``training.data.splits``' permutation in memory,
``training.data.row_split``'s hash of the row index when streamed. A split column and
``--val-data`` / ``--test-data`` directories mean the same rows either way. Data sets that group
rows into requests (rank tasks) train in memory: requests must stay whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from service.contracts.feature_spec import FeatureSpec
from training.data.dataset import Dataset, dataset_file, load_config, load_dataset
from training.data.splits import SPLIT_VALUES, DataSources, SplitName
from training.data.stream import ImpressionLog, is_streamable
from training.train.config import TrainConfig
from training.train.distributed import Distributed, Shard
from training.train.stream_feed import (
    FitStats,
    RowSelector,
    StreamFeed,
    StreamPart,
    fit_pass,
)

logger = logging.getLogger(__name__)


def resolve_streaming(config: TrainConfig, sources: DataSources) -> TrainConfig:
    """The config with ``streaming.mode`` resolved to "always" or "never" for this data."""
    mode = config.streaming.mode
    source = dataset_file(sources.train)
    meta = load_config(source)
    if meta.group is not None:
        if mode == "always":
            raise ValueError(
                f"{source} groups rows into requests ('group: {meta.group}', rank tasks), which "
                "train in memory: drop streaming.mode=always (the log must fit in memory)"
            )
        mode = "never"
    if mode == "auto":
        path = source.parent / meta.impressions
        big = is_streamable(path) and ImpressionLog(path).num_rows > config.streaming.above_rows
        mode = "always" if big else "never"
    streaming = config.streaming.model_copy(update={"mode": mode})
    return config.model_copy(update={"streaming": streaming})


@dataclass(frozen=True)
class StreamParts:
    """A streamed run's parts and where each came from (for metrics.json)."""

    train: StreamPart
    validation: StreamPart
    test: StreamPart | None
    origin: dict[str, str]

    def part(self, name: SplitName) -> StreamPart:
        chosen = {"train": self.train, "validation": self.validation, "test": self.test}[name]
        if chosen is None:
            raise ValueError("this run has no test rows")
        return chosen


def _open(directory: Path, train: Dataset | None = None) -> tuple[ImpressionLog, Dataset]:
    header = load_dataset(directory, rows=False)
    if train is not None:
        ours = [(t.id, t.type, t.sample_space) for t in train.tasks]
        theirs = [(t.id, t.type, t.sample_space) for t in header.tasks]
        if ours != theirs:
            raise ValueError(
                f"{directory} declares tasks {theirs}, the training data {ours}: held-out rows "
                "must have the same tasks"
            )
        header = replace(train, dir=header.dir, source=header.source, meta=header.meta)
    return ImpressionLog(header.dir / header.meta.impressions), header


def stream_parts(sources: DataSources, config: TrainConfig) -> StreamParts:
    """Train, validation and test parts, split as ``training.data.splits`` says, with the hash
    rule for the random split."""
    log, dataset = _open(sources.train)
    cap = config.max_rows
    column = dataset.meta.split_column
    if column is not None:
        if sources.validation is not None or sources.test is not None:
            raise ValueError(
                f"{sources.train} marks its rows with split_column {column!r}; give either that "
                "column or --val-data / --test-data, not both"
            )
        if column not in log.schema.names:
            raise ValueError(f"split_column {column!r} is not a column of {log.path}")
        parts = {
            name: StreamPart(log, dataset, RowSelector("column", column=column, value=name))
            for name in SPLIT_VALUES
        }
        marked = {str(name): f"rows with {column} == {name}" for name in SPLIT_VALUES}
        return StreamParts(parts["train"], parts["validation"], parts["test"], marked)
    seed = config.data_split_seed
    val_f = 0.0 if sources.validation is not None else config.val_fraction
    test_f = 0.0 if sources.test is not None else config.test_fraction
    hashed = f"of {dataset.dir} (hash of the row index, seed {seed})"
    origin: dict[str, str] = {
        "train": f"the rest {hashed}" if val_f or test_f else str(dataset.dir)
    }
    train = StreamPart(log, dataset, RowSelector("hash", seed, val_f + test_f, 1.0, max_rows=cap))
    if sources.validation is not None:
        validation = StreamPart(*_open(sources.validation, dataset), RowSelector())
        origin["validation"] = str(sources.validation)
    else:
        validation = StreamPart(log, dataset, RowSelector("hash", seed, 0.0, val_f, max_rows=cap))
        origin["validation"] = f"{val_f:.0%} {hashed}"
    test = None
    if sources.test is not None:
        test = StreamPart(*_open(sources.test, dataset), RowSelector())
        origin["test"] = str(sources.test)
    elif test_f:
        test = StreamPart(
            log, dataset, RowSelector("hash", seed, val_f, val_f + test_f, max_rows=cap)
        )
        origin["test"] = f"{test_f:.0%} {hashed}"
    return StreamParts(train, validation, test, origin)


def streamed_feed(
    config: TrainConfig, parts: StreamParts, dist: Distributed, *, progress: bool | None
) -> tuple[FitStats, StreamFeed]:
    """Fit the spec in one pass over the training rows, then a feed over this rank's share."""
    log = parts.train.log
    logger.info(
        "streaming %d rows in %d row groups from %s", log.num_rows, len(log.units), log.path
    )
    stats = fit_pass(parts.train, dist, progress=progress)
    feed = StreamFeed(
        parts.train,
        parts.validation,
        stats.spec,
        batch_size=config.batch_size,
        seed=config.seed,
        shuffle_rows=config.streaming.shuffle_rows,
        shard=dist.shard,
        stats=stats,
    )
    return stats, feed


def part_feed(config: TrainConfig, part: StreamPart, spec: FeatureSpec) -> StreamFeed:
    """A one-process feed whose ``validation`` batches are ``part``'s rows (for scoring)."""
    return StreamFeed(
        part,
        part,
        spec,
        batch_size=config.batch_size,
        seed=config.seed,
        shuffle_rows=config.streaming.shuffle_rows,
        shard=Shard(),
    )


def first_rows(part: StreamPart, rows: int) -> pd.DataFrame:
    """The part's first ``rows`` rows as raw records (publish verifies and warms up on them)."""
    parts: list[pd.DataFrame] = []
    found = 0
    for frame, _ in part.frames(part.log.units):
        parts.append(frame.head(rows - found))
        found += len(parts[-1])
        if found >= rows:
            break
    return pd.concat(parts, ignore_index=True) if parts else part.log.empty_frame()
