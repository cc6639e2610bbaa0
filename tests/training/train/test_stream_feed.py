"""Streaming a Parquet log: every training row once per epoch, ranks disjoint and in step,
the split shared by training, evaluation and publishing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from training.cli.main import main
from training.data.dataset import Dataset, load_dataset
from training.data.row_split import validation_rows
from training.data.simulator import SimulatorConfig, simulate
from training.data.stream import ImpressionLog
from training.train.distributed import Distributed, Shard
from training.train.feed import Batch
from training.train.stream_feed import FitStats, RowSelector, StreamFeed, StreamPart, fit_pass

SEED, VAL = 4, 0.25


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """3,000 impressions in 2 Parquet parts of 500-row row groups (6 units)."""
    out = tmp_path_factory.mktemp("parts")
    patch = pytest.MonkeyPatch()
    patch.setattr("training.data.simulator.CHUNK_ROWS", 500)
    try:
        simulate(SimulatorConfig(rows=3000, seed=9, users=80, items=60), out, part_rows=1500)
    finally:
        patch.undo()
    return load_dataset(out, rows=False)


def _parts(dataset: Dataset, log: ImpressionLog) -> tuple[StreamPart, StreamPart]:
    train = StreamPart(log, dataset, RowSelector("hash", SEED, VAL, 1.0))
    return train, StreamPart(log, dataset, RowSelector("hash", SEED, 0.0, VAL))


def _log(dataset: Dataset) -> ImpressionLog:
    return ImpressionLog(dataset.dir / dataset.meta.impressions)


def _feed(dataset: Dataset, shard: Shard, stats: FitStats, log: ImpressionLog) -> StreamFeed:
    train, val = _parts(dataset, log)
    return StreamFeed(
        train,
        val,
        stats.spec,
        batch_size=64,
        seed=1,
        shuffle_rows=700,
        shard=shard,
        stats=stats,
    )


def _stats_for(world: int, stats: FitStats, log: ImpressionLog) -> FitStats:
    """The fit statistics a ``world``-rank run would have merged (training rows by residue)."""
    table = {}
    for unit in log.units:
        train = ~validation_rows(SEED, unit.start, unit.rows, VAL)
        rows = np.arange(unit.start, unit.start + unit.rows)[train]
        table[unit.index] = np.bincount(rows % world, minlength=world)
    return FitStats(stats.spec, stats.sums, stats.counts, table)


def _rows(batches: list[Batch]) -> tuple[int, float]:
    labels = torch.cat([y for _, y in batches]) if batches else torch.zeros(0, 5)
    return len(labels), float(labels[:, 0].sum())


def test_a_streamed_epoch_yields_every_training_row_once(parts: Dataset) -> None:
    log = _log(parts)
    assert len(log.units) == 6
    assert log.num_rows == 3000
    stats = fit_pass(_parts(parts, log)[0], Distributed())
    feed = _feed(parts, Shard(), stats, log)
    val = validation_rows(SEED, 0, 3000, VAL)
    clicks = log.dataset.to_table(columns=["click"]).to_pandas()["click"].to_numpy()
    for epoch in (0, 1):
        batches = list(feed.epoch(epoch))
        assert _rows(batches) == (int((~val).sum()), float(clicks[~val].sum()))
        assert max(len(y) for _, y in batches) == 64
    first = torch.cat([y for _, y in feed.epoch(0)])
    second = torch.cat([y for _, y in feed.epoch(1)])
    assert not torch.equal(first, second)  # each epoch has its own order
    assert _rows(list(feed.validation(100))) == (int(val.sum()), float(clicks[val].sum()))
    assert int(stats.counts[0]) == int((~val).sum())  # the fit pass saw the training rows only


@pytest.mark.parametrize("by_unit", [True, False])
def test_two_ranks_read_disjoint_rows_and_step_together(parts: Dataset, by_unit: bool) -> None:
    log = _log(parts)
    if not by_unit:  # fewer than two row groups per rank: rows interleave by index
        log.units = log.units[:1]
        log.num_rows = log.units[0].rows
    stats = _stats_for(2, fit_pass(_parts(parts, log)[0], Distributed()), log)
    feeds = [_feed(parts, Shard(rank, 2), stats, log) for rank in range(2)]
    epochs = [list(feed.epoch(0)) for feed in feeds]
    assert len(epochs[0]) == len(epochs[1]) > 0  # the same number of steps on every rank
    assert all(len(y) == 32 for batches in epochs for _, y in batches)  # 64 // 2 rows each
    train_rows = sum(int(v.sum()) for v in stats.train_rows.values())
    used = sum(_rows(batches)[0] for batches in epochs)
    assert train_rows - used < 2 * 32 + (500 if by_unit else 0)  # only a tail is left out
    val = [_rows(list(feed.validation(100))) for feed in feeds]
    everything = _rows(list(_feed(parts, Shard(), stats, log).validation(100)))
    assert (val[0][0] + val[1][0], val[0][1] + val[1][1]) == everything


def test_streamed_run_evaluates_and_publishes_on_its_own_split(
    parts: Dataset, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train = ["train", "--data", str(parts.dir), "--out", str(run), "--epochs", "1"]
    train += ["--no-progress", "--set", "streaming.mode=auto", "--set", "streaming.above_rows=100"]
    train += ["--set", "test_fraction=0.1"]
    assert main(train) == 0
    assert "mode: always" in (run / "config.yaml").read_text()  # the split rule, recorded
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["split"] == "test"
    out = tmp_path / "evaluation.json"
    assert main(["evaluate", str(run), "--out", str(out)]) == 0
    evaluated = json.loads(out.read_text())
    assert evaluated["split"] == "test"
    assert evaluated["tasks"] == trained["test"]["tasks"]
    u_val = validation_rows(0, 0, 3000, 0.2)  # the run's seed and val_fraction
    u_test = validation_rows(0, 0, 3000, 0.3) & ~u_val
    assert trained["validation"]["tasks"]["click"]["n"] == int(u_val.sum())
    assert trained["rows"]["test"] == int(u_test.sum())
    store = tmp_path / "store"
    assert main(["publish", str(run), "--store", str(store), "--model", "feed"]) == 0


def test_a_split_column_chooses_the_same_rows_streamed(parts: Dataset, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(parts.dir, data)
    names = np.array(["train"] * 6 + ["validation"] * 3 + ["Test"])  # case and spaces forgiven
    for path in sorted((data / "impressions").glob("*.parquet")):
        frame = pd.read_parquet(path)
        frame["part"] = np.resize(names, len(frame))
        frame.to_parquet(path, index=False, row_group_size=500)
    meta = yaml.safe_load((data / "dataset.yaml").read_text())
    (data / "dataset.yaml").write_text(yaml.safe_dump({**meta, "split_column": "part"}))
    run = tmp_path / "run"
    train = ["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--no-progress"]
    assert main([*train, "--set", "streaming.mode=always"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["rows"] == {"train": 1800, "validation": 900, "test": 300}
    assert metrics["split"] == "test"
