"""``train`` and ``evaluate``: fit a multi-task ranker on a data directory, re-score a run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from training.train.config import load_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = subparsers.add_parser(
        "train", help="train a multi-task ranker from a preset on a data directory"
    )
    train.add_argument("--preset", default="default", help="preset name or YAML path (default)")
    train.add_argument(
        "--data",
        type=Path,
        required=True,
        help="data directory (dataset.yaml) or a view YAML in it",
    )
    train.add_argument(
        "--val-data",
        type=Path,
        help="data directory whose rows are the validation set (default: a random "
        "val_fraction of --data, or the split column of its dataset.yaml)",
    )
    train.add_argument(
        "--test-data",
        type=Path,
        help="data directory whose rows are the test set, scored once after training "
        "(default: none, or test_fraction / the split column)",
    )
    train.add_argument("--out", type=Path, required=True, help="run directory to write")
    train.add_argument("--epochs", type=int, help="override the preset's epochs")
    train.add_argument("--seed", type=int, help="override the seed")
    train.add_argument("--max-rows", type=int, help="use at most N impressions")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set arch.n_experts=8 --set weighting.kind=dwa",
    )
    train.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars (shown on a terminal)"
    )
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a trained run on a data directory (metrics.json stays as trained)"
    )
    evaluate.add_argument("run_dir", type=Path, help="run directory written by 'train'")
    evaluate.add_argument(
        "--data", type=Path, help="data directory (default: the run's own training data)"
    )
    evaluate.add_argument(
        "--out", type=Path, help="JSON file to write (default: RUN_DIR/evaluation.json)"
    )
    evaluate.add_argument(
        "--split",
        choices=("auto", "train", "validation", "test", "all"),
        default="auto",
        help="rows to score; auto: the run's test rows (else validation rows) on its own data, "
        "every row of another directory",
    )
    evaluate.set_defaults(func=_evaluate)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _stopping(metrics: dict[str, Any]) -> str:
    """``12 epochs (best epoch 9 by validation mean auc, early stopping)``."""
    how = "early stopping" if metrics["stopped"] == "early_stopping" else "epoch cap"
    return (
        f"{metrics['epochs_run']} epochs (best epoch {metrics['best_epoch']} by validation "
        f"{metrics['monitor']}; stopped by {how})"
    )


def _training_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` when it records how training stopped (older runs may not)."""
    path = run_dir / "metrics.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    keys = ("epochs_run", "best_epoch", "monitor", "stopped")
    return record if isinstance(record, dict) and all(k in record for k in keys) else None


def _summary(metrics: dict[str, Any]) -> str:
    parts = []
    for section in ("tasks", "derived"):
        for name, values in metrics.get(section, {}).items():
            shown = " ".join(
                f"{k}={v:.4f}" for k, v in values.items() if k != "n" and isinstance(v, float)
            )
            parts.append(f"  {name:<12} {shown} (n={values.get('n')})")
    return "\n".join(parts)


def _train(args: argparse.Namespace) -> int:
    from training.data.splits import DataSources
    from training.train.distributed import Distributed
    from training.train.run import train_run

    overrides = list(args.overrides)
    for key, value in (("epochs", args.epochs), ("seed", args.seed), ("max_rows", args.max_rows)):
        if value is not None:
            overrides.append(f"{key}={value}")
    started = time.perf_counter()
    sources = DataSources(args.data, args.val_data, args.test_data)
    dist = Distributed.from_env()  # a world of one unless launched by torchrun
    try:
        config = load_config(args.preset, overrides)
        progress = False if args.no_progress else None
        run = train_run(config, sources, args.out, progress=progress, dist=dist)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return _fail(str(exc))
    finally:
        dist.close()
    if not dist.is_main:
        return 0  # rank 0 reports and writes the run directory
    metrics = run.metrics
    ranks = f" on {dist.world} ranks" if dist.active else ""
    seconds = time.perf_counter() - started
    print(f"trained {config.arch.name}{ranks} in {seconds:.1f} s: {_stopping(metrics)}")
    if metrics["still_improving"]:
        print(
            f"warning: the epoch cap ({metrics['epoch_cap']}) ended the run while validation "
            f"{metrics['monitor']} was still improving; raise --epochs"
        )
    rows = metrics["rows"]
    if metrics["split"] == "test":
        print(f"test metrics ({rows['test']} rows held out from training and epoch choice):")
    else:
        print(f"validation metrics ({rows['validation']} rows); {metrics['note']}:")
    print(_summary(metrics))
    print(f"wrote {run.run_dir}:")
    for path in run.files:
        print(f"  {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.train.run import evaluate_run

    try:
        run = evaluate_run(args.run_dir, args.data, args.split, args.out)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return _fail(str(exc))
    metrics = run.metrics
    record = _training_record(args.run_dir)
    if record is not None:
        print(f"model: {_stopping(record)}")
    print(f"metrics on {metrics['rows']} {metrics['split']} rows of {metrics['data']}:")
    print(_summary(metrics))
    if "note" in metrics:
        print(f"note: {metrics['note']}")
    print(f"wrote {run.files[0]}")
    return 0
