"""A training run end to end: data directories + config -> run directory (docs/design.md).

``train_run`` splits the rows (``training.data.splits``: a split column, --val-data / --test-data
directories, or a seeded random split), fits the feature spec on the training rows only, trains
with early stopping on the validation rows, scores the test rows (if any) once at the end, and
writes checkpoint.pt, config.yaml, feature_spec.yaml, metrics.json, plots/ and data_card.json.
``evaluate_run`` scores a trained run on a data directory into a separate file.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from service.contracts.feature_spec import FeatureSpec
from training.data.dataset import Dataset, dataset_file, load_dataset
from training.data.splits import DataSources, SplitName, split_rows
from training.models.ranker import MultiTaskRanker
from training.train.arrays import fit_on, to_arrays
from training.train.checkpoint import (
    LoadedRun,
    ModelOptions,
    build_model,
    load_run,
    save_checkpoint,
)
from training.train.config import TrainConfig, dump_config
from training.train.distributed import Distributed
from training.train.evaluate import evaluate_arrays, evaluate_batches
from training.train.feature_dropout import FeatureDropout
from training.train.feed import ArrayFeed, Feed
from training.train.plots import plot_gates, plot_training_curves
from training.train.stream_feed import RowSelector
from training.train.stream_run import (
    first_rows,
    part_feed,
    resolve_streaming,
    stream_parts,
    streamed_feed,
)
from training.train.trainer import Trainer, seed_everything

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
SPEC_FILE = "feature_spec.yaml"
EVALUATION_FILE = "evaluation.json"
VALIDATION_NOTE = (
    "no test set: these are validation metrics, measured on the rows that chose the epoch "
    "(optimistic); give --test-data DIR, a split column or test_fraction for test metrics"
)


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
    if config.position_bias and dataset.spec.names("training"):
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


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _sources(data: Path | DataSources) -> DataSources:
    return data if isinstance(data, DataSources) else DataSources(Path(data))


@dataclass(frozen=True)
class _Prepared:
    """The training data of a run, in memory or streamed: what the loop and the report need."""

    dataset: Dataset  # the training part (columns only when streamed)
    spec: FeatureSpec  # fitted on the training rows
    feed: Feed
    rows: dict[str, int]
    origin: dict[str, str]
    score_test: Callable[[MultiTaskRanker, TrainConfig], dict[str, Any] | None]


def _rows_scored(metrics: dict[str, Any]) -> int:
    return max((int(m.get("n") or 0) for m in metrics["tasks"].values()), default=0)


def _in_memory(config: TrainConfig, sources: DataSources, dist: Distributed) -> _Prepared:
    splits = split_rows(sources, config.split_plan)
    dataset = splits.train
    spec = fit_on(dataset.frame, dataset.spec)
    train = to_arrays(dataset.frame, spec, dataset.tasks)
    val = to_arrays(splits.validation.frame, spec, dataset.tasks)
    feed = ArrayFeed(
        train,
        val,
        dataset.tasks,
        batch_size=config.batch_size,
        seed=config.seed,
        shard=dist.shard,
    )

    def score_test(model: MultiTaskRanker, config: TrainConfig) -> dict[str, Any] | None:
        if splits.test is None:
            return None
        test = to_arrays(splits.test.frame, spec, dataset.tasks)
        return evaluate_arrays(model, test, dataset.tasks, dataset.derived, config.eval_batch_size)[
            0
        ]

    return _Prepared(dataset, spec, feed, splits.rows(), splits.origin, score_test)


def _streamed(
    config: TrainConfig, sources: DataSources, dist: Distributed, progress: bool | None
) -> _Prepared:
    parts = stream_parts(sources, config)
    stats, feed = streamed_feed(config, parts, dist, progress=progress)
    train_rows = sum(int(v.sum()) for v in stats.train_rows.values())

    def score_test(model: MultiTaskRanker, config: TrainConfig) -> dict[str, Any] | None:
        if parts.test is None:
            return None
        batches = part_feed(config, parts.test, stats.spec).validation(config.eval_batch_size)
        tasks, derived = parts.train.dataset.tasks, parts.train.dataset.derived
        return evaluate_batches(model, batches, tasks, derived).metrics

    dataset = parts.train.dataset
    return _Prepared(dataset, stats.spec, feed, {"train": train_rows}, parts.origin, score_test)


def train_run(
    config: TrainConfig,
    data: Path | DataSources,
    run_dir: Path,
    *,
    progress: bool | None = None,
    dist: Distributed | None = None,
) -> RunFiles:
    """Train on a data directory (or train / validation / test directories) and write the run
    directory (rank 0 alone in a distributed run: the other ranks return the metrics and no
    files)."""
    dist = dist or Distributed()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    sources = _sources(data)
    config = resolve_streaming(config, sources)
    prepared = (
        _streamed(config, sources, dist, progress) if config.streaming.mode == "always" else None
    )
    prepared = prepared or _in_memory(config, sources, dist)
    dataset, spec = prepared.dataset, prepared.spec
    config, notes = config.for_tasks([t.id for t in dataset.tasks], [d.id for d in dataset.derived])
    for note in notes:
        logger.info("preset adapted to the data set: %s", note)
    logger.info("rows %s; validation: %s", prepared.rows, prepared.origin["validation"])
    seed_everything(config.seed)
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
        feature_dropout=FeatureDropout.from_spec(spec, config.feature_dropout),
    )
    result = trainer.fit_feed(prepared.feed)
    if not dist.is_main:
        return RunFiles(run_dir, [], result.metrics)

    metrics: dict[str, Any] = {**result.metrics, "split": "validation", "note": VALIDATION_NOTE}
    metrics["validation"] = result.metrics
    rows = {"validation": _rows_scored(result.metrics)} | prepared.rows
    scored = prepared.score_test(model, config)  # once, by the chosen model: never chose anything
    if scored is not None:
        metrics |= {**scored, "split": "test", "test": scored}
        metrics.pop("note")
        rows.setdefault("test", _rows_scored(scored))
    metrics |= {"rows": rows, "origin": prepared.origin, **result.summary()}
    metrics |= {"epoch_cap": config.epochs, "preset_notes": notes}
    metrics |= {"gates": result.gates, "history": result.history}

    run_dir.mkdir(parents=True, exist_ok=True)
    files = [save_checkpoint(run_dir, model, config, spec, dataset.derived, sources, options)]
    dump_config(config, run_dir / CONFIG_FILE)
    spec.dump(run_dir / SPEC_FILE)
    files += [
        run_dir / CONFIG_FILE,
        run_dir / SPEC_FILE,
        _write_json(run_dir / METRICS_FILE, metrics),
    ]
    curves = plot_training_curves(
        result.history,
        dataset.tasks,
        result.best_epoch,
        run_dir / "plots" / "training_curves.png",
        result.monitor,
    )
    files.append(curves)
    if result.gates:
        files.append(plot_gates(result.gates, run_dir / "plots" / "gates.png"))
    if dataset.meta.data_card and (dataset.dir / dataset.meta.data_card).is_file():
        files.append(
            Path(shutil.copyfile(dataset.dir / dataset.meta.data_card, run_dir / "data_card.json"))
        )
    return RunFiles(run_dir, files, metrics)


EvaluateSplit = Literal["auto", "train", "validation", "test", "all"]


def held_out(
    run: LoadedRun, data_dir: Path | None = None, limit: int = 2000
) -> tuple[SplitName, Dataset]:
    """Rows a run never trained on, split as it was: its test rows, else its validation rows.
    ``data_dir``: a copy of the training directory elsewhere (split the same way). A streamed
    run reads its first ``limit`` held-out rows only."""
    sources = run.sources if data_dir is None else DataSources(Path(data_dir))
    if run.config.streaming.mode == "always":
        parts = stream_parts(sources, run.config)
        if parts.test is not None:
            frame = first_rows(parts.test, limit)
            if len(frame):
                return "test", replace(parts.test.dataset, frame=frame)
        frame = first_rows(parts.validation, limit)
        return "validation", replace(parts.validation.dataset, frame=frame)
    splits = split_rows(sources, run.config.split_plan)
    return ("test", splits.test) if splits.test is not None else ("validation", splits.validation)


def evaluate_run(
    run_dir: Path,
    data_dir: Path | None = None,
    split: EvaluateSplit = "auto",
    out: Path | None = None,
) -> RunFiles:
    """Score a trained run into ``out`` (default ``RUN_DIR/evaluation.json``); the training
    record ``metrics.json`` is never written.

    On the run's own data (``data_dir`` None or its training directory) ``auto`` scores the
    test rows, else the validation rows (with a note that they chose the epoch); ``train``,
    ``validation`` and ``test`` pick a part, ``all`` every row. Another directory is scored
    whole.
    """
    run_dir = Path(run_dir)
    out = run_dir / EVALUATION_FILE if out is None else Path(out)
    if out.resolve() == (run_dir / METRICS_FILE).resolve():
        raise ValueError(f"{out} is the run's training record: write the evaluation elsewhere")
    run = load_run(run_dir)
    own = data_dir is None or dataset_file(data_dir).resolve() == dataset_file(run.sources.train)
    if not own and split not in ("auto", "all"):
        raise ValueError(
            f"--split {split} names a part of the run's own data ({run.sources.train}); "
            f"{data_dir} is another directory, scored whole"
        )
    if own and run.config.streaming.mode == "always":  # read in pieces, split as trained
        return _evaluate_streamed(run, run_dir, split, out)
    if not own or split == "all":
        split, rows = "all", load_dataset(data_dir or run.sources.train)
    elif split == "auto":
        split, rows = held_out(run)
    else:
        rows = split_rows(run.sources, run.config.split_plan).part(split)
    data = to_arrays(rows.frame, run.spec, run.tasks)
    metrics, prediction = evaluate_arrays(
        run.model, data, run.tasks, run.derived, run.config.eval_batch_size
    )
    result = {**metrics, "split": split, "rows": len(rows), "data": str(rows.dir.resolve())}
    if split == "validation":
        result["note"] = VALIDATION_NOTE
    result["gates"] = prediction.gates
    return RunFiles(run_dir, [_write_json(out, result)], result)


def _evaluate_streamed(run: LoadedRun, run_dir: Path, split: EvaluateSplit, out: Path) -> RunFiles:
    parts = stream_parts(run.sources, run.config)
    if split == "all":
        part = replace(parts.train, rows=RowSelector(max_rows=run.config.max_rows))
    elif split == "auto":
        split = "test" if parts.test is not None else "validation"
        part = parts.part(split)
    else:
        part = parts.part(split)
    batches = part_feed(run.config, part, run.spec).validation(run.config.eval_batch_size)
    scored = evaluate_batches(run.model, batches, run.tasks, run.derived)
    if split == "test" and _rows_scored(scored.metrics) == 0:
        raise ValueError("this run has no test rows (its split column marks none)")
    rows = _rows_scored(scored.metrics)
    result = {**scored.metrics, "split": split, "rows": rows, "data": str(part.log.path)}
    if split == "validation":
        result["note"] = VALIDATION_NOTE
    result["gates"] = scored.prediction.gates
    return RunFiles(run_dir, [_write_json(out, result)], result)
