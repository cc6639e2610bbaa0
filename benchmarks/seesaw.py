"""Seesaw diagnosis (PLE paper, Tang et al., RecSys 2020, figure 1; seed 003): every architecture's
per-task metric against single-task models, two tasks at a time, in four quadrants.

For an architecture and a task, the gain is its mean metric over seeds minus the single-task
models' (AUC: higher is better; MSE: sign flipped so that up and right are always better), with the
standard error of that difference. A point in the upper right gains on both tasks; upper left and
lower right are the seesaw (one task gains at the other's expense); lower left is negative transfer.
A point whose two gains are both within two standard errors of 0 is drawn hollow: its quadrant is
not established by the seeds run.

Input: ``benchmarks/mtl_compare.py`` results with a ``single_task`` entry (any number of data sets):

    python benchmarks/seesaw.py --results docs/benchmarks/census/results.json \\
        --results docs/benchmarks/zoo_simulator/results.json --out docs/benchmarks/seesaw \\
        [--pairs income:never_married,click:watch_time,click:convert]

writes ``seesaw.png`` (one panel per data set and task pair), ``table.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SINGLE = "single_task"


@dataclass(frozen=True)
class Gain:
    gain: float  # better is positive, whatever the metric
    se: float
    metric: str


Gains = dict[str, dict[str, Gain]]  # arch -> task -> gain
QUADRANTS = {(True, True): "gains on both", (False, False): "negative transfer"}


def gains(results: dict[str, Any]) -> Gains:
    """arch -> task -> gain against the single-task models."""
    summary = results["summary"]
    if SINGLE not in summary:
        raise ValueError(f"{results.get('name')}: no single_task runs to compare with")
    base = summary[SINGLE]["tasks"]
    out: Gains = {}
    for arch, row in summary.items():
        if arch == SINGLE:
            continue
        out[arch] = {}
        for task, cell in row["tasks"].items():
            ref = base.get(task)
            if ref is None:
                continue
            sign = -1.0 if cell["metric"] == "mse" else 1.0
            se = math.sqrt(cell["std"] ** 2 / cell["n"] + ref["std"] ** 2 / ref["n"])
            out[arch][task] = Gain(sign * (cell["mean"] - ref["mean"]), se, cell["metric"])
    return out


def quadrant(gx: float, gy: float) -> str:
    return QUADRANTS.get((gx > 0, gy > 0), "seesaw")


def panel(ax: Any, data: Gains, pair: tuple[str, str], title: str) -> None:
    x_task, y_task = pair
    xs, ys = [], []
    for k, (arch, row) in enumerate(sorted(data.items())):
        if x_task not in row or y_task not in row:
            continue
        gx, gy = row[x_task], row[y_task]
        clear = abs(gx.gain) > 2 * gx.se or abs(gy.gain) > 2 * gy.se
        color = plt.get_cmap("tab10")(k % 10)
        ax.errorbar(gx.gain, gy.gain, xerr=gx.se, yerr=gy.se, fmt="o", ms=7,
                    color=color, mfc=color if clear else "white", capsize=2)  # fmt: skip
        ax.annotate(arch, (gx.gain, gy.gain), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # fmt: skip
        xs += [gx.gain - gx.se, gx.gain + gx.se]
        ys += [gy.gain - gy.se, gy.gain + gy.se]
    span_x = max([abs(v) for v in xs] + [1e-4]) * 1.25
    span_y = max([abs(v) for v in ys] + [1e-4]) * 1.25
    ax.set_xlim(-span_x, span_x)
    ax.set_ylim(-span_y, span_y)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axvline(0, color="0.3", lw=0.8)
    for (sx, sy), label in (((1, 1), "gains on both"), ((-1, 1), "seesaw"),
                            ((1, -1), "seesaw"), ((-1, -1), "negative transfer")):  # fmt: skip
        ax.text(sx * 0.97 * span_x, sy * 0.95 * span_y, label, fontsize=7, color="0.45",
                ha="right" if sx > 0 else "left", va="top" if sy > 0 else "bottom")  # fmt: skip
    metric = {
        t: next((row[t].metric.upper() for row in data.values() if t in row), "?") for t in pair
    }
    ax.set_xlabel(f"{x_task}: {metric[x_task]} gain over single-task")
    ax.set_ylabel(f"{y_task}: {metric[y_task]} gain over single-task")
    ax.ticklabel_format(style="sci", scilimits=(-2, 2))
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, action="append", required=True,
                        help="mtl_compare results.json with single_task runs (repeatable)")  # fmt: skip
    parser.add_argument("--pairs", default="", help="task pairs X:Y, comma-separated "
                        "(default: per data set, its first task against each other)")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    wanted = [tuple(p.split(":")) for p in args.pairs.split(",") if p.strip()]
    panels: list[tuple[str, tuple[str, str], Gains]] = []
    report: dict[str, Any] = {}
    for path in args.results:
        results = json.loads(path.read_text(encoding="utf-8"))
        name = str(results.get("name", path.parent.name))
        data = gains(results)
        ids = [t["id"] for t in results["tasks"]]
        pairs: list[tuple[str, str]] = [(p[0], p[1]) for p in wanted if p[0] in ids and p[1] in ids]
        pairs = pairs or [(ids[0], t) for t in ids[1:]]
        report[name] = {
            "source": str(path),
            "seeds": results.get("seeds"),
            "gains": {a: {t: asdict(g) for t, g in row.items()} for a, row in data.items()},
            "quadrants": {},
        }
        for pair in pairs:
            panels.append((name, pair, data))
            report[name]["quadrants"][":".join(pair)] = {
                arch: quadrant(row[pair[0]].gain, row[pair[1]].gain)
                for arch, row in data.items()
                if pair[0] in row and pair[1] in row
            }
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.6 * rows), squeeze=False)
    for ax in np.ravel(axes)[len(panels) :]:
        ax.axis("off")
    for ax, (name, pair, data) in zip(np.ravel(axes), panels, strict=False):
        panel(ax, data, pair, f"{name}: {pair[0]} vs {pair[1]}")
    fig.suptitle("Seesaw diagnosis: gain over single-task models\n(bars: 1 se; hollow: both gains "
                 "within 2 se)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "seesaw.png", dpi=90)
    plt.close(fig)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n", "utf-8")
    lines = ["# Seesaw diagnosis: quadrant of each architecture per task pair", "",
             "| data | pair | arch | gain x ± se | gain y ± se | quadrant |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, pair, data in panels:
        for arch, row in sorted(data.items()):
            if pair[0] not in row or pair[1] not in row:
                continue
            gx, gy = row[pair[0]], row[pair[1]]
            noisy = abs(gx.gain) <= 2 * gx.se and abs(gy.gain) <= 2 * gy.se
            where = quadrant(gx.gain, gy.gain) + (" (within noise)" if noisy else "")
            lines.append(f"| {name} | {pair[0]} : {pair[1]} | {arch} | {gx.gain:+.4f} ± "
                         f"{gx.se:.4f} | {gy.gain:+.4f} ± {gy.se:.4f} | {where} |")  # fmt: skip
    (args.out / "table.md").write_text("\n".join(lines) + "\n", "utf-8")
    print("\n".join(lines))
    print(f"wrote {args.out / 'seesaw.png'}, table.md, results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
