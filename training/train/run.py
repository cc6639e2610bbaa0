"""A training run end to end: data directory + config -> run directory (docs/design.md).

``train_run`` splits the impressions (``Dataset.split(seed, val_fraction)``, the split export uses
to find held-out rows), fits the feature spec on the training rows only, trains, and writes
checkpoint.pt, config.yaml, feature_spec.yaml, metrics.json, plots/ and data_card.json.
``evaluate_run`` recomputes metrics.json for a run on a data directory.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from training.data.dataset import Dataset, dataset_file, load_dataset
from training.train.arrays import fit_on, to_arrays
from training.train.checkpoint import ModelOptions, build_model, load_run, save_checkpoint
from training.train.config import TrainConfig, dump_config
from training.train.distributed import Distributed
from training.train.evaluate import evaluate_arrays
from training.train.plots import plot_gates, plot_loss_curves
from training.train.trainer import Trainer, seed_everything

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
SPEC_FILE = "feature_spec.yaml"


@dataclass(frozen=True)
class RunFiles:
    """What a run wrote, for the CLI to report."""

    run_dir: Path
    files: list[Path]
    metrics: dict[str, Any]


def model_options(config: TrainConfig, dataset: Dataset) -> ModelOptions:
    """ESMM pair, ESM² triple, NMTR cascade and position-biased tasks this config asks of this
    data set."""
    meta = dataset.meta
    esmm = (dataset.esmm.ctr, dataset.esmm.cvr) if config.esmm and dataset.esmm else None
    esm2 = None
    if config.esm2 and meta.esm2 is not None:
        esm2 = (meta.esm2.ctr, meta.esm2.action, meta.esm2.cvr)
        esmm = None if esmm is None or esmm[1] in esm2 else esmm  # ESM² supersedes ESMM's pair
    cascade = tuple(meta.funnel) if config.nmtr and meta.funnel else ()
    position: tuple[str, ...] = ()
    if config.position_bias and dataset.spec.features_of("training", "categorical") + list(
        dataset.spec.features_of("training", "numeric")
    ):
        chosen = config.position_bias_tasks
        if chosen is None:
            chosen = [t.id for t in dataset.tasks if t.type == "binary" and t.sample_space == "all"]
        position = tuple(chosen)
    elif config.position_bias and config.position_bias_tasks:
        raise ValueError(
            f"position_bias_tasks {config.position_bias_tasks} need a training-only feature "
            "(side: training) in the data set's feature spec"
        )
    return ModelOptions(esmm=esmm, position_bias_tasks=position, esm2=esm2, cascade=cascade)


def _shrink(frame: pd.DataFrame, rows: int | None) -> pd.DataFrame:
    return frame if rows is None else frame.head(max(rows, 1)).reset_index(drop=True)


def _write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    path.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def train_run(
    config: TrainConfig,
    data_dir: Path,
    run_dir: Path,
    *,
    progress: bool = True,
    dist: Distributed | None = None,
) -> RunFiles:
    """Train on a data directory and write the run directory (rank 0 alone in a distributed
    run: the other ranks return the metrics and no files)."""
    dist = dist or Distributed()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    dataset = load_dataset(data_dir)
    train_ds, val_ds = dataset.split(config.data_split_seed, config.val_fraction)
    train_rows = val_rows = None
    if config.max_rows is not None and config.max_rows < len(dataset):
        val_rows = max(1, round(config.max_rows * config.val_fraction))
        train_rows = max(1, config.max_rows - val_rows)
    train_frame, val_frame = _shrink(train_ds.frame, train_rows), _shrink(val_ds.frame, val_rows)
    logger.info("training on %d rows, validating on %d", len(train_frame), len(val_frame))
    seed_everything(config.seed)
    spec = fit_on(train_frame, dataset.spec)
    train, val = (
        to_arrays(train_frame, spec, dataset.tasks),
        to_arrays(val_frame, spec, dataset.tasks),
    )
    options = model_options(config, dataset)
    model = build_model(spec, dataset.tasks, config, options)
    ids = [t.id for t in dataset.tasks]
    esmm = (ids.index(options.esmm[0]), ids.index(options.esmm[1])) if options.esmm else None
    esm2 = None
    if options.esm2:
        esm2 = (ids.index(options.esm2[0]), ids.index(options.esm2[1]), ids.index(options.esm2[2]))
    trainer = Trainer(
        model,
        config,
        dataset.tasks,
        dataset.derived,
        esmm,
        progress=progress,
        dist=dist,
        esm2=esm2,
    )
    result = trainer.fit(train, val)
    if not dist.is_main:
        return RunFiles(run_dir, [], result.metrics)

    run_dir.mkdir(parents=True, exist_ok=True)
    source = dataset.source if dataset.source and dataset.source.name != "dataset.yaml" else None
    files = [
        save_checkpoint(
            run_dir, model, config, spec, dataset.derived, source or dataset.dir, options
        )
    ]
    dump_config(config, run_dir / CONFIG_FILE)
    spec.dump(run_dir / SPEC_FILE)
    metrics = {
        **result.metrics,
        "split": "validation",
        "best_epoch": result.best_epoch,
        "gates": result.gates,
        "history": result.history,
    }
    _write_metrics(run_dir / METRICS_FILE, metrics)
    files += [run_dir / CONFIG_FILE, run_dir / SPEC_FILE, run_dir / METRICS_FILE]
    files.append(plot_loss_curves(result.history, run_dir / "plots" / "loss_curves.png"))
    if result.gates:
        files.append(plot_gates(result.gates, run_dir / "plots" / "gates.png"))
    if dataset.meta.data_card and (dataset.dir / dataset.meta.data_card).is_file():
        files.append(
            Path(shutil.copyfile(dataset.dir / dataset.meta.data_card, run_dir / "data_card.json"))
        )
    return RunFiles(run_dir, files, metrics)


def evaluate_run(
    run_dir: Path, data_dir: Path, split: Literal["auto", "validation", "all"] = "auto"
) -> RunFiles:
    """Recompute ``metrics.json`` for a trained run on a data directory.

    ``auto``: the run's validation split when ``data_dir`` is the data set it was trained on (so
    training rows never count), every row otherwise.
    """
    run = load_run(run_dir)
    dataset = load_dataset(data_dir)
    if split == "auto":
        given = dataset_file(dataset.dir if dataset.source is None else dataset.source)
        same = given.resolve() == dataset_file(run.dataset_dir).resolve()
        split = "validation" if same else "all"
    frame = dataset.frame
    if split == "validation":
        frame = dataset.split(run.config.data_split_seed, run.config.val_fraction)[1].frame
        if run.config.max_rows is not None:
            frame = _shrink(frame, max(1, round(run.config.max_rows * run.config.val_fraction)))
    data = to_arrays(frame, run.spec, run.tasks)
    metrics, prediction = evaluate_arrays(
        run.model, data, run.tasks, run.derived, run.config.eval_batch_size
    )
    path = Path(run_dir) / METRICS_FILE
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = {
        **metrics,
        "split": split,
        "data": str(dataset.dir.resolve()),
        "gates": prediction.gates,
        "history": previous.get("history", []),
    }
    _write_metrics(path, out)
    return RunFiles(Path(run_dir), [path], out)
