"""Compare multi-task architectures on one data directory over several seeds.

Each (architecture, seed) run trains with ``training.train.run.train_run`` from the arch's preset
(``single_task``: one ``shared_bottom`` model per task, the MMoE paper's baseline; ``hgb``: one
scikit-learn gradient-boosted tree per task, ``gbdt_baseline.py``) and records every task's test
metrics (``--test-fraction`` > 0: rows that neither train nor choose the epoch) or validation
metrics. It prints one line per run, then the table, and writes into ``--out``:

- ``results.json``: every run's per-task metrics, best epochs, resolved config and seconds;
- ``table.md``: per architecture and task the best and mean ± std AUC (binary tasks) or mean ± std
  MSE (regression), the gap to Shared-Bottom with its standard error, and seconds per run;
- ``metrics.png``: per task, a box and strip plot of the metric across seeds per architecture.

The split is the same for every run (``--split-seed``, default 0, the training config's
``split_seed``; ``--val-fraction``, ``--test-fraction``), so seeds vary only the initialisation
and batch order, as in the papers' repeated runs (``--split-seed -1`` lets each seed draw its own
split, to measure how much of the spread the split adds).

    python benchmarks/mtl_compare.py --data /tmp/mtl-data/adult --name census \\
        --archs hgb,single_task,shared_bottom,omoe,mmoe,cgc,ple --seeds 5 \\
        --val-fraction 0.1 --test-fraction 0.1 --out docs/benchmarks/census \\
        [--epochs E] [--max-rows R] [--set KEY=VALUE ...] [--smoke]

An arch entry may be a variant of a preset, ``LABEL:PRESET+KEY=VALUE+...`` (e.g.
``esmm:esm2+esm2=false``), and ``--data`` a view YAML (``DIR/esm2.yaml``); ``--reference LABEL``
measures the table's gaps against that entry instead of Shared-Bottom.

Presets run as they are, with their own epoch cap and early stopping unless ``--epochs`` is given;
settings naming tasks the data set lacks (the PLE preset's ``weighting.gamma.click``) are dropped
by ``TrainConfig.for_tasks``. ``--smoke`` trains 1 epoch on 500 rows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts
from gbdt_baseline import gbdt_metrics

from service.contracts.tasks import TaskSpec
from training.data.dataset import DatasetConfig, EntityTable, dataset_file, load_config
from training.data.splits import DataSources
from training.train.config import TrainConfig, preset_path
from training.train.config import load_config as load_train_config
from training.train.run import train_run

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SINGLE_TASK = "single_task"
SINGLE_TASK_PRESET = "shared_bottom"
GBDT = "hgb"  # scikit-learn HistGradientBoosting, one model per task (gbdt_baseline.py)
REFERENCE_ARCH = "shared_bottom"
SMOKE_EPOCHS, SMOKE_ROWS = 1, 500
FOLLOW_MODEL_SEED = -1  # --split-seed -1: each seed draws its own split, as train_run does
Metrics = dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class RunResult:
    """One architecture at one seed (``single_task``: its per-task models together)."""

    arch: str
    seed: int
    seconds: float
    tasks: Metrics  # task id -> {"auc", "logloss", "n"} or {"mse", "mae", "n"}
    best_epochs: dict[str, int]  # model ("all" or the single task's id) -> best epoch
    config: dict[str, Any]  # resolved TrainConfig of the (first) model


# ---- data: task subsets -----------------------------------------------------


def task_subset_dir(
    meta: DatasetConfig, data_dir: Path, tasks: Sequence[TaskSpec], out: Path
) -> Path:
    """A dataset.yaml over the source's files that lists only ``tasks`` (single-task baselines)."""
    root = dataset_file(data_dir).resolve().parent  # a view YAML's files sit beside it
    ids = {t.id for t in tasks}
    outside = [t.id for t in tasks if t.sample_space != "all" and t.sample_space not in ids]
    if outside:
        raise ValueError(f"tasks {outside} need their sample-space task in the subset")

    def entity(table: EntityTable | None) -> EntityTable | None:
        return None if table is None else EntityTable(file=str(root / table.file), key=table.key)

    out.mkdir(parents=True, exist_ok=True)
    keep_esmm = meta.esmm is not None and {meta.esmm.ctr, meta.esmm.cvr} <= ids
    DatasetConfig(
        name=meta.name,
        feature_spec=str(root / meta.feature_spec),
        impressions=str(root / meta.impressions),
        users=entity(meta.users),
        items=entity(meta.items),
        tasks=list(tasks),
        derived=[d for d in meta.derived if set(d.product) <= ids],
        esmm=meta.esmm if keep_esmm else None,
        position_feature=meta.position_feature,
        data_card=None,
        group=meta.group,
        columns=meta.columns,
        sample_weights={k: v for k, v in meta.sample_weights.items() if k in ids},
        split_column=meta.split_column,
    ).dump(out)
    return out


