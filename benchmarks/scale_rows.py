"""The default model on more simulator rows: AUC against the Bayes-optimal AUC, wall time, cost.

    python benchmarks/scale_rows.py --rows 100000 1000000 10000000 --work /tmp/mtrank-scale
    python benchmarks/scale_rows.py --rows 1000000 --ranks 2 --epochs 1 --work /tmp/mtrank-scale
    python benchmarks/scale_rows.py --plot-only                       # redraw from results.json
    python benchmarks/scale_rows.py --smoke --work DIR                # seconds, for CI

For each size it generates the simulator's data set (once, kept in ``--work``), trains
``--preset`` with ``python -m training train`` (``torchrun`` for ``--ranks`` > 1) as a child process,
and records the wall time, the CPU time and peak RSS of the child and its descendants (``wait4``), the
log's size on disk, the click and
ctcvr AUC (on the run's test rows when it holds some out, e.g. ``--set val_fraction=0.1 --set
test_fraction=0.1``, else on its validation rows), the data card's Bayes-optimal AUCs (with the
display position, and ``served``: without it, as the model is scored) and the share of the attainable
click lift over chance, ``(AUC - 0.5) / (Bayes - 0.5)``, like for like: the served score (no
position) against the served ceiling, and the logged score (the position tower's logit added back,
``auc_logged``) against the card's ceiling with the position. Results accumulate in
``OUT/results.json`` (one entry per rows x ranks x epochs); ``OUT/scale_rows.png`` plots them.
Cost per million rows = core-seconds (the CPU time the training used, all ranks, user + system) per
million training rows per epoch, and in dollars at ``--core-hour-usd`` (an assumed on-demand price,
stated in the plot). CPU time, unlike wall time, does not grow when other jobs share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path("docs/benchmarks/scale")


def _run(command: list[str], log: Path) -> tuple[float, float, float]:
    """Run a child; (wall seconds, CPU seconds, peak RSS in MiB) of it and its waited-for
    descendants."""
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - started, cpu, usage.ru_maxrss / 1024.0


def _size(path: Path) -> int:
    files = [path] if path.is_file() else list(path.rglob("*.parquet"))
    return sum(f.stat().st_size for f in files)


def measure(args: argparse.Namespace, rows: int) -> dict[str, Any]:
    work = Path(args.work)
    data = work / f"sim-{rows}"
    python = sys.executable
    if not (data / "data_card.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        command = [python, "-m", "training", "generate", "simulator", "--rows", str(rows)]
        seconds, _, _ = _run(
            [*command, "--out", str(data), "--no-progress"], work / f"gen-{rows}.log"
        )
        print(f"generated {rows:,} rows in {seconds:.0f} s")
    run = work / f"run-{rows}-r{args.ranks}-e{args.epochs or 'preset'}"
    train = ["-m", "training", "train", "--preset", args.preset, "--data", str(data)]
    train += ["--out", str(run), "--no-progress"]
    for override in args.set:
        train += ["--set", override]
    if args.epochs:
        train += ["--epochs", str(args.epochs)]
    if args.ranks > 1:
        torchrun = str(Path(python).with_name("torchrun"))
        command = [torchrun, "--nproc_per_node", str(args.ranks), *train]
    else:
        command = [python, *train]
    seconds, cpu_seconds, rss = _run(command, work / f"{run.name}.log")
    metrics = json.loads((run / "metrics.json").read_text())
    card = json.loads((data / "data_card.json").read_text())
    config = (run / "config.yaml").read_text()
    train_rows = metrics["rows"]["train"]
    epochs = len(metrics["history"])
    click, ctcvr = card["tasks"]["click"], card.get("derived", {}).get("ctcvr", {})
    return {
        "rows": rows,
        "label": args.label,
        "ranks": args.ranks,
        "overrides": args.set,
        "epochs": epochs,
        "best_epoch": metrics.get("best_epoch"),
        "stopped": metrics.get("stopped"),
        "val_click_auc_per_epoch": [h["val"]["tasks"]["click"]["auc"] for h in metrics["history"]],
        "streamed": "mode: always" in config,
        "log_bytes": _size(data / ("impressions" if (data / "impressions").is_dir() else "")),
        "wall_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "peak_rss_mib": round(rss, 1),
        "split": metrics["split"],  # "test" when the run held test rows out
        "click_auc": metrics["tasks"]["click"]["auc"],
        "ctcvr_auc": metrics["derived"]["ctcvr"]["auc"],
        "bayes_click_auc": click.get("bayes_auc"),
        "served_bayes_click_auc": click.get("served_bayes_auc"),
        "click_lift_share": lift_share(metrics["tasks"]["click"]["auc"], click.get("bayes_auc")),
        "served_click_lift_share": lift_share(
            metrics["tasks"]["click"]["auc"], click.get("served_bayes_auc")
        ),
        # the score with the position tower's logit: what the card's Bayes AUC (with position)
        # measures, the like-for-like comparison of the two
        "click_auc_logged": metrics["tasks"]["click"].get("auc_logged"),
        "logged_click_lift_share": lift_share(
            metrics["tasks"]["click"].get("auc_logged"), click.get("bayes_auc")
        ),
        "bayes_ctcvr_auc": ctcvr.get("bayes_auc"),
        "served_bayes_ctcvr_auc": ctcvr.get("served_bayes_auc"),
        "core_seconds_per_million_row_epochs": round(cpu_seconds / (train_rows * epochs / 1e6), 1),
        "epoch_seconds": [h["seconds"] for h in metrics["history"]],
        "load_average": os.getloadavg()[0],
    }


def lift_share(auc: float | None, bayes: float | None) -> float | None:
    """(AUC - 0.5) / (Bayes - 0.5): the share of the attainable lift over chance."""
    if auc is None or bayes is None or bayes <= 0.5:
        return None
    return (auc - 0.5) / (bayes - 0.5)


def _key(entry: dict[str, Any]) -> str:
    overrides = entry.get("overrides", [])
    return f"{entry['rows']}-r{entry['ranks']}-e{entry['epochs']}-{overrides}-{entry.get('label')}"


def _setting(entry: dict[str, Any]) -> str:
    """The entry's label, else its overrides besides the split fractions: which configuration
    a curve is."""
    if entry.get("label"):
        return str(entry["label"])
    kept = [o for o in entry.get("overrides", []) if not o.split("=")[0].endswith("_fraction")]
    return ", ".join(kept) or "preset as shipped"


def plot(results: list[dict[str, Any]], path: Path, usd: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_rows = sorted(results, key=lambda r: r["rows"])
    single = [r for r in by_rows if r["ranks"] == 1]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ceilings = {r["rows"]: r for r in single}  # one data set per size: the same ceilings
    sizes = sorted(ceilings)
    for name, colour in (("click", "tab:blue"), ("ctcvr", "tab:orange")):
        bayes = [ceilings[n][f"bayes_{name}_auc"] for n in sizes]
        axes[0].plot(sizes, bayes, "--", c=colour, label=f"{name} Bayes-optimal (data card)")
        served = [ceilings[n].get(f"served_bayes_{name}_auc") for n in sizes]
        if all(s is not None for s in served):
            axes[0].plot(sizes, served, ":", c=colour, label=f"{name} Bayes without position")
    target = [0.5 + 0.9 * (ceilings[n]["bayes_click_auc"] - 0.5) for n in sizes]
    axes[0].plot(sizes, target, "-.", c="grey", lw=1, label="90 % of the click lift (data card)")
    served_target = [0.5 + 0.9 * (ceilings[n]["served_bayes_click_auc"] - 0.5) for n in sizes]
    axes[0].plot(sizes, served_target, ":", c="grey", lw=1, label="90 % of the served click lift")
    for marker, setting in zip("osD^v", sorted({_setting(r) for r in single}), strict=False):
        chosen = [r for r in single if _setting(r) == setting]
        for name, colour in (("click", "tab:blue"), ("ctcvr", "tab:orange")):
            axes[0].plot([r["rows"] for r in chosen], [r[f"{name}_auc"] for r in chosen],
                         marker=marker, ls="-", c=colour, label=f"{name}: {setting}")  # fmt: skip
        logged = [r for r in chosen if r.get("click_auc_logged") is not None]
        if logged:  # the score with the position: compare with the card's ceiling
            axes[0].plot([r["rows"] for r in logged], [r["click_auc_logged"] for r in logged],
                         marker=marker, ls="--", c="tab:green",
                         label=f"click with position (auc_logged): {setting}")  # fmt: skip
        for r in chosen:  # the epoch budget behind each point
            axes[0].annotate(f"{r['epochs']} ep", (r["rows"], r["click_auc"]), fontsize=7,
                             xytext=(3, -10), textcoords="offset points")  # fmt: skip
    splits = sorted({r.get("split", "validation") for r in single})
    axes[0].set(xscale="log", xlabel="simulator rows", ylabel=f"{' / '.join(splits)} AUC")
    axes[0].set_title("default preset: AUC vs the data card's ceiling", fontsize=10)
    axes[0].legend(fontsize=6)
    groups = sorted({(r["ranks"], _setting(r)) for r in by_rows})
    for ranks, setting in groups:
        chosen = [r for r in by_rows if (r["ranks"], _setting(r)) == (ranks, setting)]
        label = f"{ranks} rank{'s' if ranks > 1 else ''}: {setting}"
        rows = [r["rows"] for r in chosen]
        axes[1].plot(rows, [r["wall_seconds"] for r in chosen], "o-", label=f"wall, {label}")
        if all("cpu_seconds" in r for r in chosen):
            axes[1].plot(rows, [r["cpu_seconds"] for r in chosen], "x--", label=f"CPU, {label}")
        costed = [r for r in chosen if r["core_seconds_per_million_row_epochs"] is not None]
        cost = [r["core_seconds_per_million_row_epochs"] for r in costed]
        axes[2].plot([r["rows"] for r in costed], cost, "o-", label=label)
    axes[1].set(xscale="log", yscale="log", xlabel="simulator rows", ylabel="seconds")
    axes[1].set_title("training time, all epochs (wall on a shared machine; CPU)", fontsize=10)
    axes[2].set(xscale="log", xlabel="simulator rows", ylabel="core-seconds per 1M row-epochs")
    axes[2].set_title(
        rf"cost; at \${usd}/core-hour, 1,000 core-s = \${usd * 1000 / 3600:.3f}", fontsize=10
    )
    for ax in axes[1:]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--work", default="/tmp/mtrank-scale", help="data sets and runs")
    parser.add_argument("--out", type=Path, default=OUT, help="results.json and the plot")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--ranks", type=int, default=1, help="torchrun processes")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--label", help="names this configuration in the plot (default: --set)")
    parser.add_argument("--core-hour-usd", type=float, default=0.04, help="assumed price")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, 1 epoch, no plot")
    args = parser.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.rows, args.epochs = [2000], 1
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    if not args.plot_only:
        for rows in args.rows:
            entry = measure(args, rows)
            print(json.dumps(entry))
            if args.smoke:
                continue
            results = [r for r in results if _key(r) != _key(entry)] + [entry]
            args.out.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=2) + "\n")
    if results and not args.smoke:
        plot(results, args.out / "scale_rows.png", args.core_hour_usd)
        print(f"saved {args.out / 'scale_rows.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
