"""``train`` and ``evaluate``: fit a multi-task ranker on a data directory, re-score a run."""

from __future__ import annotations

import argparse
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
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="recompute RUN_DIR/metrics.json on a data directory"
    )
    evaluate.add_argument("run_dir", type=Path, help="run directory written by 'train'")
    evaluate.add_argument("--data", type=Path, required=True, help="data directory (dataset.yaml)")
    evaluate.add_argument(
        "--split",
        choices=("auto", "validation", "all"),
        default="auto",
        help="rows to score; auto: the run's validation split on its own data set, else all",
    )
    evaluate.set_defaults(func=_evaluate)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


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
    from training.train.distributed import Distributed
    from training.train.run import train_run

    overrides = list(args.overrides)
    for key, value in (("epochs", args.epochs), ("seed", args.seed), ("max_rows", args.max_rows)):
        if value is not None:
            overrides.append(f"{key}={value}")
    started = time.perf_counter()
    dist = Distributed.from_env()  # a world of one unless launched by torchrun
    try:
        config = load_config(args.preset, overrides)
        run = train_run(config, args.data, args.out, progress=not args.no_progress, dist=dist)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return _fail(str(exc))
    finally:
        dist.close()
    if not dist.is_main:
        return 0  # rank 0 reports and writes the run directory
    ranks = f" on {dist.world} ranks" if dist.active else ""
    print(
        f"trained {config.arch.name}{ranks} in {time.perf_counter() - started:.1f} s; validation:"
    )
    print(_summary(run.metrics))
    print(f"wrote {run.run_dir}:")
    for path in run.files:
        print(f"  {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.train.run import evaluate_run

    try:
        run = evaluate_run(args.run_dir, args.data, args.split)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return _fail(str(exc))
    print(f"metrics on {run.metrics['split']} rows of {args.data}:")
    print(_summary(run.metrics))
    print(f"wrote {run.files[0]}")
    return 0