# ---- configs ----------------------------------------------------------------------------------


def variant(arch: str) -> tuple[str, list[str]]:
    """``LABEL:PRESET+KEY=VALUE+...`` (a variant of a preset) or ``PRESET`` -> (preset, overrides)."""
    _, _, spec = arch.rpartition(":")
    preset, *overrides = spec.split("+")
    return (SINGLE_TASK_PRESET if preset in (SINGLE_TASK, GBDT) else preset), overrides


def run_config(
    arch: str, seed: int, plan: Plan, task_ids: Sequence[str], extra: Sequence[str] = ()
) -> TrainConfig:
    """The arch's preset for these tasks, then seed, split, epochs, rows, one thread, the
    variant's overrides and ``--set``s."""
    preset, variant_sets = variant(arch)
    split = seed if plan.split_seed == FOLLOW_MODEL_SEED else plan.split_seed
    overrides = [f"seed={seed}", f"split_seed={split}", "threads=1"]
    overrides += [f"val_fraction={plan.val_fraction}", f"test_fraction={plan.test_fraction}"]
    if plan.epochs is not None:
        overrides.append(f"epochs={plan.epochs}")
    if plan.max_rows is not None:
        overrides.append(f"max_rows={plan.max_rows}")
    config = load_train_config(preset, [*overrides, *variant_sets, *extra, *plan.sets])
    return config.for_tasks(task_ids)[0]  # drop the preset's settings for absent tasks


# ---- runs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to run: the parsed command line."""

    data: Path
    name: str
    archs: list[str]
    seeds: int
    epochs: int | None  # None: each preset's own cap (early stopping ends runs sooner)
    max_rows: int | None
    sets: list[str]
    split_seed: int  # validation split of every run; -1: each run's own model seed
    val_fraction: float
    test_fraction: float
    out: Path
    smoke: bool
    reference: str = REFERENCE_ARCH  # the arch gaps are measured against


def label_of(arch: str) -> str:
    """The name an arch entry is reported under: the variant's label, else the preset."""
    return arch.partition(":")[0] if ":" in arch else arch


def single_task_groups(tasks: Sequence[TaskSpec]) -> list[tuple[TaskSpec, list[TaskSpec]]]:
    """Per task: the task with what it needs, its sample-space task first (trained with weight 0,
    so only the task's own loss moves the model)."""
    by_id = {t.id: t for t in tasks}
    return [(t, [t] if t.sample_space == "all" else [by_id[t.sample_space], t]) for t in tasks]


def run_arch(plan: Plan, arch: str, seed: int, data_dir: Path, workdir: Path) -> RunResult:
    """Train one arch at one seed (``single_task`` and ``hgb``: one model per task)."""
    meta = load_config(data_dir)
    if arch == GBDT:
        started = time.perf_counter()
        config = run_config(arch, seed, plan, [t.id for t in meta.tasks])
        scored = gbdt_metrics(DataSources(data_dir), config.split_plan, seed, config.threads)
        seconds = round(time.perf_counter() - started, 2)
        gbdt = {"model": "HistGradientBoosting", "split": config.split_plan.__dict__}
        return RunResult(arch, seed, seconds, scored, {}, gbdt)
    single = arch.rpartition(":")[2].split("+")[0] == SINGLE_TASK
    groups = single_task_groups(meta.tasks) if single else [(None, list(meta.tasks))]
    tasks: Metrics = {}
    best: dict[str, int] = {}
    config_dump: dict[str, Any] = {}
    started = time.perf_counter()
    for own, group in groups:
        label = own.id if own is not None else "all"
        ids = [t.id for t in group]
        extra: list[str] = []
        view = data_dir
        if own is not None:
            view = task_subset_dir(meta, data_dir, group, workdir / "data" / label)
            # one loss: helpers at weight 0, no product losses or cascades between tasks
            extra = [f"weighting.weights.{t.id}=0" for t in group if t is not own]
            extra += ["esmm=false", "esm2=false", "nmtr=false"]
        config = run_config(arch, seed, plan, ids, extra)
        name = f"{label_of(arch)}-{seed}-{label}"
        run = train_run(config, view, workdir / "runs" / name, progress=False)
        kept = [own.id] if own is not None else ids
        tasks.update({k: v for k, v in run.metrics["tasks"].items() if k in kept})
        best[label] = int(run.metrics["best_epoch"])
        config_dump = config_dump or config.model_dump(mode="json")
    seconds = time.perf_counter() - started
    return RunResult(label_of(arch), seed, round(seconds, 2), tasks, best, config_dump)


def headline(tasks: Metrics) -> str:
    """``income auc 0.9077  rating mse 0.8512`` for a progress line."""
    parts = []
    for task_id, values in tasks.items():
        key = next((k for k in ("auc", "ndcg@10", "mse") if k in values), "mse")
        value = values.get(key)
        parts.append(f"{task_id} {key} " + ("n/a" if value is None else f"{value:.4f}"))
    return "  ".join(parts)


def run_all(plan: Plan, workdir: Path) -> list[RunResult]:
    """Every (seed, arch) run, seed-major so a cut-short benchmark still covers every arch."""
    results: list[RunResult] = []
    total = plan.seeds * len(plan.archs)
    for seed in range(plan.seeds):
        for arch in plan.archs:
            result = run_arch(plan, arch, seed, plan.data, workdir / f"seed-{seed}")
            results.append(result)
            print(
                f"[{len(results):>3}/{total}] {arch:<13} seed {seed:>2} {result.seconds:6.1f}s  "
                f"{headline(result.tasks)}",
                flush=True,
            )
    return results


# ---- summary: table and plot ------------------------------------------------------------------


def metric_of(task_type: str) -> str:
    return {"binary": "auc", "rank": "ndcg@10"}.get(task_type, "mse")


def values_of(results: Sequence[RunResult], arch: str, task_id: str, metric: str) -> list[float]:
    found = (r.tasks.get(task_id, {}).get(metric) for r in results if r.arch == arch)
    return [float(v) for v in found if v is not None]


def spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summarize(results: Sequence[RunResult], tasks: Sequence[TaskSpec]) -> dict[str, Any]:
    """Per arch and task: metric, n, mean, std, best; per arch: mean seconds per run."""
    summary: dict[str, Any] = {}
    for arch in dict.fromkeys(r.arch for r in results):
        per_task: dict[str, Any] = {}
        for task in tasks:
            metric = metric_of(task.type)
            values = values_of(results, arch, task.id, metric)
            if not values:
                continue
            mean, std = spread(values)
            best = min(values) if metric == "mse" else max(values)
            per_task[task.id] = {"metric": metric, "n": len(values), "mean": mean, "std": std,
                                 "best": best}  # fmt: skip
        seconds = [r.seconds for r in results if r.arch == arch]
        summary[arch] = {"tasks": per_task, "seconds_per_run": float(np.mean(seconds))}
    return summary


def gap_to_reference(
    summary: dict[str, Any], arch: str, task_id: str, reference: str = REFERENCE_ARCH
) -> str:
    """Mean difference to the reference arch ± its standard error, or an empty cell."""
    ref = summary.get(reference, {}).get("tasks", {}).get(task_id)
    own = summary[arch]["tasks"].get(task_id)
    if ref is None or own is None or arch == reference:
        return ""
    se = math.sqrt(own["std"] ** 2 / own["n"] + ref["std"] ** 2 / ref["n"])
    return f"{own['mean'] - ref['mean']:+.4f} ± {se:.4f}"


def table_markdown(
    summary: dict[str, Any],
    tasks: Sequence[TaskSpec],
    title: str,
    reference: str = REFERENCE_ARCH,
) -> str:
    """One row per arch: per task mean ± std, best, gap to the reference; seconds per run."""
    short = "SB" if reference == REFERENCE_ARCH else reference
    header = ["arch", "runs"]
    for task in tasks:
        metric = metric_of(task.type).upper()
        header += [
            f"{task.id} {metric} mean ± std",
            f"{task.id} best",
            f"{task.id} Δ vs {short} ± se",
        ]
    header.append("seconds / run")
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for arch, row in summary.items():
        runs = max((v["n"] for v in row["tasks"].values()), default=0)
        cells = [arch, str(runs)]
        for task in tasks:
            cell = row["tasks"].get(task.id)
            if cell is None:
                cells += ["n/a", "n/a", ""]
                continue
            cells += [f"{cell['mean']:.4f} ± {cell['std']:.4f}", f"{cell['best']:.4f}"]
            cells.append(gap_to_reference(summary, arch, task.id, reference))
        cells.append(f"{row['seconds_per_run']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "AUC: higher is better (best = max); MSE: lower is better (best = min). "]
    lines[-1] += "std: sample standard deviation over seeds; se: standard error of the gap."
    return "\n".join(lines) + "\n"


def plot_metrics(results: Sequence[RunResult], tasks: Sequence[TaskSpec], path: Path) -> Path:
    """Per task: a box plot of the metric across seeds per arch, with the seeds as dots."""
    archs = list(dict.fromkeys(r.arch for r in results))
    cols = min(len(tasks), 3)
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (0.8 * len(archs) + 1.5), 4 * rows))
    jitter = np.random.default_rng(0)
    for ax in np.ravel(axes)[len(tasks) :]:
        ax.axis("off")
    for ax, task in zip(np.ravel(axes), tasks, strict=False):
        metric = metric_of(task.type)
        series = [values_of(results, arch, task.id, metric) for arch in archs]
        ax.boxplot([s or [math.nan] for s in series], showfliers=False)
        for k, values in enumerate(series, start=1):
            xs = k + jitter.uniform(-0.12, 0.12, len(values))
            ax.scatter(xs, values, s=12, alpha=0.7, color="tab:blue", zorder=3)
        ax.set_xticks(range(1, len(archs) + 1), archs, rotation=35, ha="right")
        better = "lower" if metric == "mse" else "higher"
        ax.set_title(f"{task.id} ({metric.upper()}, {better} is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_outputs(plan: Plan, results: Sequence[RunResult]) -> list[Path]:
    """results.json, table.md and metrics.png in ``plan.out``."""
    tasks = list(load_config(plan.data).tasks)
    summary = summarize(results, tasks)
    plan.out.mkdir(parents=True, exist_ok=True)
    document = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()},
        "tasks": [t.model_dump(mode="json") for t in tasks],
        "torch": torch.__version__,
        "summary": summary,
        "runs": [asdict(r) for r in results],
    }
    results_path = plan.out / "results.json"
    results_path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", "utf-8")
    table_path = plan.out / "table.md"
    table_path.write_text(
        table_markdown(summary, tasks, f"{plan.name}: {rows_scored(plan)} metrics", plan.reference),
        "utf-8",
    )
    return [results_path, table_path, plot_metrics(results, tasks, plan.out / "metrics.png")]


# ---- command line -----------------------------------------------------------------------------


def rows_scored(plan: Plan) -> str:
    """``test`` when runs hold out test rows, else ``validation`` (the rows that chose epochs)."""
    return "test" if plan.test_fraction > 0 else "validation"


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="data directory (dataset.yaml)")
    parser.add_argument("--name", required=True, help="benchmark name for the table title")
    parser.add_argument(
        "--archs", required=True,
        help="comma-separated: single_task, hgb (boosted trees), presets, or variants "
        "LABEL:PRESET+KEY=VALUE+...",
    )  # fmt: skip
    parser.add_argument("--reference", default=REFERENCE_ARCH,
                        help="arch (label) the table's gaps are measured against")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3, help="model seeds 0..N-1 (default 3)")
    parser.add_argument("--epochs", type=int, help="epoch cap of every run (default: the preset's)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="validation rows (default 0.2)")  # fmt: skip
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="test rows, scored once per run (default 0: none)")  # fmt: skip
    parser.add_argument("--max-rows", type=int, help="use only the first R impressions")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="training config override for every run (repeatable)")  # fmt: skip
    parser.add_argument("--split-seed", type=int, default=0,
                        help="validation split (default 0; -1: each seed's own)")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--smoke", action="store_true", help="1 epoch on 500 rows (for CI)")
    args = parser.parse_args(argv)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    if not archs or args.seeds < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("need at least one arch, --seeds >= 1 and --epochs >= 1")
    for arch in (a for a in archs if a != GBDT):
        try:
            preset_path(variant(arch)[0])
        except ValueError as exc:
            parser.error(str(exc))
    epochs, rows = args.epochs, args.max_rows
    if args.smoke:
        epochs, rows = SMOKE_EPOCHS, min(rows or SMOKE_ROWS, SMOKE_ROWS)
    return Plan(args.data, args.name, archs, args.seeds, epochs, rows, args.set, args.split_seed,
                args.val_fraction, args.test_fraction, args.out, args.smoke,
                args.reference)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mtl-compare-") as tmp:
        results = run_all(plan, Path(tmp))
    files = write_outputs(plan, results)
    print((plan.out / "table.md").read_text(encoding="utf-8"))
    print(f"{len(results)} runs in {time.perf_counter() - started:.0f}s; wrote")
    for path in files:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
